//! The kubeconfig a simulator run writes, so `kubectl --kubeconfig` and kube-rs
//! (`kube::Config::from_custom_kubeconfig`) reach it exactly as they reach a real cluster.
//!
//! The file embeds the throwaway CA and the admin client certificate and key as base64 `*-data`
//! fields (no side files), names one cluster, user and context (`runbook-sim`) and selects that
//! context. It is plain YAML written by hand: every value is either a fixed word, a URL or
//! base64, none of which needs quoting.

use std::net::SocketAddr;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;

use super::pki::Pki;

/// The name used for the cluster, the user and the context in the kubeconfig.
pub const CONTEXT: &str = "runbook-sim";

/// Renders the kubeconfig for a server listening on `addr`.
pub fn render(addr: SocketAddr, pki: &Pki) -> String {
    let ca = STANDARD.encode(pki.ca_pem.as_bytes());
    let cert = STANDARD.encode(pki.client_cert_pem.as_bytes());
    let key = STANDARD.encode(pki.client_key_pem.as_bytes());
    format!(
        "apiVersion: v1
kind: Config
clusters:
- name: {CONTEXT}
  cluster:
    server: https://{addr}
    certificate-authority-data: {ca}
users:
- name: {CONTEXT}-admin
  user:
    client-certificate-data: {cert}
    client-key-data: {key}
contexts:
- name: admin@{CONTEXT}
  context:
    cluster: {CONTEXT}
    user: {CONTEXT}-admin
    namespace: default
current-context: admin@{CONTEXT}
preferences: {{}}
"
    )
}
