//! The talosconfig file: read, write, and find it as `talosctl` does (`talos-api.md` §2).
//!
//! Layout: `context: <name>` and `contexts: {<name>: {endpoints, nodes, ca, crt, key,
//! cluster}}`, where `ca`, `crt` and `key` are base64 (standard) of PEM text. The deprecated
//! `target` is appended to `endpoints` on load, as the Go client does. The file is looked up in
//! this order: the `--talosconfig` flag, `$TALOSCONFIG`, `~/.talos/config`, then
//! `/var/run/secrets/talos.dev/config`. Every error names the file and the field. The client
//! key is held in a [`Secret`], so a context never prints it.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use saphyr::{LoadableYamlNode, YamlOwned};

use crate::secret::Secret;

/// `$TALOSCONFIG`.
pub const ENV_VAR: &str = "TALOSCONFIG";
/// Where Talos mounts a talosconfig into pods with Talos API access.
pub const SERVICE_ACCOUNT_PATH: &str = "/var/run/secrets/talos.dev/config";

/// A talosconfig problem.
#[derive(Debug, thiserror::Error)]
pub enum TalosconfigError {
    /// The file cannot be read.
    #[error("cannot read talosconfig {path}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// The file cannot be written.
    #[error("cannot write talosconfig {path}")]
    Write {
        /// The file.
        path: PathBuf,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// Not YAML.
    #[error("{path}: not valid YAML: {message}")]
    Yaml {
        /// The file.
        path: PathBuf,
        /// What the parser said.
        message: String,
    },
    /// A field is missing or malformed.
    #[error("{path}: field {field}: {message}")]
    Field {
        /// The file.
        path: PathBuf,
        /// Dotted field path, e.g. `contexts.homelab.ca`.
        field: String,
        /// What is wrong.
        message: String,
    },
    /// The selected context does not exist.
    #[error("{path}: context {name:?} is not defined (known: {known})")]
    NoContext {
        /// The file.
        path: PathBuf,
        /// Requested context.
        name: String,
        /// Known contexts, comma-separated.
        known: String,
    },
}

/// One context.
#[derive(Clone, Debug, Default)]
pub struct Context {
    /// apid endpoints (`host`, `host:port`, URL).
    pub endpoints: Vec<String>,
    /// Default target nodes.
    pub nodes: Vec<String>,
    /// OS CA certificate, PEM.
    pub ca_pem: String,
    /// Client certificate, PEM.
    pub crt_pem: String,
    /// Client key, PEM (Talos writes `ED25519 PRIVATE KEY` over PKCS#8).
    pub key_pem: Secret<String>,
    /// Cluster name for proxy endpoints (Omni).
    pub cluster: Option<String>,
}

impl PartialEq for Context {
    fn eq(&self, o: &Self) -> bool {
        self.endpoints == o.endpoints
            && self.nodes == o.nodes
            && self.ca_pem == o.ca_pem
            && self.crt_pem == o.crt_pem
            && self.key_pem.expose() == o.key_pem.expose()
            && self.cluster == o.cluster
    }
}

/// A whole talosconfig.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Talosconfig {
    /// The current context's name.
    pub context: String,
    /// Contexts by name.
    pub contexts: BTreeMap<String, Context>,
}

fn b64(s: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(s.as_bytes())
}

fn yaml_str(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_else(|_| "\"\"".into())
}

impl Talosconfig {
    /// A config with one context, which is current.
    pub fn single(name: &str, ctx: Context) -> Talosconfig {
        Talosconfig {
            context: name.to_string(),
            contexts: [(name.to_string(), ctx)].into(),
        }
    }

    /// Parses `text`; `path` is only used in errors.
    pub fn parse(text: &str, path: &Path) -> Result<Talosconfig, TalosconfigError> {
        let field = |field: String, message: &str| TalosconfigError::Field {
            path: path.to_path_buf(),
            field,
            message: message.to_string(),
        };
        let docs = YamlOwned::load_from_str(text).map_err(|e| TalosconfigError::Yaml {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
        let Some(doc) = docs.into_iter().next() else {
            return Err(field("context".into(), "the file is empty"));
        };
        if doc.as_mapping().is_none() {
            return Err(field("(root)".into(), "expected a mapping"));
        }
        let context = match doc.as_mapping_get("context") {
            None => String::new(),
            Some(v) if v.is_null() => String::new(),
            Some(v) => v
                .as_str()
                .ok_or_else(|| field("context".into(), "expected a string"))?
                .to_string(),
        };
        let mut contexts = BTreeMap::new();
        if let Some(cs) = doc.as_mapping_get("contexts").filter(|v| !v.is_null()) {
            let map = cs
                .as_mapping()
                .ok_or_else(|| field("contexts".into(), "expected a mapping of contexts"))?;
            for (k, v) in map.iter() {
                let name = k
                    .as_str()
                    .ok_or_else(|| field("contexts".into(), "context names must be strings"))?
                    .to_string();
                let f = |name_: &str| format!("contexts.{name}.{name_}");
                let text_of = |key: &str| -> Result<Option<String>, TalosconfigError> {
                    match v.as_mapping_get(key) {
                        None => Ok(None),
                        Some(x) if x.is_null() => Ok(None),
                        Some(x) => x
                            .as_str()
                            .map(|s| Some(s.to_string()))
                            .ok_or_else(|| field(f(key), "expected a string")),
                    }
                };
                let list_of = |key: &str| -> Result<Vec<String>, TalosconfigError> {
                    match v.as_mapping_get(key) {
                        None => Ok(Vec::new()),
                        Some(x) if x.is_null() => Ok(Vec::new()),
                        Some(x) => x
                            .as_vec()
                            .ok_or_else(|| field(f(key), "expected a list of strings"))?
                            .iter()
                            .map(|i| {
                                i.as_str()
                                    .map(str::to_string)
                                    .ok_or_else(|| field(f(key), "expected a list of strings"))
                            })
                            .collect(),
                    }
                };
                let pem_of = |key: &str| -> Result<String, TalosconfigError> {
                    let Some(enc) = text_of(key)? else {
                        return Ok(String::new());
                    };
                    let bytes = base64::engine::general_purpose::STANDARD
                        .decode(enc.trim())
                        .map_err(|_| field(f(key), "not valid base64"))?;
                    String::from_utf8(bytes).map_err(|_| field(f(key), "not PEM text"))
                };
                let mut endpoints = list_of("endpoints")?;
                if let Some(t) = text_of("target")? {
                    endpoints.push(t);
                }
                contexts.insert(
                    name.clone(),
                    Context {
                        endpoints,
                        nodes: list_of("nodes")?,
                        ca_pem: pem_of("ca")?,
                        crt_pem: pem_of("crt")?,
                        key_pem: Secret::new(pem_of("key")?),
                        cluster: text_of("cluster")?,
                    },
                );
            }
        }
        Ok(Talosconfig { context, contexts })
    }

    /// Reads a file.
    pub fn load(path: &Path) -> Result<Talosconfig, TalosconfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| TalosconfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Talosconfig::parse(&text, path)
    }

    /// The YAML text (PEM fields base64-encoded).
    pub fn to_yaml(&self) -> String {
        let mut s = format!("context: {}\ncontexts:\n", yaml_str(&self.context));
        for (name, c) in &self.contexts {
            s.push_str(&format!("    {}:\n", yaml_str(name)));
            let list = |key: &str, items: &[String]| {
                if items.is_empty() {
                    format!("        {key}: []\n")
                } else {
                    let mut s = format!("        {key}:\n");
                    for i in items {
                        s.push_str(&format!("            - {}\n", yaml_str(i)));
                    }
                    s
                }
            };
            s.push_str(&list("endpoints", &c.endpoints));
            if !c.nodes.is_empty() {
                s.push_str(&list("nodes", &c.nodes));
            }
            s.push_str(&format!("        ca: {}\n", b64(&c.ca_pem)));
            s.push_str(&format!("        crt: {}\n", b64(&c.crt_pem)));
            s.push_str(&format!("        key: {}\n", b64(c.key_pem.expose())));
            if let Some(cl) = &c.cluster {
                s.push_str(&format!("        cluster: {}\n", yaml_str(cl)));
            }
        }
        s
    }

    /// Writes the file (mode 0600 on Unix: it holds a private key).
    pub fn save(&self, path: &Path) -> Result<(), TalosconfigError> {
        let err = |source| TalosconfigError::Write {
            path: path.to_path_buf(),
            source,
        };
        let mut opts = std::fs::OpenOptions::new();
        opts.write(true).create(true).truncate(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt as _;
            opts.mode(0o600);
        }
        let mut f = opts.open(path).map_err(err)?;
        std::io::Write::write_all(&mut f, self.to_yaml().as_bytes()).map_err(err)
    }

    /// The context named `name`, or the current one; `path` is for errors.
    pub fn context(
        &self,
        name: Option<&str>,
        path: &Path,
    ) -> Result<(&str, &Context), TalosconfigError> {
        let name = name.unwrap_or(&self.context);
        self.contexts
            .get_key_value(name)
            .map(|(k, v)| (k.as_str(), v))
            .ok_or_else(|| TalosconfigError::NoContext {
                path: path.to_path_buf(),
                name: name.to_string(),
                known: self.contexts.keys().cloned().collect::<Vec<_>>().join(", "),
            })
    }
}

/// The talosconfig path from explicit inputs: `flag`, then `env` (`$TALOSCONFIG`), then
/// `home/.talos/config` if it exists, then [`SERVICE_ACCOUNT_PATH`] if it exists, else
/// `home/.talos/config` (where talosctl would create it).
pub fn lookup(flag: Option<&Path>, env: Option<OsString>, home: Option<&Path>) -> Option<PathBuf> {
    if let Some(f) = flag {
        return Some(f.to_path_buf());
    }
    if let Some(e) = env.filter(|e| !e.is_empty()) {
        return Some(PathBuf::from(e));
    }
    let user = home.map(|h| h.join(".talos").join("config"));
    if let Some(u) = user.as_ref().filter(|u| u.exists()) {
        return Some(u.clone());
    }
    let sa = Path::new(SERVICE_ACCOUNT_PATH);
    if sa.exists() {
        return Some(sa.to_path_buf());
    }
    user
}

/// [`lookup`] with this process's environment.
pub fn default_path(flag: Option<&Path>) -> Option<PathBuf> {
    let home = std::env::var_os("HOME").map(PathBuf::from);
    lookup(flag, std::env::var_os(ENV_VAR), home.as_deref())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx() -> Context {
        Context {
            endpoints: vec!["127.0.0.1:50000".into()],
            nodes: vec!["192.168.2.20".into()],
            ca_pem: "-----BEGIN CERTIFICATE-----\nAA==\n-----END CERTIFICATE-----\n".into(),
            crt_pem: "crt".into(),
            key_pem: Secret::new("-----BEGIN ED25519 PRIVATE KEY-----\nkey\n".into()),
            cluster: None,
        }
    }

    #[test]
    fn round_trip_and_no_key_in_debug() {
        let t = Talosconfig::single("sim", ctx());
        let back = Talosconfig::parse(&t.to_yaml(), Path::new("x")).unwrap();
        assert_eq!(back, t);
        assert!(!format!("{t:?}").contains("ED25519"));
    }

    #[test]
    fn errors_name_file_and_field() {
        let text = "context: a\ncontexts:\n  a:\n    endpoints: [1.2.3.4]\n    ca: '%%%'\n";
        let e = Talosconfig::parse(text, Path::new("/tmp/tc")).unwrap_err();
        assert_eq!(
            e.to_string(),
            "/tmp/tc: field contexts.a.ca: not valid base64"
        );
        let t = Talosconfig::parse(
            "context: b\ncontexts:\n  a:\n    target: 1.2.3.4\n",
            Path::new("f"),
        )
        .unwrap();
        assert_eq!(t.contexts["a"].endpoints, ["1.2.3.4"]);
        let e = t.context(None, Path::new("f")).unwrap_err();
        assert!(
            e.to_string()
                .contains("context \"b\" is not defined (known: a)")
        );
    }

    #[test]
    fn lookup_order() {
        let flag = Path::new("/flag");
        assert_eq!(
            lookup(Some(flag), Some("/env".into()), None),
            Some(flag.to_path_buf())
        );
        assert_eq!(
            lookup(None, Some("/env".into()), None),
            Some(PathBuf::from("/env"))
        );
        let home = tempfile::tempdir().unwrap();
        assert_eq!(
            lookup(None, None, Some(home.path())),
            Some(home.path().join(".talos/config"))
        );
    }
}
