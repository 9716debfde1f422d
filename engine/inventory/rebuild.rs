//! What a full rebuild takes from the inventory's configs, and the checks it makes with them
//! before anything is wiped: the install image and disk each config names, the cluster
//! identity the configs carry, and whether that disk is exactly one writable, non-USB disk on
//! the live node.
//!
//! The seed's operator rebuilt four times with images and disks typed separately from the
//! configs they applied; here every fact comes from the config that is about to be applied,
//! so the two cannot disagree. Plain functions over loaded configs and observed disks (the
//! `rebuild.plan` and `rebuild.check-node` actions call them), each failing closed: a value
//! the config does not have, a selector field the engine cannot check, or a disk list that
//! matches zero or several disks is a refusal naming the node and the disk, never a pass.
//! Values of secret fields are compared, never shown. The install-disk reading and matching
//! are the node-replace guard's (`condition::install_disk`), re-exported here. Design:
//! `docs/design/full-rebuild.md`.

use std::fmt;

pub use crate::condition::install_disk::{DiskSpec, disk_spec, match_disk};
use crate::condition::talos::{NVIDIA_SCHEMATICS, NVIDIA_VENDOR};
use crate::lint::ConfigFile;
use crate::lint::Seg::{self, Key};

const IMAGE: &[Seg<'static>] = &[Key("machine"), Key("install"), Key("image")];
const CLUSTER_ID: &[Seg<'static>] = &[Key("cluster"), Key("id")];
const CLUSTER_SECRET: &[Seg<'static>] = &[Key("cluster"), Key("secret")];
const CLUSTER_CA: &[Seg<'static>] = &[Key("cluster"), Key("ca"), Key("crt")];

/// The two ways to rebuild (`talos-procedures.md` §4(d)).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Variant {
    /// New secrets (`talosctl gen secrets`): the configs must carry a new identity.
    Fresh,
    /// The old secrets plus a snapshot: bootstrap with recover.
    Restore,
}

impl Variant {
    /// From its name in the runbook.
    pub fn parse(s: &str) -> Option<Variant> {
        match s {
            "fresh" => Some(Variant::Fresh),
            "restore" => Some(Variant::Restore),
            _ => None,
        }
    }
}

/// The install image of a config (`machine.install.image`), required.
pub fn image(c: &ConfigFile) -> Result<String, String> {
    c.str(IMAGE)
        .filter(|s| !s.trim().is_empty())
        .map(str::to_string)
        .ok_or_else(|| {
            format!(
                "`{}` has no machine.install.image: the rebuild takes the image from the config, never a default",
                c.path.display()
            )
        })
}

/// Whether an installer image carries the NVIDIA drivers.
pub fn is_nvidia_image(image: &str) -> bool {
    image.contains("nvidia") || NVIDIA_SCHEMATICS.iter().any(|s| image.contains(s))
}

/// The config's image against the node's PCI devices (lint L1, live): the NVIDIA image exactly
/// where an NVIDIA device is.
pub fn image_fits(node: &str, image: &str, pci_vendors: &[String]) -> Result<(), String> {
    let gpu = pci_vendors.iter().any(|v| v == NVIDIA_VENDOR);
    match (gpu, is_nvidia_image(image)) {
        (true, true) | (false, false) => Ok(()),
        (false, true) => Err(format!(
            "`{node}` has no NVIDIA PCI device but its config installs the NVIDIA image `{image}`: it would stay in `booting`, waiting for ext-nvidia-persistenced"
        )),
        (true, false) => Err(format!(
            "`{node}` has an NVIDIA GPU but its config installs `{image}`, without the NVIDIA drivers"
        )),
    }
}

/// A cluster's identity as a config carries it: `cluster.id`, `cluster.secret`, the cluster
/// CA certificate. Its `Debug` shows which are present, never a value.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Identity {
    id: Option<String>,
    secret: Option<String>,
    ca: Option<String>,
}

impl fmt::Debug for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Identity")
            .field("id", &self.id.is_some())
            .field("secret", &self.secret.is_some())
            .field("ca", &self.ca.is_some())
            .finish()
    }
}

impl Identity {
    /// The identity a (decrypted) config carries.
    pub fn of(c: &ConfigFile) -> Identity {
        let get = |p| c.str(p).filter(|s| !s.is_empty()).map(str::to_string);
        Identity {
            id: get(CLUSTER_ID),
            secret: get(CLUSTER_SECRET),
            ca: get(CLUSTER_CA),
        }
    }

    /// The `cluster.id`, if the config has one (not secret: Talos publishes it).
    pub fn cluster_id(&self) -> Option<&str> {
        self.id.as_deref()
    }

    fn fields(&self) -> [(&'static str, Option<&str>); 3] {
        [
            ("cluster.id", self.id.as_deref()),
            ("cluster.secret", self.secret.as_deref()),
            ("cluster.ca.crt", self.ca.as_deref()),
        ]
    }

    /// Whether it has what identifies a secrets bundle: the id and the CA (`cluster.secret`
    /// is compared too when both sides have it).
    fn complete(&self) -> bool {
        self.id.is_some() && self.ca.is_some()
    }

    /// An error naming what is missing unless it is `complete`.
    pub fn require(&self) -> Result<(), String> {
        if self.complete() {
            return Ok(());
        }
        let missing: Vec<&str> = self
            .fields()
            .iter()
            .filter(|(k, v)| *k != "cluster.secret" && v.is_none())
            .map(|(k, _)| *k)
            .collect();
        Err(format!(
            "the configs carry no {}: whether they are the cluster's old or new secrets cannot be checked",
            missing.join(", ")
        ))
    }
}

/// The configs' identity against one running node's, for `variant`: `fresh` needs every field
/// both carry to be new, `restore` the same. The configs must carry `cluster.id` and the CA,
/// and the running node at least one field, or nothing can be shown.
pub fn check_identity(
    variant: Variant,
    configs: &Identity,
    running: &Identity,
    node: &str,
) -> Result<(), String> {
    configs.require()?;
    let pairs: Vec<(&str, &str, &str)> = configs
        .fields()
        .iter()
        .zip(running.fields())
        .filter_map(|((k, c), (_, r))| Some((*k, (*c)?, r?)))
        .collect();
    if pairs.is_empty() {
        return Err(format!(
            "`{node}`'s running config carries no cluster identity to compare with"
        ));
    }
    match variant {
        Variant::Fresh => {
            let same: Vec<&str> = pairs
                .iter()
                .filter(|(_, c, r)| c == r)
                .map(|(k, _, _)| *k)
                .collect();
            if same.is_empty() {
                Ok(())
            } else {
                Err(format!(
                    "variant `fresh` needs new secrets, but the configs' {} equal{} what `{node}` runs (values not shown): generate a new bundle with `talosctl gen secrets` and the configs from it, or rebuild with `variant=restore`",
                    same.join(", "),
                    if same.len() == 1 { "s" } else { "" }
                ))
            }
        }
        Variant::Restore => {
            let differ: Vec<&str> = pairs
                .iter()
                .filter(|(_, c, r)| c != r)
                .map(|(k, _, _)| *k)
                .collect();
            if differ.is_empty() {
                Ok(())
            } else {
                Err(format!(
                    "variant `restore` needs the cluster's old secrets (the snapshot is unreadable without them), but the configs' {} differ from what `{node}` runs (values not shown)",
                    differ.join(", ")
                ))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn cfg(text: &str) -> ConfigFile {
        ConfigFile::from_parts(Path::new("n.yaml"), text, None).unwrap()
    }

    const ID: &str = "cluster:\n  id: ID1\n  secret: S1\n  ca:\n    crt: C1\n";

    #[test]
    fn identity_fresh_needs_every_field_new_and_restore_every_field_old() {
        let old = Identity::of(&cfg(&format!("version: v1alpha1\n{ID}")));
        let new = Identity::of(&cfg(
            "version: v1alpha1\ncluster:\n  id: ID2\n  secret: S2\n  ca:\n    crt: C2\n",
        ));
        let half = Identity::of(&cfg(
            "version: v1alpha1\ncluster:\n  id: ID2\n  secret: S1\n  ca:\n    crt: C2\n",
        ));
        assert!(check_identity(Variant::Fresh, &new, &old, "n").is_ok());
        let e = check_identity(Variant::Fresh, &old, &old, "n").unwrap_err();
        assert!(
            e.contains("cluster.id, cluster.secret, cluster.ca.crt equal"),
            "{e}"
        );
        assert!(
            !e.contains("S1") && !e.contains("ID1"),
            "values never shown: {e}"
        );
        let e = check_identity(Variant::Fresh, &half, &old, "n").unwrap_err();
        assert!(e.contains("cluster.secret equals"), "{e}");
        assert!(check_identity(Variant::Restore, &old, &old, "n").is_ok());
        assert!(check_identity(Variant::Restore, &new, &old, "n").is_err());
        let none = Identity::default();
        assert!(check_identity(Variant::Fresh, &none, &old, "n").is_err());
        let no_ca = Identity::of(&cfg(
            "version: v1alpha1\ncluster:\n  id: ID2\n  secret: S2\n",
        ));
        let e = check_identity(Variant::Fresh, &no_ca, &old, "n").unwrap_err();
        assert!(e.contains("carry no cluster.ca.crt"), "{e}");
        assert!(check_identity(Variant::Fresh, &new, &none, "n").is_err());
        assert_eq!(
            format!("{old:?}"),
            "Identity { id: true, secret: true, ca: true }"
        );
    }

    #[test]
    fn image_must_fit_the_pci_devices() {
        let nv = "factory.talos.dev/installer/86a5d7c9beb23b4aea2777e44ca06c8c2ceea8a874ccd2b9a6743c4f734329e0:v1.11.5";
        let gpu = vec![NVIDIA_VENDOR.to_string()];
        assert!(image_fits("n", nv, &gpu).is_ok());
        assert!(image_fits("n", nv, &[]).is_err());
        assert!(image_fits("n", "ghcr.io/siderolabs/installer:v1.11.5", &gpu).is_err());
        assert!(image_fits("n", "ghcr.io/siderolabs/installer:v1.11.5", &[]).is_ok());
    }
}
