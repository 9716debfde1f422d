//! Kubernetes waits: Node Ready and drained. Ready is necessary, never sufficient: runbooks
//! pair `kube.ready` with `talos.running`.

use crate::condition::view::{ClusterView, Verdict};

/// The Kubernetes Node is Ready.
pub fn ready(view: &ClusterView, x: &str) -> Verdict {
    match view.node(x) {
        None => Verdict::fail(format!("`{x}` was not observed")),
        Some(n) => match n.kube_ready {
            Some(true) => Verdict::pass(format!("Kubernetes reports `{x}` Ready")),
            Some(false) => Verdict::fail(format!("Kubernetes reports `{x}` NotReady")),
            None => Verdict::fail(format!("Kubernetes does not know `{x}` (yet)")),
        },
    }
}

/// No evictable pod is left on the node.
pub fn drained(view: &ClusterView, x: &str) -> Verdict {
    match view.node(x).and_then(|n| n.evictable_pods) {
        None => Verdict::fail(format!("pods on `{x}` unknown")),
        Some(0) => Verdict::pass(format!("no evictable pod left on `{x}`")),
        Some(k) => Verdict::fail(format!("{k} evictable pod(s) still on `{x}`")).with("pods", k),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::condition::etcd::tests::three;

    #[test]
    fn ready_and_drained() {
        let mut v = three();
        assert!(ready(&v, "a").holds);
        v.nodes[0].kube_ready = Some(false);
        assert!(!ready(&v, "a").holds);
        assert!(!drained(&v, "a").holds);
        v.nodes[0].evictable_pods = Some(2);
        assert!(!drained(&v, "a").holds);
        v.nodes[0].evictable_pods = Some(0);
        assert!(drained(&v, "a").holds);
    }
}
