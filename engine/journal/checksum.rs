//! CRC-32 over each journal line, so a torn or bit-flipped record is detected, not trusted.
//!
//! The journal must tell "the process died half-way through writing this line" from "this is a
//! record we committed". JSON validity alone is not enough: a line cut at the right byte can
//! still parse (`{"n":12` → `{"n":1` is no longer valid, but a cut inside a string that is later
//! closed by a zero-filled block can be). A checksum makes the test exact.
//!
//! This is the standard CRC-32 (IEEE 802.3, reflected polynomial `0xEDB88320`, the one zlib,
//! gzip and PNG use), so `python3 -c 'import zlib; print(hex(zlib.crc32(b"...")))'` can check a
//! line by hand. It is implemented here (a 1 KiB table built at compile time) to avoid a
//! dependency for twenty lines of code.

/// The CRC-32 lookup table, built at compile time.
const TABLE: [u32; 256] = build_table();

const fn build_table() -> [u32; 256] {
    let mut table = [0_u32; 256];
    let mut i = 0;
    while i < 256 {
        let mut crc = i as u32;
        let mut bit = 0;
        while bit < 8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
            bit += 1;
        }
        table[i] = crc;
        i += 1;
    }
    table
}

/// Returns the CRC-32 (IEEE) of `bytes`.
pub fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = !0_u32;
    for &b in bytes {
        crc = TABLE[((crc ^ u32::from(b)) & 0xFF) as usize] ^ (crc >> 8);
    }
    !crc
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc32_matches_the_standard_check_values() {
        assert_eq!(crc32(b""), 0);
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
        assert_eq!(
            crc32(b"The quick brown fox jumps over the lazy dog"),
            0x414F_A339
        );
    }
}
