//! The install disk a machine config names, and whether it is exactly one disk of the node it
//! is about to be applied to: `talos.install-disk-ok` (node-replace's guard) and the full
//! rebuild's `rebuild.plan` / `rebuild.check-node` (through `inventory::rebuild`) both read
//! and check it here, so the two cannot disagree about which disk a config means.
//!
//! A separate `install_disk` parameter can say one thing while the config says another, and
//! the config is what Talos installs to (seed lesson: the USB stick in the Mac moved the
//! Apple SSD from `/dev/sda` to `/dev/sdc`, and `install.disk: /dev/sda` pointed at the
//! stick). So the disk comes from the config itself: `machine.install.disk`, or the
//! `model`/`serial` of `machine.install.diskSelector` (not both: Talos gives the selector
//! priority, so a `disk` beside it would be a lie). SOPS-encrypted files are decrypted in
//! memory, only the disk is ever reported. Exactly one non-USB, writable, non-optical disk
//! must match. Everything that cannot be read or checked is a refusal naming the node and the
//! disk: an unreadable or undecryptable file, a config naming no disk, a `/dev/disk/...`
//! symlink, a selector key the engine does not evaluate (size, type, wwid, busPath, ...), an
//! empty selector, a missing disk list, zero or several matching disks.

use std::fmt;
use std::path::Path;

use crate::condition::view::{ClusterView, Disk, Verdict, cannot_decide};
use crate::dsl::doc::{Node, Value};
use crate::lint::config::{ConfigFile, Seg};

const DISK: &[Seg<'static>] = &[Seg::Key("machine"), Seg::Key("install"), Seg::Key("disk")];
const SELECTOR: &[Seg<'static>] = &[
    Seg::Key("machine"),
    Seg::Key("install"),
    Seg::Key("diskSelector"),
];

/// The `diskSelector` keys the engine evaluates against a disk list; any other key refuses.
const SELECTOR_FIELDS: &[&str] = &["serial", "model"];

/// How a config names its install disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DiskSpec {
    /// `machine.install.disk`: a device path.
    Path(String),
    /// `machine.install.diskSelector`: every field must match (`serial`, `model`).
    Selector(Vec<(String, String)>),
}

impl fmt::Display for DiskSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DiskSpec::Path(p) => f.write_str(p),
            DiskSpec::Selector(fields) => {
                let parts: Vec<String> = fields.iter().map(|(k, v)| format!("{k}={v}")).collect();
                write!(f, "diskSelector {}", parts.join(","))
            }
        }
    }
}

fn scalar(n: &Node) -> Option<String> {
    match &n.value {
        Value::Str(s) => Some(s.clone()),
        Value::Int(i) => Some(i.to_string()),
        _ => None,
    }
}

/// The install disk of a (decrypted) config: `disk` or `diskSelector` (not both, not
/// neither), with only fields the engine can check.
pub fn disk_spec(c: &ConfigFile) -> Result<DiskSpec, String> {
    let file = c.path.display();
    match (c.str(DISK), c.get(SELECTOR)) {
        (Some(_), Some(_)) => Err(format!(
            "`{file}` names its install disk twice (machine.install.disk and diskSelector; Talos lets the selector win): keep one"
        )),
        (Some(p), None) if !p.trim().is_empty() => {
            if p.starts_with("/dev/disk/") {
                Err(format!(
                    "`{file}`: install disk `{p}` is a symlink the engine cannot resolve against the disk list: pin it with machine.install.diskSelector (serial)"
                ))
            } else {
                Ok(DiskSpec::Path(p.to_string()))
            }
        }
        (None, Some(sel)) => {
            let Value::Map(entries) = &sel.value else {
                return Err(format!(
                    "`{file}`: machine.install.diskSelector is not a map"
                ));
            };
            let mut fields = Vec::new();
            for (k, v) in entries {
                if !SELECTOR_FIELDS.contains(&k.value.as_str()) {
                    return Err(format!(
                        "`{file}`: machine.install.diskSelector.{} cannot be checked against the disk list before the install; select the disk by path, or pin it by serial (or model)",
                        k.value
                    ));
                }
                let value = scalar(v).ok_or_else(|| {
                    format!(
                        "`{file}`: machine.install.diskSelector.{} is not a plain value",
                        k.value
                    )
                })?;
                fields.push((k.value.clone(), value));
            }
            if fields.is_empty() {
                return Err(format!(
                    "`{file}`: an empty diskSelector matches every disk"
                ));
            }
            Ok(DiskSpec::Selector(fields))
        }
        _ => Err(format!(
            "`{file}` names no install disk (machine.install.disk or diskSelector)"
        )),
    }
}

/// The install disk the config file at `config` names (SOPS files decrypted in memory), or
/// why it cannot be told.
pub fn configured_disk(config: &Path) -> Result<DiskSpec, String> {
    let cfg = ConfigFile::load(config)
        .map_err(|e| format!("cannot read the install disk from the config: {e}"))?;
    if !cfg.has_machine_doc() {
        return Err(format!(
            "`{}` has no v1alpha1 machine config document",
            config.display()
        ));
    }
    disk_spec(&cfg)
}

fn matches(spec: &DiskSpec, d: &Disk) -> bool {
    match spec {
        DiskSpec::Path(p) => d.dev_path == *p,
        DiskSpec::Selector(fields) => fields.iter().all(|(k, v)| match k.as_str() {
            "serial" => d.serial == *v,
            "model" => d.model == *v,
            _ => false,
        }),
    }
}

/// The one disk `spec` names on `node`, which must be writable and not USB. Zero or several
/// matches, a USB stick, a read-only or optical disk, or no disk list at all refuse, naming
/// the disk.
pub fn match_disk<'a>(node: &str, spec: &DiskSpec, disks: &'a [Disk]) -> Result<&'a Disk, String> {
    if disks.is_empty() {
        return Err(format!(
            "`{node}` reported no disks: the install disk {spec} cannot be checked"
        ));
    }
    let found: Vec<&Disk> = disks.iter().filter(|d| matches(spec, d)).collect();
    match found.as_slice() {
        [] => Err(format!(
            "no disk on `{node}` matches {spec}, the config's install disk (disks: {})",
            disks
                .iter()
                .map(|d| format!("{} {} serial {}", d.dev_path, d.model, d.serial))
                .collect::<Vec<_>>()
                .join("; ")
        )),
        [d] if d.transport == "usb" => Err(format!(
            "{} on `{node}` is the USB stick ({}, transport usb), not the install disk: the config's install disk {spec} would install Talos onto it (disk paths move when USB media is attached); pin the disk with machine.install.diskSelector (serial) or unplug the stick",
            d.dev_path, d.model
        )),
        [d] if d.readonly || d.cdrom => Err(format!(
            "{} on `{node}` is read-only or optical: it cannot be the install disk {spec}",
            d.dev_path
        )),
        [d] => Ok(d),
        many => Err(format!(
            "{} disks on `{node}` match the config's install disk {spec} ({}): pin it by serial",
            many.len(),
            many.iter()
                .map(|d| d.dev_path.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        )),
    }
}

/// The guard: the config's install disk resolves to exactly one non-USB writable disk of
/// `node`, as the node reports its disks now.
pub fn install_disk_ok(view: &ClusterView, node: &str, config: &Path) -> Verdict {
    let spec = match configured_disk(config) {
        Ok(d) => d,
        Err(why) => return Verdict::fail(why),
    };
    let described = spec.to_string();
    let Some(n) = view.node(node) else {
        return Verdict::fail(format!(
            "the config's install disk ({described}): `{node}` was not observed"
        ))
        .with("config_disk", described.as_str());
    };
    let disks = match n.disks.need(node, "Disks") {
        Ok(d) => d,
        Err(v) => {
            let v = match n.contact.gap() {
                Some(g) => cannot_decide(node, g),
                None => v,
            };
            return Verdict {
                reason: format!("the config's install disk ({described}): {}", v.reason),
                ..v
            }
            .with("config_disk", described.as_str());
        }
    };
    let usb: Vec<&str> = disks
        .iter()
        .filter(|d| d.transport == "usb")
        .map(|d| d.dev_path.as_str())
        .collect();
    let v = match match_disk(node, &spec, disks) {
        Ok(d) => Verdict::pass(format!(
            "the config's install disk ({described}) is {} on `{node}`: {} (serial {})",
            d.dev_path, d.model, d.serial
        ))
        .with("model", d.model.as_str())
        .with("serial", d.serial.as_str()),
        Err(why) => Verdict::fail(why),
    };
    v.with("usb_disks", usb)
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
        assert!(v.reason.contains("serial=S1"), "{}", v.reason);
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
        // Both a path and a selector: Talos would take the selector, so neither is trusted.
        let c = config(
            dir.path(),
            "    disk: /dev/sdb\n    diskSelector:\n      serial: S1\n",
        );
        let v = install_disk_ok(
            &view(vec![disk("/dev/sda", "APPLE SSD", "S1", "nvme")]),
            "a",
            &c,
        );
        assert!(!v.holds);
        assert!(
            v.reason.contains("names its install disk twice"),
            "{}",
            v.reason
        );
    }

    fn cfg(text: &str) -> ConfigFile {
        ConfigFile::from_parts(Path::new("n.yaml"), text, None).unwrap()
    }

    fn by_serial(path: &str, serial: &str, transport: &str) -> Disk {
        disk(path, &format!("M-{serial}"), serial, transport)
    }

    #[test]
    fn disk_spec_reads_path_or_selector_and_refuses_what_it_cannot_check() {
        let p = cfg("version: v1alpha1\nmachine:\n  install:\n    disk: /dev/sda\n");
        assert_eq!(disk_spec(&p).unwrap(), DiskSpec::Path("/dev/sda".into()));
        let s =
            cfg("version: v1alpha1\nmachine:\n  install:\n    diskSelector:\n      serial: X1\n");
        assert_eq!(
            disk_spec(&s).unwrap(),
            DiskSpec::Selector(vec![("serial".into(), "X1".into())])
        );
        for bad in [
            "version: v1alpha1\nmachine:\n  install:\n    diskSelector:\n      busPath: /pci0\n",
            "version: v1alpha1\nmachine:\n  install:\n    disk: /dev/disk/by-id/ata-X\n",
            "version: v1alpha1\nmachine:\n  install:\n    image: x\n",
            "version: v1alpha1\nmachine:\n  install:\n    disk: /dev/sda\n    diskSelector:\n      serial: X1\n",
            "version: v1alpha1\nmachine:\n  install:\n    diskSelector: {}\n",
        ] {
            assert!(disk_spec(&cfg(bad)).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_usb_stick_at_sda_is_refused_naming_it() {
        let disks = [
            by_serial("/dev/sda", "USB1", "usb"),
            by_serial("/dev/sdb", "USB2", "usb"),
            by_serial("/dev/sdc", "SSD", "sata"),
        ];
        let e = match_disk("mac", &DiskSpec::Path("/dev/sda".into()), &disks).unwrap_err();
        assert!(e.starts_with("/dev/sda on `mac` is the USB stick"), "{e}");
        let sel = DiskSpec::Selector(vec![("serial".into(), "SSD".into())]);
        assert_eq!(
            match_disk("mac", &sel, &disks).unwrap().dev_path,
            "/dev/sdc"
        );
        assert!(match_disk("mac", &DiskSpec::Path("/dev/sdz".into()), &disks).is_err());
        assert!(
            match_disk("mac", &sel, &[]).is_err(),
            "no disk list is no pass"
        );
        let twice = [
            by_serial("/dev/sda", "SSD", "sata"),
            by_serial("/dev/sdb", "SSD", "sata"),
        ];
        assert!(
            match_disk("mac", &sel, &twice)
                .unwrap_err()
                .contains("2 disks")
        );
        let mut ro = by_serial("/dev/sda", "SSD", "sata");
        ro.readonly = true;
        assert!(match_disk("mac", &sel, &[ro]).is_err());
    }
}
