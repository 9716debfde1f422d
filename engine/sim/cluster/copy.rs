//! `MachineService/Copy` for the one path a quorum recovery needs: etcd's database file,
//! `/var/lib/etcd/member/snap/db`, streamed as a gzipped tar archive as Talos does
//! (`archiver.TarGz`). The rescue path when the survivor cannot serve a live snapshot relies
//! on it: the copy has no sha256 trailer, so restoring it needs `--recover-skip-hash-check`,
//! and the etcd model refuses it without (as real etcd does). It works while the etcd member
//! is stopped; a node whose data directory is empty answers as `lstat` would.

use std::io::Write;

use super::*;

/// The etcd database file inside a control-plane node.
pub const ETCD_DB: &str = "/var/lib/etcd/member/snap/db";

impl Cluster {
    /// `Copy` of `path` on `label`: a `.tar.gz` holding the file `db`.
    pub fn copy(&mut self, label: &str, path: &str, now: SimTime) -> Result<Vec<u8>, ApiError> {
        self.query("Copy", label, now, |c, i| {
            if !path.starts_with('/') {
                return Err(ApiError::new(
                    Code::Unknown,
                    format!("path is not absolute {path}"),
                ));
            }
            let clean = path.trim_end_matches('/');
            if clean != ETCD_DB {
                return Err(ApiError::new(
                    Code::Unimplemented,
                    format!("the simulated node copies only {ETCD_DB}, not {path}"),
                ));
            }
            let missing = || {
                ApiError::new(
                    Code::NotFound,
                    format!("lstat {ETCD_DB}: no such file or directory"),
                )
            };
            let EtcdData::Member { cluster, .. } = c.nodes[i].etcd_data else {
                return Err(missing());
            };
            let db = c
                .etcd
                .iter()
                .find(|e| e.id() == cluster)
                .ok_or_else(missing)?
                .raw_db_copy();
            tar_gz("db", &db, c.now.as_duration().as_secs())
                .map_err(|e| ApiError::new(Code::Internal, format!("archiver: {e}")))
        })
    }
}

/// One regular file in a ustar archive, gzipped.
pub fn tar_gz(name: &str, body: &[u8], mtime: u64) -> std::io::Result<Vec<u8>> {
    let mut header = [0u8; 512];
    let put = |h: &mut [u8; 512], at: usize, s: &[u8]| h[at..at + s.len()].copy_from_slice(s);
    put(&mut header, 0, name.as_bytes());
    put(&mut header, 100, b"0000600\0");
    put(&mut header, 108, b"0000000\0");
    put(&mut header, 116, b"0000000\0");
    put(
        &mut header,
        124,
        format!("{:011o}\0", body.len()).as_bytes(),
    );
    put(&mut header, 136, format!("{mtime:011o}\0").as_bytes());
    put(&mut header, 148, b"        ");
    header[156] = b'0';
    put(&mut header, 257, b"ustar\0");
    put(&mut header, 263, b"00");
    let sum: u32 = header.iter().map(|b| u32::from(*b)).sum();
    put(&mut header, 148, format!("{sum:06o}\0 ").as_bytes());
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&header)?;
    gz.write_all(body)?;
    let pad = body.len().div_ceil(512) * 512 - body.len();
    gz.write_all(&vec![0u8; pad + 1024])?;
    gz.finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim::Speed;
    use crate::sim::etcd::verify_snapshot;
    use crate::sim::scenario::{MAC_223, NUC_20, Scenario};
    use std::io::Read;

    fn untar(gz: &[u8]) -> (String, Vec<u8>) {
        let mut tar = Vec::new();
        flate2::read::GzDecoder::new(gz)
            .read_to_end(&mut tar)
            .unwrap();
        let name = String::from_utf8_lossy(&tar[..100])
            .trim_end_matches('\0')
            .to_string();
        let size_text = String::from_utf8_lossy(&tar[124..135]).to_string();
        let size = usize::from_str_radix(size_text.trim_matches(char::from(0)).trim(), 8).unwrap();
        let sum: u32 = tar[..512]
            .iter()
            .enumerate()
            .map(|(i, b)| {
                if (148..156).contains(&i) {
                    32
                } else {
                    u32::from(*b)
                }
            })
            .sum();
        let stored = String::from_utf8_lossy(&tar[148..154]).to_string();
        assert_eq!(u32::from_str_radix(&stored, 8).unwrap(), sum);
        (name, tar[512..512 + size].to_vec())
    }

    #[test]
    fn copy_of_the_etcd_db_is_a_tar_gz_of_a_raw_db_without_hash_trailer() {
        let mut c = Scenario::QuorumLost
            .build(Speed::new(1.0).unwrap())
            .unwrap();
        let now = c.now();
        let gz = c.copy(NUC_20, ETCD_DB, now).unwrap();
        let (name, db) = untar(&gz);
        assert_eq!(name, "db");
        assert_eq!(db.len() % 512, 0);
        // A raw copy restores only with the hash check skipped.
        let e = verify_snapshot(&db, false).unwrap_err();
        assert!(e.message.contains("missing hash"), "{e:?}");
        let kv = verify_snapshot(&db, true).unwrap();
        assert!(kv.entries.contains_key("/registry/namespaces/default"));
        // Other paths, relative paths, and silent nodes are refused.
        assert_eq!(
            c.copy(NUC_20, "/etc/passwd", now).unwrap_err().code,
            Code::Unimplemented
        );
        assert!(c.copy(NUC_20, "var/lib", now).is_err());
        assert_eq!(
            c.copy(MAC_223, ETCD_DB, now).unwrap_err().code,
            Code::Unavailable
        );
    }

    #[test]
    fn a_node_without_etcd_data_has_no_db_to_copy() {
        let mut c = Scenario::EtcdDataLost
            .build(Speed::new(1.0).unwrap())
            .unwrap();
        let now = c.now();
        let e = c.copy(MAC_223, ETCD_DB, now).unwrap_err();
        assert_eq!(e.code, Code::NotFound, "{e:?}");
        assert!(e.message.contains("no such file"), "{e:?}");
        assert!(c.copy(NUC_20, ETCD_DB, now).is_ok());
    }
}
