//! The payloads Talos actions carry, as pure functions: the sha256 trailer of an etcd API
//! snapshot, the `kubeconfig` inside the archive `Kubeconfig` streams, and a strategic patch
//! over a machine config (through [`crate::machine_config`]). Kept apart from the effects so they are tested without a cluster.

use std::io::Read as _;

use sha2::{Digest, Sha256};

/// Checks the sha256 trailer Talos appends to an API snapshot (`size % 512 == 32`).
pub fn verify_snapshot(bytes: &[u8]) -> Result<(), String> {
    if bytes.len() < 32 || bytes.len() % 512 != 32 {
        return Err(format!(
            "{} bytes: not an etcd API snapshot with a sha256 trailer (size % 512 must be 32)",
            bytes.len()
        ));
    }
    let (body, trailer) = bytes.split_at(bytes.len() - 32);
    if Sha256::digest(body).as_slice() != trailer {
        return Err("sha256 trailer does not match the snapshot body".into());
    }
    Ok(())
}

/// The `kubeconfig` file inside the `.tar.gz` that `MachineService/Kubeconfig` streams.
pub fn extract_kubeconfig(archive: &[u8]) -> Result<Vec<u8>, String> {
    let mut tar = Vec::new();
    flate2::read::GzDecoder::new(archive)
        .read_to_end(&mut tar)
        .map_err(|e| format!("not gzip: {e}"))?;
    let mut off = 0;
    while off + 512 <= tar.len() {
        let header = &tar[off..off + 512];
        if header.iter().all(|b| *b == 0) {
            break;
        }
        let name_end = header[..100].iter().position(|b| *b == 0).unwrap_or(100);
        let name = String::from_utf8_lossy(&header[..name_end]).to_string();
        let size_text = String::from_utf8_lossy(&header[124..136]);
        let size =
            usize::from_str_radix(size_text.trim_matches(|c: char| c == '\0' || c == ' '), 8)
                .map_err(|_| "bad tar header".to_string())?;
        let start = off + 512;
        let end = start + size;
        if end > tar.len() {
            return Err("truncated tar archive".into());
        }
        if name.trim_start_matches("./") == "kubeconfig" {
            return Ok(tar[start..end].to_vec());
        }
        off = start + size.div_ceil(512) * 512;
    }
    Err("no `kubeconfig` in the archive".into())
}

/// Applies a strategic-merge patch (as Talos's configpatcher: maps merge, list items are
/// appended once, keyed lists merge by key, `$patch: delete`) to a machine config; returns the
/// patched config as text to send. The merge itself is [`crate::machine_config`]'s.
pub fn patch_config(current: &str, patch: &serde_json::Value) -> Result<String, String> {
    use crate::machine_config as mc;
    let config = mc::parse_config(current).map_err(|e| e.to_string())?;
    let patch = mc::patch_from_value(mc::Format::Strategic, patch).map_err(|e| e.to_string())?;
    let out = mc::apply(&config, &patch).map_err(|e| e.to_string())?;
    Ok(mc::to_text(&out))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patch_appends_modules_and_keeps_the_rest() {
        let current = "version: v1alpha1\nmachine:\n  type: controlplane\n  kernel:\n    modules:\n      - name: zfs\n";
        let patch = serde_json::json!({"machine": {"kernel": {"modules": [{"name": "nvidia"}]}}});
        let out = patch_config(current, &patch).unwrap();
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(v["machine"]["type"], "controlplane");
        assert_eq!(
            v["machine"]["kernel"]["modules"].as_array().unwrap().len(),
            2
        );
    }

    #[test]
    fn snapshot_trailer_is_checked() {
        let body = vec![7u8; 512];
        let mut snap = body.clone();
        snap.extend(Sha256::digest(&body));
        assert!(verify_snapshot(&snap).is_ok());
        snap[0] = 8;
        assert!(verify_snapshot(&snap).is_err());
        assert!(verify_snapshot(&body).is_err());
    }
}
