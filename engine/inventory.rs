//! The inventory (`cluster.yaml`): the operator's facts that no API call tells, which machine
//! config belongs to which node and what hardware each node has.
//!
//! Talos can say which PCI devices a node has once it answers, but not which config file on the
//! operator's laptop is meant for it, nor whether a USB stick may be plugged in when the config
//! is applied (the seed's Mac Mini moved its SSD from `/dev/sda` to `/dev/sdc`). Lints (L1, L4)
//! and rebuild runbooks read these facts from here. The format is documented in
//! `docs/inventory.md`; every error names `file:line:column`.

pub mod rebuild;

use std::path::{Path, PathBuf};

use crate::diagnostic::{Code, Diagnostic, Diagnostics};
use crate::dsl::doc::{Node, Value};
use crate::dsl::span::Span;
use crate::source::{Format, Source};

/// The GPU a node has, as the operator states it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Gpu {
    /// An NVIDIA GPU: the node gets the NVIDIA installer image and modules.
    Nvidia,
    /// No GPU that needs extensions.
    None,
}

/// One node of the inventory.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct InventoryNode {
    /// The node as the talosconfig names it (address or hostname).
    pub name: String,
    /// Its machine config, resolved against the inventory's directory (may be SOPS-encrypted).
    pub config: Option<PathBuf>,
    /// Its GPU.
    pub gpu: Gpu,
    /// Whether a USB stick or other removable disk may be plugged in.
    pub removable_media: bool,
}

/// A parsed inventory.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Inventory {
    /// The file it was read from.
    pub path: PathBuf,
    /// Its nodes, in file order.
    pub nodes: Vec<InventoryNode>,
}

/// Reading an inventory failed.
#[derive(Debug, thiserror::Error)]
pub enum InventoryError {
    /// The file could not be read.
    #[error("cannot read inventory `{path}`: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The file is not a valid inventory (the diagnostics name file, line and column).
    #[error("`{path}` is not a valid inventory")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong, with positions.
        diagnostics: Diagnostics,
    },
}

impl Inventory {
    /// Reads and checks `path`.
    pub fn load(path: &Path) -> Result<Inventory, InventoryError> {
        let text = std::fs::read_to_string(path).map_err(|source| InventoryError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let source = Source::new(path.display().to_string(), Format::Yaml, text);
        let base = path.parent().unwrap_or(Path::new("."));
        parse(&source, base).map_err(|diagnostics| InventoryError::Invalid {
            path: path.to_path_buf(),
            diagnostics,
        })
    }

    /// The node an inventory entry names, by name.
    pub fn node(&self, name: &str) -> Option<&InventoryNode> {
        self.nodes.iter().find(|n| n.name == name)
    }

    /// The node whose config is `config` (compared after resolving both paths).
    pub fn node_for_config(&self, config: &Path) -> Option<&InventoryNode> {
        let want = std::fs::canonicalize(config).ok();
        self.nodes.iter().find(|n| {
            n.config.as_deref().is_some_and(|c| {
                c == config || (want.is_some() && std::fs::canonicalize(c).ok() == want)
            })
        })
    }
}

/// The parameter that names the inventory for `default_from: inventory.nodes`.
pub const INVENTORY_PARAM: &str = "inventory";

/// The parameters of the runbook in `source` that default from the inventory
/// (`default_from: inventory.nodes`) and are not in `given`, as `--param` pairs: every node of
/// the inventory the `inventory` parameter names (given, or its default), in file order. Read
/// once when the run is planned, so the list is in the plan, its hash and `params.json`, and
/// `resume` never reads the file again. A missing or invalid inventory is an error naming the
/// parameter, never an empty list.
pub fn param_defaults(
    source: &Source,
    given: &[(String, String)],
) -> Result<Vec<(String, String)>, String> {
    let Ok((Some(rb), _)) = crate::dsl::parse_lenient(source) else {
        return Ok(Vec::new());
    };
    let wanted: Vec<&str> = rb
        .params
        .iter()
        .filter(|p| {
            p.default_from
                .as_ref()
                .is_some_and(|d| d.value.from_inventory())
        })
        .map(|p| p.name.value.as_str())
        .filter(|name| !given.iter().any(|(k, _)| k == name))
        .collect();
    let Some(first) = wanted.first() else {
        return Ok(Vec::new());
    };
    let path = given
        .iter()
        .rev()
        .find(|(k, _)| k == INVENTORY_PARAM)
        .map(|(_, v)| v.clone())
        .or_else(|| {
            rb.params
                .iter()
                .find(|p| p.name.value == INVENTORY_PARAM)
                .and_then(|p| p.default.as_ref())
                .and_then(|d| d.as_str().map(str::to_string))
        })
        .filter(|p| !p.trim().is_empty())
        .ok_or_else(|| {
            format!(
                "parameter `{first}` defaults from the inventory (inventory.nodes): give `--param {INVENTORY_PARAM}=cluster.yaml`, or `--param {first}=…`"
            )
        })?;
    let inventory = Inventory::load(Path::new(&path)).map_err(|e| match e {
        InventoryError::Invalid {
            ref diagnostics, ..
        } => format!("parameter `{first}` defaults from the inventory: {e}:\n{diagnostics}"),
        e => format!("parameter `{first}` defaults from the inventory: {e}"),
    })?;
    if inventory.nodes.is_empty() {
        return Err(format!(
            "parameter `{first}` defaults from the inventory, and `{path}` lists no node"
        ));
    }
    let names: Vec<&str> = inventory.nodes.iter().map(|n| n.name.as_str()).collect();
    Ok(wanted
        .into_iter()
        .map(|w| (w.to_string(), names.join(",")))
        .collect())
}

fn err(source: &Source, code: Code, span: Span, msg: String, label: &str) -> Diagnostic {
    Diagnostic::new(code, source, span, msg, label)
}

fn entries<'a>(
    source: &Source,
    node: &'a Node,
    what: &str,
    diags: &mut Diagnostics,
) -> &'a [(crate::dsl::span::Spanned<String>, Node)] {
    match &node.value {
        Value::Map(e) => e,
        _ => {
            diags.push(err(
                source,
                Code::WrongType,
                node.span,
                format!("{what} must be a map, found {}", node.type_name()),
                "here",
            ));
            &[]
        }
    }
}

/// Parses inventory text; relative config paths are resolved against `base`.
pub fn parse(source: &Source, base: &Path) -> Result<Inventory, Diagnostics> {
    let root = crate::dsl::yaml::parse(source)?;
    let mut diags = Diagnostics::default();
    let mut api_version = None;
    let mut kind = None;
    let mut nodes_node = None;
    for (k, v) in entries(source, &root, "the inventory", &mut diags) {
        match k.value.as_str() {
            "apiVersion" => api_version = Some(v),
            "kind" => kind = Some(v),
            "nodes" => nodes_node = Some(v),
            other => diags.push(
                err(
                    source,
                    Code::UnknownField,
                    k.span,
                    format!("unknown inventory field `{other}`"),
                    "unknown",
                )
                .with_help("the fields are apiVersion, kind and nodes"),
            ),
        }
    }
    expect_literal(
        source,
        &root,
        api_version,
        "apiVersion",
        "runbook/v1",
        &mut diags,
    );
    expect_literal(source, &root, kind, "kind", "Inventory", &mut diags);
    let mut nodes = Vec::new();
    match nodes_node.map(|n| &n.value) {
        None => diags.push(err(
            source,
            Code::MissingField,
            root.span,
            "the inventory has no `nodes` list".into(),
            "here",
        )),
        Some(Value::Seq(items)) => {
            for item in items {
                if let Some(n) = node_entry(source, item, base, &mut diags) {
                    if nodes.iter().any(|o: &InventoryNode| o.name == n.name) {
                        diags.push(err(
                            source,
                            Code::DuplicateId,
                            item.span,
                            format!("node `{}` is listed twice", n.name),
                            "again",
                        ));
                    }
                    nodes.push(n);
                }
            }
        }
        Some(_) => {
            if let Some(n) = nodes_node {
                diags.push(err(
                    source,
                    Code::WrongType,
                    n.span,
                    format!("`nodes` must be a list, found {}", n.type_name()),
                    "here",
                ));
            }
        }
    }
    diags.into_result(Inventory {
        path: PathBuf::from(&source.name),
        nodes,
    })
}

fn expect_literal(
    source: &Source,
    root: &Node,
    got: Option<&Node>,
    field: &str,
    want: &str,
    diags: &mut Diagnostics,
) {
    match got {
        None => diags.push(err(
            source,
            Code::MissingField,
            root.span,
            format!("the inventory needs `{field}: {want}`"),
            "here",
        )),
        Some(n) if n.as_str() == Some(want) => {}
        Some(n) => diags.push(err(
            source,
            Code::InvalidValue,
            n.span,
            format!("`{field}` must be `{want}`"),
            "here",
        )),
    }
}

fn node_entry(
    source: &Source,
    item: &Node,
    base: &Path,
    diags: &mut Diagnostics,
) -> Option<InventoryNode> {
    let mut name = None;
    let mut config = None;
    let mut gpu = Gpu::None;
    let mut removable_media = false;
    for (k, v) in entries(source, item, "a node entry", diags) {
        match k.value.as_str() {
            "name" => match v.as_str() {
                Some(s) if !s.trim().is_empty() => name = Some(s.to_string()),
                _ => diags.push(err(
                    source,
                    Code::WrongType,
                    v.span,
                    "`name` must be a non-empty string (the node as the talosconfig names it)"
                        .into(),
                    "here",
                )),
            },
            "config" => match v.as_str() {
                Some(s) if !s.is_empty() => config = Some(base.join(s)),
                _ => diags.push(err(
                    source,
                    Code::WrongType,
                    v.span,
                    "`config` must be a path to the node's machine config".into(),
                    "here",
                )),
            },
            "gpu" => match v.as_str() {
                Some("nvidia") => gpu = Gpu::Nvidia,
                Some("none") => gpu = Gpu::None,
                _ => diags.push(err(
                    source,
                    Code::InvalidValue,
                    v.span,
                    "`gpu` must be `nvidia` or `none`".into(),
                    "here",
                )),
            },
            "removable_media" => match v.value {
                Value::Bool(b) => removable_media = b,
                _ => diags.push(err(
                    source,
                    Code::WrongType,
                    v.span,
                    format!(
                        "`removable_media` must be true or false, found {}",
                        v.type_name()
                    ),
                    "here",
                )),
            },
            other => diags.push(
                err(
                    source,
                    Code::UnknownField,
                    k.span,
                    format!("unknown node field `{other}`"),
                    "unknown",
                )
                .with_help("the fields are name, config, gpu and removable_media"),
            ),
        }
    }
    match name {
        Some(name) => Some(InventoryNode {
            name,
            config,
            gpu,
            removable_media,
        }),
        None => {
            diags.push(err(
                source,
                Code::MissingField,
                item.span,
                "a node entry needs `name`".into(),
                "here",
            ));
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn src(text: &str) -> Source {
        Source::new("cluster.yaml", Format::Yaml, text)
    }

    #[test]
    fn reads_nodes_and_resolves_configs() {
        let inv = parse(
            &src("apiVersion: runbook/v1\nkind: Inventory\nnodes:\n  - name: 192.168.2.20\n    config: cp1.yaml\n    gpu: nvidia\n  - name: 192.168.2.49\n    config: cp3.sops.yaml\n    removable_media: true\n"),
            Path::new("/etc/cl"),
        )
        .unwrap();
        assert_eq!(inv.nodes.len(), 2);
        assert_eq!(inv.nodes[0].gpu, Gpu::Nvidia);
        assert_eq!(inv.nodes[0].config, Some(PathBuf::from("/etc/cl/cp1.yaml")));
        assert!(!inv.nodes[0].removable_media);
        assert_eq!(inv.nodes[1].gpu, Gpu::None);
        assert!(inv.nodes[1].removable_media);
    }

    #[test]
    fn errors_name_line_and_column() {
        let d = parse(
            &src("apiVersion: runbook/v1\nkind: Inventory\nnodes:\n  - name: a\n    gpu: amd\n    usb: yes\n  - name: a\n"),
            Path::new("."),
        )
        .unwrap_err();
        let got: Vec<(String, (usize, usize))> =
            d.0.iter()
                .map(|d| (d.message.clone(), d.line_col()))
                .collect();
        assert_eq!(
            got,
            vec![
                ("`gpu` must be `nvidia` or `none`".to_string(), (5, 10)),
                ("unknown node field `usb`".to_string(), (6, 5)),
                ("node `a` is listed twice".to_string(), (7, 5)),
            ]
        );
    }

    #[test]
    fn node_lists_default_from_the_inventory_param_and_fail_closed() {
        let dir = tempfile::tempdir().unwrap();
        let runbook = Source::new(
            "rb.yaml",
            Format::Yaml,
            "apiVersion: runbook/v1\nkind: Runbook\nmetadata: { name: r }\nparams:\n  inventory: { type: path, required: true }\n  nodes: { type: nodes, default_from: inventory.nodes }\nsteps:\n  - id: a\n    foreach: params.nodes\n    action: noop\n",
        );
        let inv = dir.path().join("cluster.yaml");
        std::fs::write(
            &inv,
            "apiVersion: runbook/v1\nkind: Inventory\nnodes:\n  - name: b\n  - name: a\n",
        )
        .unwrap();
        let given = |v: &[(&str, &str)]| -> Vec<(String, String)> {
            v.iter()
                .map(|(k, x)| (k.to_string(), x.to_string()))
                .collect()
        };
        let p = inv.display().to_string();
        assert_eq!(
            param_defaults(&runbook, &given(&[("inventory", &p)])).unwrap(),
            vec![("nodes".to_string(), "b,a".to_string())],
            "in file order"
        );
        assert!(
            param_defaults(&runbook, &given(&[("inventory", &p), ("nodes", "a")]))
                .unwrap()
                .is_empty(),
            "a given list is kept (the plan step compares it with the inventory)"
        );
        let e = param_defaults(&runbook, &[]).unwrap_err();
        assert!(e.contains("--param inventory=cluster.yaml"), "{e}");
        std::fs::write(&inv, "apiVersion: runbook/v1\nkind: Inventory\nnodes: []\n").unwrap();
        let e = param_defaults(&runbook, &given(&[("inventory", &p)])).unwrap_err();
        assert!(e.contains("lists no node"), "{e}");
        std::fs::write(&inv, "kind: Inventory\n").unwrap();
        let e = param_defaults(&runbook, &given(&[("inventory", &p)])).unwrap_err();
        assert!(e.contains("not a valid inventory"), "{e}");
    }

    #[test]
    fn wrong_kind_and_missing_nodes() {
        let d = parse(
            &src("apiVersion: runbook/v1\nkind: Runbook\n"),
            Path::new("."),
        )
        .unwrap_err();
        let msgs: Vec<&str> = d.0.iter().map(|d| d.message.as_str()).collect();
        assert_eq!(
            msgs,
            vec![
                "the inventory has no `nodes` list",
                "`kind` must be `Inventory`"
            ]
        );
    }
}
