//! The plan hash: a stable fingerprint of what a plan will do.
//!
//! `runbook resume` recompiles the runbook copy stored in the run directory and compares
//! hashes, so a resumed run can never silently execute a different procedure. The hash covers
//! the canonical JSON of the runbook name, the non-secret parameters and every step (ids,
//! actions, arguments, guards, waits, retries, timeouts, rollbacks); it ignores source
//! positions and comments, so reformatting a file does not change it. Secret values are not
//! hashed (a hash of a weak secret is as good as the secret).

use serde_json::json;
use sha2::{Digest, Sha256};

use super::Plan;

/// Computes the hash of a plan (the `hash` field is ignored).
pub fn compute(plan: &Plan) -> String {
    let params: serde_json::Map<String, serde_json::Value> = plan
        .params
        .iter()
        .map(|(k, v)| {
            let value = if v.secret {
                json!({ "secret": true })
            } else {
                v.value.clone()
            };
            (k.clone(), value)
        })
        .collect();
    let canonical = json!({
        "format": 1,
        "runbook": plan.runbook,
        "params": params,
        "steps": plan.steps().collect::<Vec<_>>(),
        "rollbacks": plan.rollbacks,
    });
    // serde_json's Map is a BTreeMap (no preserve_order feature), so keys are sorted.
    let bytes = serde_json::to_vec(&canonical).unwrap_or_default();
    format!("sha256:{}", hex::encode(Sha256::digest(&bytes)))
}
