//! `talos.install-disk-ok`: the install disk of the machine config about to be applied,
//! checked against the disks the target reports (in maintenance mode, before the apply).
//!
//! A separate `install_disk` parameter can say one thing while the config says another, and
//! the config is what Talos installs to (seed lesson: the USB stick in the Mac moved the
//! Apple SSD from `/dev/sda` to `/dev/sdc`, and `install.disk: /dev/sda` pointed at the
//! stick). So the guard reads the disk from the config itself (`machine.install.disk`, or
//! the `model`/`serial` of `machine.install.diskSelector`; SOPS-encrypted files are decrypted
//! in memory, only the disk is ever reported) and hands it to the `talos.disk-unambiguous`
//! rule: exactly one non-USB, writable, non-optical disk must match. Everything it cannot read
//! or cannot check is a refusal: an unreadable or undecryptable file, a config naming no
//! disk, a selector key it does not evaluate (size, type, wwid, busPath, …).

use std::path::Path;

use crate::condition::talos::disk_unambiguous;
use crate::condition::view::{ClusterView, Verdict};
use crate::lint::config::{ConfigFile, Seg};

/// The `diskSelector` keys the guard evaluates; any other key refuses.
const CHECKED_SELECTOR_KEYS: &[&str] = &["model", "serial"];

/// What the config says the install disk is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfiguredDisk {
    /// `machine.install.disk`.
    pub path: Option<String>,
    /// `machine.install.diskSelector.model`.
    pub model: Option<String>,
    /// `machine.install.diskSelector.serial`.
    pub serial: Option<String>,
}

impl ConfiguredDisk {
    /// How the operator reads it: `/dev/sda`, or `model APPLE SSD, serial X`.
    pub fn describe(&self) -> String {
        let mut parts = Vec::new();
        if let Some(p) = &self.path {
            parts.push(p.clone());
        }
        if let Some(m) = &self.model {
            parts.push(format!("model {m}"));
        }
        if let Some(s) = &self.serial {
            parts.push(format!("serial {s}"));
        }
        parts.join(", ")
    }
}

/// The install disk a config names, or why it cannot be told.
pub fn configured_disk(config: &Path) -> Result<ConfiguredDisk, String> {
    let cfg = ConfigFile::load(config)
        .map_err(|e| format!("cannot read the install disk from the config: {e}"))?;
    if !cfg.has_machine_doc() {
        return Err(format!(
            "`{}` has no v1alpha1 machine config document",
            config.display()
        ));
    }
    let install = |k: &str| {
        cfg.str(&[Seg::Key("machine"), Seg::Key("install"), Seg::Key(k)])
            .map(str::to_owned)
    };
    let selector = [
        Seg::Key("machine"),
        Seg::Key("install"),
        Seg::Key("diskSelector"),
    ];
    let mut model = None;
    let mut serial = None;
    if let Some(node) = cfg.get(&selector) {
        let crate::dsl::doc::Value::Map(entries) = &node.value else {
            return Err("machine.install.diskSelector is not a map".into());
        };
        for (key, value) in entries {
            if !CHECKED_SELECTOR_KEYS.contains(&key.value.as_str()) {
                return Err(format!(
                    "machine.install.diskSelector.{} is not checked by this guard: select the disk by path, model or serial",
                    key.value
                ));
            }
            let Some(text) = value.as_str() else {
                return Err(format!(
                    "machine.install.diskSelector.{} is not a string",
                    key.value
                ));
            };
            if key.value == "model" {
                model = Some(text.to_owned());
            } else {
                serial = Some(text.to_owned());
            }
        }
    }
    let disk = ConfiguredDisk {
        path: install("disk"),
        model,
        serial,
    };
    if disk.path.is_none() && disk.model.is_none() && disk.serial.is_none() {
        return Err(format!(
            "`{}` names no install disk (machine.install.disk or machine.install.diskSelector)",
            config.display()
        ));
    }
    Ok(disk)
}

/// The guard: the config's install disk resolves to exactly one non-USB writable disk of
/// `node`, as the node reports its disks now.
pub fn install_disk_ok(view: &ClusterView, node: &str, config: &Path) -> Verdict {
    let disk = match configured_disk(config) {
        Ok(d) => d,
        Err(why) => return Verdict::fail(why),
    };
    let v = disk_unambiguous(
        view,
        node,
        disk.path.as_deref(),
        disk.model.as_deref(),
        disk.serial.as_deref(),
    );
    let described = disk.describe();
    Verdict {
        reason: format!(
            "the config's install disk ({described}): {}",
            v.reason.replace(
                &format!("no disk on `{node}` matches the selector"),
                &format!("no disk on `{node}` matches {described}")
            )
        ),
        ..v
    }
    .with("config_disk", described.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::condition::view::{Disk, Observed};

    fn disk(path: &str, model: &str, serial: &str, transport: &str) -> Disk {
        Disk {
            dev_path: path.into(),
            model: model.into(),
            serial: serial.into(),
            transport: transport.into(),
            readonly: false,
            cdrom: false,
            size: 1 << 40,
        }
    }

    fn view(disks: Vec<Disk>) -> ClusterView {
        let mut v = crate::condition::etcd::tests::three();
        v.nodes[0].disks = Observed::Answered(disks);
        v
    }

    fn config(dir: &Path, install: &str) -> std::path::PathBuf {
        let p = dir.join("c.yaml");
        std::fs::write(
            &p,
            format!(
                "version: v1alpha1\nmachine:\n  type: controlplane\n  token: secret-token-value\n  install:\n{install}"
            ),
        )
        .unwrap();
        p
    }

    #[test]
    fn the_disk_comes_from_the_config_and_must_match_exactly_one_non_usb_disk() {
        let dir = tempfile::tempdir().unwrap();
        let ssd = disk("/dev/sda", "APPLE SSD", "S1", "nvme");
        let stick = disk("/dev/sdb", "SanDisk", "U1", "usb");
        let c = config(dir.path(), "    disk: /dev/sda\n");
        let v = install_disk_ok(&view(vec![ssd.clone(), stick.clone()]), "a", &c);
        assert!(v.holds, "{}", v.reason);
        assert!(!v.reason.contains("secret-token-value"), "{}", v.reason);
        // The stick took /dev/sda: refused, naming it.
        let shifted = vec![
            disk("/dev/sda", "SanDisk", "U1", "usb"),
            disk("/dev/sdc", "APPLE SSD", "S1", "nvme"),
        ];
        let v = install_disk_ok(&view(shifted), "a", &c);
        assert!(!v.holds);
        assert!(
            v.reason.contains("/dev/sda") && v.reason.contains("USB"),
            "{}",
            v.reason
        );
        // A disk the node does not have.
        let c = config(dir.path(), "    disk: /dev/nvme9n1\n");
        let v = install_disk_ok(&view(vec![ssd.clone()]), "a", &c);
        assert!(!v.holds);
        assert!(
            v.reason.contains("no disk on `a` matches /dev/nvme9n1"),
            "{}",
            v.reason
        );
        // A selector by serial.
        let c = config(dir.path(), "    diskSelector:\n      serial: S1\n");
        assert!(install_disk_ok(&view(vec![ssd.clone(), stick]), "a", &c).holds);
        let v = install_disk_ok(&view(vec![disk("/dev/sda", "X", "S2", "sata")]), "a", &c);
        assert!(!v.holds);
        assert!(v.reason.contains("serial S1"), "{}", v.reason);
    }

    #[test]
    fn what_it_cannot_read_or_check_refuses() {
        let dir = tempfile::tempdir().unwrap();
        let ssd = vec![disk("/dev/sda", "APPLE SSD", "S1", "nvme")];
        // No file.
        let v = install_disk_ok(&view(ssd.clone()), "a", &dir.path().join("none.yaml"));
        assert!(!v.holds);
        assert!(v.reason.contains("cannot read"), "{}", v.reason);
        // No disk named.
        let c = config(dir.path(), "    image: x\n");
        let v = install_disk_ok(&view(ssd.clone()), "a", &c);
        assert!(!v.holds);
        assert!(v.reason.contains("names no install disk"), "{}", v.reason);
        // A selector key it does not evaluate.
        let c = config(dir.path(), "    diskSelector:\n      size: '>= 100GB'\n");
        let v = install_disk_ok(&view(ssd.clone()), "a", &c);
        assert!(!v.holds);
        assert!(v.reason.contains("diskSelector.size"), "{}", v.reason);
        // Not YAML.
        let p = dir.path().join("bad.yaml");
        std::fs::write(&p, "machine: [\n").unwrap();
        assert!(!install_disk_ok(&view(ssd.clone()), "a", &p).holds);
        // Disks not read, or a node not observed.
        let c = config(dir.path(), "    disk: /dev/sda\n");
        let mut unread = view(ssd);
        unread.nodes[0].disks = Observed::NotAsked;
        assert!(!install_disk_ok(&unread, "a", &c).holds);
        assert!(!install_disk_ok(&unread, "zz", &c).holds);
    }
}
