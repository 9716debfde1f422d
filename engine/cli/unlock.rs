//! `runbook unlock RUN_ID --reason TEXT [--holder OTHER_RUN]`: release the cluster-wide
//! disruption lock (the Lease `kube-system/runbook-disruption`) that a dead run left behind,
//! without waiting for its TTL.
//!
//! It exists because a SIGKILLed holder keeps the cluster locked until its lease expires, and
//! an operator who knows the holder is dead must be able to say so, on the record. It reaches
//! the cluster RUN_ID recorded (never a flag or `$TALOSCONFIG`), opens RUN_ID's journal under
//! its run lock (so a run that is still driving cannot be unlocked under it), releases the
//! Lease only if RUN_ID holds it (or the run `--holder` names exactly), with a compare-and-swap
//! on what it read, and journals `cluster-lock` `unlocked` with the reason.

use crate::cli::session::{self, Target};
use crate::cli::{Error, print_out};
use crate::cluster::lease;
use crate::journal::{ClusterLockEvent, Journal, Record};

/// Releases the cluster lock held by `run_id` (or by `holder`, when named).
pub fn run(
    run_id: &str,
    reason: &str,
    holder: Option<&str>,
    state_dir: Option<&std::path::Path>,
) -> Result<(), Error> {
    let state = session::state_dir(state_dir)?;
    let run = state.open_run(run_id).map_err(Error::Journal)?;
    let conn = match Target::load(&run)? {
        Target::Cluster(conn) => conn,
        Target::Local => {
            return Err(Error::Usage(format!(
                "run `{run_id}` drives no cluster, so it holds no cluster lock"
            )));
        }
        Target::Sim { .. } => {
            return Err(Error::Usage(format!(
                "run `{run_id}` rehearsed on a simulator embedded in its process (`--sim`); its lock ended with that simulator"
            )));
        }
    };
    if conn.kubeconfig.is_none() && !conn.kubeconfig_fetched {
        return Err(Error::Usage(format!(
            "run `{run_id}` recorded no kubeconfig, so it never held the cluster lock"
        )));
    }
    // The run lock first: a run that is still driving keeps its cluster lock.
    let mut journal = Journal::open(&run).map_err(Error::Journal)?.journal;
    let owner = holder.unwrap_or(run_id);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(Error::Runtime)?;
    let released = runtime.block_on(async {
        let client = conn
            .kube_client()
            .await
            .map_err(|e| Error::Usage(format!("cannot reach the cluster: {e}")))?
            .ok_or_else(|| Error::Usage(format!("run `{run_id}` recorded no kubeconfig")))?;
        lease::unlock(client, owner, reason).await.map_err(|e| match e {
            lease::LeaseError::Held { holder } if holder.run_id != run_id => {
                Error::ClusterLock(format!(
                    "the cluster lock `{}` is held by {holder}, not by run `{run_id}`; to release it anyway, name that run: `--holder {}`",
                    lease::LEASE,
                    holder.run_id
                ))
            }
            lease::LeaseError::Held { holder } => Error::ClusterLock(format!(
                "the cluster lock `{}` is held by {holder}, not by run `{owner}`",
                lease::LEASE
            )),
            other => Error::ClusterLock(format!(
                "cannot release the cluster lock `{}`: {other}",
                lease::LEASE
            )),
        })
    })?;
    let Some(released) = released else {
        return print_out(&format!(
            "nobody holds the cluster lock `{}`; nothing to release\n",
            lease::LEASE
        ));
    };
    let detail = if released.run_id == run_id {
        reason.to_owned()
    } else {
        format!("{reason} (the lock was held by run `{}`)", released.run_id)
    };
    journal
        .append(Record::ClusterLock {
            event: ClusterLockEvent::Unlocked,
            lease: lease::LEASE.to_owned(),
            holder: released.identity.clone(),
            by: session::user(),
            detail,
        })
        .map_err(Error::Journal)?;
    print_out(&format!(
        "released the cluster lock `{}` held by {released}; journaled in run `{run_id}`\n",
        lease::LEASE
    ))
}
