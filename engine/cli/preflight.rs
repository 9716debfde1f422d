//! `runbook run --override-preflight REASON`: the operator's decision, journaled once when the
//! run is created so every later session (`resume`) honours it without the flag. The runner
//! journals each preflight refusal it overrides (`preflight-override` with the step and the
//! findings); `status` and the report show both.

use crate::cli::Error;
use crate::journal::{Journal, Record, identity};

/// Appends the run's override decision (who, where, why).
pub fn record_decision(journal: &mut Journal, reason: &str) -> Result<(), Error> {
    journal
        .append(Record::PreflightOverride {
            step: None,
            reason: reason.to_string(),
            by: crate::cli::session::user(),
            host: identity::host_name(),
            findings: Vec::new(),
        })
        .map(|_| ())
        .map_err(Error::Journal)
}
