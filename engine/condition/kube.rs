//! Kubernetes waits: Node Ready and drained. Ready is necessary, never sufficient: runbooks
//! pair `kube.ready` with `talos.running`.

use crate::condition::view::{ClusterView, Observed, Verdict, cannot_decide};

/// The Kubernetes Node is Ready.
pub fn ready(view: &ClusterView, x: &str) -> Verdict {
    match view.node(x) {
        None => Verdict::fail(format!("`{x}` was not observed")),
        Some(n) => match &n.kube_ready {
            Observed::Answered(Some(true)) => {
                Verdict::pass(format!("Kubernetes reports `{x}` Ready"))
            }
            Observed::Answered(Some(false)) => {
                Verdict::fail(format!("Kubernetes reports `{x}` NotReady"))
            }
            Observed::Answered(None) => {
                Verdict::fail(format!("Kubernetes does not know `{x}` (yet)"))
            }
            Observed::Missing(g) => cannot_decide(x, g),
            Observed::NotAsked => Verdict::fail(format!(
                "cannot decide: Kubernetes was not asked about `{x}` (no kubeconfig?)"
            )),
        },
    }
}

/// No evictable pod is left on the node.
pub fn drained(view: &ClusterView, x: &str) -> Verdict {
    match view.node(x).map(|n| &n.evictable_pods) {
        None => Verdict::fail(format!("`{x}` was not observed")),
        Some(Observed::Missing(g)) => cannot_decide(x, g),
        Some(Observed::NotAsked) => Verdict::fail(format!("pods on `{x}` unknown")),
        Some(Observed::Answered(0)) => Verdict::pass(format!("no evictable pod left on `{x}`")),
        Some(Observed::Answered(k)) => {
            Verdict::fail(format!("{k} evictable pod(s) still on `{x}`")).with("pods", *k)
        }
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
        v.nodes[0].kube_ready = Observed::Answered(Some(false));
        assert!(!ready(&v, "a").holds);
        v.nodes[0].evictable_pods = Observed::NotAsked;
        assert!(!drained(&v, "a").holds);
        v.nodes[0].evictable_pods = Observed::Answered(2);
        assert!(!drained(&v, "a").holds);
        v.nodes[0].evictable_pods = Observed::Answered(0);
        assert!(drained(&v, "a").holds);
    }
}
