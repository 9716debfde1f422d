//! The `Kubeconfig` reply format: a gzip-compressed tar archive holding one file.
//!
//! machined streams `kubeconfig` inside a `.tar.gz` and talosctl extracts it
//! (`helpers.ExtractFileFromTarGz`). The simulator has no compression library, and the
//! payload is a few kilobytes, so this writes a ustar archive wrapped in gzip with *stored*
//! (uncompressed) deflate blocks: valid for every gzip reader, just not smaller.

/// CRC-32 (IEEE, reflected), as gzip's trailer needs.
pub fn crc32(data: &[u8]) -> u32 {
    let mut crc = 0xffff_ffffu32;
    for &b in data {
        crc ^= u32::from(b);
        for _ in 0..8 {
            let mask = (crc & 1).wrapping_neg();
            crc = (crc >> 1) ^ (0xedb8_8320 & mask);
        }
    }
    !crc
}

/// A ustar archive with one regular file `name` (mode 0600).
pub fn tar(name: &str, data: &[u8]) -> Vec<u8> {
    let mut h = [0u8; 512];
    let put = |h: &mut [u8; 512], off: usize, s: &[u8]| {
        let n = s.len().min(h.len() - off);
        h[off..off + n].copy_from_slice(&s[..n]);
    };
    put(&mut h, 0, &name.as_bytes()[..name.len().min(99)]);
    put(&mut h, 100, b"0000600\0");
    put(&mut h, 108, b"0000000\0");
    put(&mut h, 116, b"0000000\0");
    put(&mut h, 124, format!("{:011o}\0", data.len()).as_bytes());
    put(&mut h, 136, b"00000000000\0");
    put(&mut h, 148, b"        ");
    h[156] = b'0';
    put(&mut h, 257, b"ustar\0");
    put(&mut h, 263, b"00");
    let sum: u32 = h.iter().map(|&b| u32::from(b)).sum();
    put(&mut h, 148, format!("{sum:06o}\0 ").as_bytes());
    let mut out = h.to_vec();
    out.extend_from_slice(data);
    out.resize(out.len().div_ceil(512) * 512, 0);
    out.extend_from_slice(&[0u8; 1024]);
    out
}

/// gzip with stored deflate blocks.
pub fn gzip_stored(data: &[u8]) -> Vec<u8> {
    let mut out = vec![0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff];
    let mut blocks = data.chunks(0xffff).peekable();
    if blocks.peek().is_none() {
        out.extend_from_slice(&[1, 0, 0, 0xff, 0xff]);
    }
    while let Some(block) = blocks.next() {
        out.push(u8::from(blocks.peek().is_none()));
        let len = u16::try_from(block.len()).unwrap_or(u16::MAX);
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(&(!len).to_le_bytes());
        out.extend_from_slice(block);
    }
    out.extend_from_slice(&crc32(data).to_le_bytes());
    out.extend_from_slice(&(u32::try_from(data.len() % (1 << 32)).unwrap_or(0)).to_le_bytes());
    out
}

/// `name` in a `.tar.gz`, as the `Kubeconfig` call streams it.
pub fn tar_gz(name: &str, data: &[u8]) -> Vec<u8> {
    gzip_stored(&tar(name, data))
}

/// Extracts the first file from a stored-or-not `.tar.gz` produced by [`tar_gz`] (only the
/// stored form is supported: the client side of the simulator's own tests).
pub fn untar_gz_stored(archive: &[u8]) -> Option<Vec<u8>> {
    let mut pos = 10;
    let mut tar = Vec::new();
    loop {
        let header = *archive.get(pos)?;
        let len = u16::from_le_bytes([*archive.get(pos + 1)?, *archive.get(pos + 2)?]) as usize;
        pos += 5;
        tar.extend_from_slice(archive.get(pos..pos + len)?);
        pos += len;
        if header & 1 == 1 {
            break;
        }
    }
    let size_field = std::str::from_utf8(tar.get(124..135)?).ok()?;
    let size = usize::from_str_radix(size_field.trim_matches(char::from(0)).trim(), 8).ok()?;
    tar.get(512..512 + size).map(<[u8]>::to_vec)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc_and_round_trip() {
        assert_eq!(crc32(b"123456789"), 0xcbf4_3926);
        let data = b"apiVersion: v1\nkind: Config\n".repeat(5000);
        let gz = tar_gz("kubeconfig", &data);
        assert_eq!(untar_gz_stored(&gz).unwrap(), data);
    }
}
