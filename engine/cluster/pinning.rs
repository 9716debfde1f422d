//! Certificate pins for nodes in maintenance mode.
//!
//! A node in maintenance mode has no cluster identity yet: it serves a self-signed certificate
//! and takes no client certificate, and `talos.apply-config --insecure` then sends it the full
//! machine config with the cluster's keys. Accepting any certificate would let a machine in
//! the middle pose as the node (making `talos.not-member` pass) and collect those keys. So,
//! as SSH does with host keys, every maintenance connection is pinned by the server's SPKI
//! fingerprint (talosctl's `--cert-fingerprint`; Talos shows it on the node's console):
//!
//! - a pin given in `--node-endpoints` (`{"label": {"endpoint": "...", "fingerprint": "..."}}`)
//!   or published by the simulator is required to match;
//! - otherwise the first answer of the node to a probe is trusted, its fingerprint is
//!   recorded in the run directory (`maintenance-pins.json`, 0600) with a warning, and every
//!   later connection (including after `resume`) must match it;
//! - a configuration is never sent to a node without a pin, and a mismatch is a refusal
//!   naming both fingerprints.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use crate::cluster::talos::{ClientError, MaintenancePin, TalosClient};

/// The file in a run directory that holds learned pins (label → fingerprint).
pub const PINS_FILE: &str = "maintenance-pins.json";

/// A pin could not be used.
#[derive(Debug, thiserror::Error)]
pub enum PinError {
    /// No pin is known for the node, so nothing may be sent to it.
    #[error(
        "no certificate pin for `{label}` in maintenance mode: refusing to send it a machine config (probe it first, or give its fingerprint in `--node-endpoints`)"
    )]
    Unpinned {
        /// The node.
        label: String,
    },
    /// Connecting failed, or the certificate did not match.
    #[error(transparent)]
    Client(#[from] ClientError),
    /// The learned pins file could not be read or written.
    #[error("maintenance pins file `{path}`: {message}")]
    File {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        message: String,
    },
}

impl crate::cluster::observe::Brief for PinError {
    fn brief(&self) -> String {
        self.to_string()
    }
    fn kind(&self) -> crate::condition::view::GapKind {
        match self {
            // A certificate that does not match is not silence: it proves nothing about the
            // node, and must never read as "the node is down".
            PinError::Client(_) | PinError::Unpinned { .. } | PinError::File { .. } => {
                crate::condition::view::GapKind::Failed
            }
        }
    }
}

#[derive(Debug, Default)]
struct Inner {
    configured: BTreeMap<String, String>,
    learned: BTreeMap<String, String>,
    file: Option<PathBuf>,
}

/// The pins of one run: configured ones and those learned on first contact. Cheap to clone
/// (clones share the pins).
#[derive(Debug, Clone, Default)]
pub struct Pins(Arc<Mutex<Inner>>);

/// A maintenance connection and, if the node had no pin yet, the fingerprint it showed
/// (to be learned with [`Pins::learn`] once the node has answered as a maintenance node).
#[derive(Debug)]
pub struct Probed {
    /// The connection.
    pub client: TalosClient,
    /// The fingerprint to learn, if the connection was trust-on-first-use.
    pub unpinned: Option<String>,
}

impl Pins {
    /// Pins from configuration, plus those learned earlier in `file` (if it exists).
    pub fn new(
        configured: BTreeMap<String, String>,
        file: Option<PathBuf>,
    ) -> Result<Pins, PinError> {
        let learned = match &file {
            Some(path) => read_file(path)?,
            None => BTreeMap::new(),
        };
        Ok(Pins(Arc::new(Mutex::new(Inner {
            configured,
            learned,
            file,
        }))))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The fingerprint a node must show, if one is known.
    pub fn pin_of(&self, label: &str) -> Option<String> {
        let inner = self.lock();
        inner
            .configured
            .get(label)
            .or_else(|| inner.learned.get(label))
            .cloned()
    }

    /// Connects to a maintenance node for a probe: pinned if a pin is known, else trust on
    /// first use (the fingerprint is returned, not yet learned).
    pub async fn probe(&self, label: &str, endpoint: &str) -> Result<Probed, PinError> {
        if let Some(fp) = self.pin_of(label) {
            let client =
                TalosClient::connect_maintenance(endpoint, MaintenancePin::Expect(fp)).await?;
            return Ok(Probed {
                client,
                unpinned: None,
            });
        }
        let slot = Arc::new(Mutex::new(None));
        let client =
            TalosClient::connect_maintenance(endpoint, MaintenancePin::Learn(slot.clone())).await?;
        let seen = slot.lock().unwrap_or_else(|p| p.into_inner()).clone();
        Ok(Probed {
            client,
            unpinned: seen,
        })
    }

    /// Connects to a maintenance node that must already be pinned (to send it a config).
    pub async fn connect_pinned(
        &self,
        label: &str,
        endpoint: &str,
    ) -> Result<TalosClient, PinError> {
        let fp = self.pin_of(label).ok_or_else(|| PinError::Unpinned {
            label: label.to_string(),
        })?;
        Ok(TalosClient::connect_maintenance(endpoint, MaintenancePin::Expect(fp)).await?)
    }

    /// Records a fingerprint seen on first contact, with a warning, durably if the run has a
    /// pins file. A pin that already exists is never replaced.
    pub fn learn(&self, label: &str, fingerprint: &str) -> Result<(), PinError> {
        let mut inner = self.lock();
        if inner.configured.contains_key(label) || inner.learned.contains_key(label) {
            return Ok(());
        }
        tracing::warn!(
            target: "runbook::pinning",
            "maintenance-mode node `{label}` was not pinned: trusting its certificate on first use (SPKI fingerprint {fingerprint}); compare it with the fingerprint on the node's console"
        );
        inner
            .learned
            .insert(label.to_string(), fingerprint.to_string());
        if let Some(path) = inner.file.clone() {
            let json = serde_json::to_vec_pretty(&inner.learned).unwrap_or_default();
            crate::journal::durable::write_atomic(&path, &json).map_err(|e| PinError::File {
                path,
                message: e.to_string(),
            })?;
        }
        Ok(())
    }
}

fn read_file(path: &Path) -> Result<BTreeMap<String, String>, PinError> {
    let err = |message: String| PinError::File {
        path: path.to_path_buf(),
        message,
    };
    match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| err(e.to_string())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(BTreeMap::new()),
        Err(e) => Err(err(e.to_string())),
    }
}

/// One entry of a `--node-endpoints` file: an address, or an address with its pin.
#[derive(Debug, Clone, serde::Deserialize, serde::Serialize)]
#[serde(untagged)]
pub enum EndpointEntry {
    /// `"127.0.0.1:50000"`.
    Address(String),
    /// `{"endpoint": "127.0.0.1:50000", "fingerprint": "…"}`.
    Pinned {
        /// The address.
        endpoint: String,
        /// The SPKI fingerprint of its maintenance certificate.
        fingerprint: Option<String>,
    },
}

/// Splits a `--node-endpoints` map into label → address and label → fingerprint.
pub fn split_endpoints(
    entries: BTreeMap<String, EndpointEntry>,
) -> (BTreeMap<String, String>, BTreeMap<String, String>) {
    let mut endpoints = BTreeMap::new();
    let mut pins = BTreeMap::new();
    for (label, entry) in entries {
        match entry {
            EndpointEntry::Address(a) => {
                endpoints.insert(label, a);
            }
            EndpointEntry::Pinned {
                endpoint,
                fingerprint,
            } => {
                if let Some(fp) = fingerprint {
                    pins.insert(label.clone(), fp);
                }
                endpoints.insert(label, endpoint);
            }
        }
    }
    (endpoints, pins)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_files_take_plain_and_pinned_entries() {
        let entries: BTreeMap<String, EndpointEntry> = serde_json::from_str(
            r#"{"a": "127.0.0.1:1", "b": {"endpoint": "127.0.0.1:2", "fingerprint": "Zm9v"}}"#,
        )
        .unwrap();
        let (endpoints, pins) = split_endpoints(entries);
        assert_eq!(endpoints["a"], "127.0.0.1:1");
        assert_eq!(endpoints["b"], "127.0.0.1:2");
        assert_eq!(pins.len(), 1);
        assert_eq!(pins["b"], "Zm9v");
    }

    #[test]
    fn learned_pins_are_durable_owner_only_and_never_replaced() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join(PINS_FILE);
        let pins = Pins::new(
            BTreeMap::from([("c".into(), "conf".into())]),
            Some(file.clone()),
        )
        .unwrap();
        assert!(pins.pin_of("a").is_none());
        pins.learn("a", "first").unwrap();
        pins.learn("a", "second").unwrap();
        pins.learn("c", "other").unwrap();
        assert_eq!(pins.pin_of("a").as_deref(), Some("first"));
        assert_eq!(pins.pin_of("c").as_deref(), Some("conf"));
        let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let again = Pins::new(BTreeMap::new(), Some(file)).unwrap();
        assert_eq!(again.pin_of("a").as_deref(), Some("first"));
        assert!(again.pin_of("c").is_none());
    }

    #[tokio::test]
    async fn a_config_is_never_sent_to_an_unpinned_node() {
        let pins = Pins::default();
        let err = pins
            .connect_pinned("192.168.2.20", "127.0.0.1:9")
            .await
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "no certificate pin for `192.168.2.20` in maintenance mode: refusing to send it a machine config (probe it first, or give its fingerprint in `--node-endpoints`)"
        );
    }
}
