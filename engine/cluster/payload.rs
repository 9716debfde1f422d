//! The payloads Talos actions carry, as pure functions: the sha256 trailer of an etcd API
//! snapshot, the `kubeconfig` inside the archive `Kubeconfig` streams, and a merge patch over a
//! machine config. Kept apart from the effects so they are tested without a cluster.

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

/// Applies a strategic-merge-style patch (maps merge, lists append, scalars replace) to a
/// machine config; returns the patched config as JSON text (a subset of YAML, which Talos
/// parses). Only the first (v1alpha1) document is patched; others are kept.
pub fn patch_config(current: &str, patch: &serde_json::Value) -> Result<String, String> {
    let docs: Vec<&str> = current
        .split("\n---")
        .map(str::trim)
        .filter(|d| !d.is_empty() && *d != "---")
        .collect();
    let mut out = Vec::new();
    for (i, doc) in docs.iter().enumerate() {
        let src = crate::source::Source::new(
            "machine config",
            crate::source::Format::Yaml,
            doc.trim_start_matches("---"),
        );
        let node = crate::dsl::yaml::parse(&src).map_err(|d| d.to_string())?;
        let mut value = node.to_json();
        if i == 0 {
            merge(&mut value, patch);
        }
        out.push(serde_json::to_string_pretty(&value).map_err(|e| e.to_string())?);
    }
    if out.is_empty() {
        let mut value = serde_json::json!({});
        merge(&mut value, patch);
        out.push(serde_json::to_string_pretty(&value).map_err(|e| e.to_string())?);
    }
    Ok(out.join("\n---\n"))
}

fn merge(base: &mut serde_json::Value, patch: &serde_json::Value) {
    use serde_json::Value as J;
    match (base, patch) {
        (J::Object(b), J::Object(p)) => {
            for (k, v) in p {
                match b.get_mut(k) {
                    Some(existing) => merge(existing, v),
                    None => {
                        b.insert(k.clone(), v.clone());
                    }
                }
            }
        }
        (J::Array(b), J::Array(p)) => {
            for item in p {
                if !b.contains(item) {
                    b.push(item.clone());
                }
            }
        }
        (b, p) => *b = p.clone(),
    }
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
