//! The etcd cluster model.
//!
//! Runbook guards stand or fall on how etcd answers membership calls when members are down,
//! freshly restarted, learners or removed. This model reproduces the answers observed on real
//! etcd (see `etcd-rules.md`): quorum and leader election, the strict reconfiguration check
//! with its five-second connection window, one learner at a time, promotion only when in sync,
//! removal of stopped members, snapshots with a sha256 trailer that still work without quorum,
//! restore into a new single-member cluster, and removed members that cannot come back with
//! their old data. Talos calls member list/add/remove with "require leader", which is the only
//! mode modelled for those calls. The model holds no node knowledge: the node layer starts and
//! stops members and picks the member that serves each request.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use sha2::{Digest, Sha256};

use super::clock::{SimTime, Timings};
use super::error::{ApiError, Code, msg};

/// An etcd member id.
pub type MemberId = u64;
/// An etcd cluster id.
pub type ClusterId = u64;

/// Formats a member or cluster id the way talosctl prints it (`%016x`).
pub fn format_id(id: u64) -> String {
    format!("{id:016x}")
}

/// One member as the cluster's membership knows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Member {
    /// Member id.
    pub id: MemberId,
    /// Name published on first start (the Talos hostname); empty until then.
    pub name: String,
    /// Peer URLs given at add time.
    pub peer_urls: Vec<String>,
    /// Client URLs published on first start; empty until then.
    pub client_urls: Vec<String>,
    /// Learner (non-voting) member.
    pub is_learner: bool,
    /// Whether the member process currently runs.
    pub running: bool,
    /// When the process last started (its peer connections are active since then).
    pub running_since: Option<SimTime>,
}

/// The `EtcdMember` shape of the Talos API (`talos-api.md` §3.2).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MemberInfo {
    /// Member id.
    pub id: MemberId,
    /// Member name (Talos hostname); empty for a member added but never started.
    pub hostname: String,
    /// Peer URLs.
    pub peer_urls: Vec<String>,
    /// Client URLs; empty for a member added but never started.
    pub client_urls: Vec<String>,
    /// Learner flag.
    pub is_learner: bool,
}

impl From<&Member> for MemberInfo {
    fn from(m: &Member) -> Self {
        MemberInfo {
            id: m.id,
            hostname: m.name.clone(),
            peer_urls: m.peer_urls.clone(),
            client_urls: m.client_urls.clone(),
            is_learner: m.is_learner,
        }
    }
}

/// The `EtcdMemberStatus` shape of the Talos API.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MemberStatus {
    /// The answering member.
    pub member_id: MemberId,
    /// etcd protocol version.
    pub protocol_version: String,
    /// Storage version.
    pub storage_version: String,
    /// Database size in bytes.
    pub db_size: i64,
    /// Database bytes in use.
    pub db_size_in_use: i64,
    /// Leader id, 0 when there is none.
    pub leader: MemberId,
    /// Raft index.
    pub raft_index: u64,
    /// Raft term.
    pub raft_term: u64,
    /// Raft applied index.
    pub raft_applied_index: u64,
    /// Errors (e.g. `etcdserver: no leader`).
    pub errors: Vec<String>,
    /// Learner flag.
    pub is_learner: bool,
}

/// etcd alarm types.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Alarm {
    /// Database quota exceeded.
    NoSpace,
    /// Data corruption detected.
    Corrupt,
}

/// The key/value data standing in for the bbolt database.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct KvStore {
    /// Store revision (incremented by every write).
    pub revision: i64,
    /// Keys and values.
    pub entries: BTreeMap<String, String>,
}

impl KvStore {
    fn encode_body(&self) -> Vec<u8> {
        let mut body = format!("SIMETCD1\nrevision {}\n", self.revision).into_bytes();
        for (k, v) in &self.entries {
            body.extend_from_slice(
                format!(
                    "{}\t{}\n",
                    hex::encode(k.as_bytes()),
                    hex::encode(v.as_bytes())
                )
                .as_bytes(),
            );
        }
        let padded = body.len().div_ceil(512) * 512;
        body.resize(padded, 0);
        body
    }

    fn decode_body(body: &[u8]) -> Result<KvStore, ApiError> {
        let bad = || {
            ApiError::new(
                Code::InvalidArgument,
                "snapshot file is corrupted: invalid database",
            )
        };
        let end = body.iter().rposition(|b| *b != 0).map_or(0, |p| p + 1);
        let text = std::str::from_utf8(&body[..end]).map_err(|_| bad())?;
        let mut lines = text.lines();
        if lines.next() != Some("SIMETCD1") {
            return Err(bad());
        }
        let revision = lines
            .next()
            .and_then(|l| l.strip_prefix("revision "))
            .and_then(|r| r.parse::<i64>().ok())
            .ok_or_else(bad)?;
        let mut entries = BTreeMap::new();
        for line in lines {
            let (k, v) = line.split_once('\t').ok_or_else(bad)?;
            let k = hex::decode(k)
                .ok()
                .and_then(|b| String::from_utf8(b).ok())
                .ok_or_else(bad)?;
            let v = hex::decode(v)
                .ok()
                .and_then(|b| String::from_utf8(b).ok())
                .ok_or_else(bad)?;
            entries.insert(k, v);
        }
        Ok(KvStore { revision, entries })
    }

    fn size(&self) -> i64 {
        i64::try_from(self.encode_body().len())
            .unwrap_or(i64::MAX)
            .max(20480)
    }
}

/// The durations the etcd model needs.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct EtcdTimings {
    /// Election timeout (1 s at speed 1).
    pub election_timeout: Duration,
    /// Strict-reconfiguration connection window (5 s at speed 1).
    pub reconfig_window: Duration,
    /// Time a started learner needs to catch up with the leader.
    pub learner_sync: Duration,
}

impl From<&Timings> for EtcdTimings {
    fn from(t: &Timings) -> Self {
        EtcdTimings {
            election_timeout: t.election_timeout,
            reconfig_window: t.etcd_reconfig_window,
            learner_sync: t.etcd_join,
        }
    }
}

impl Default for EtcdTimings {
    fn default() -> Self {
        EtcdTimings::from(&Timings::default())
    }
}

/// The first member of a new cluster.
#[derive(Clone, Copy, Debug)]
pub struct NewMember<'a> {
    /// Member id.
    pub id: MemberId,
    /// Name (Talos hostname).
    pub name: &'a str,
    /// Peer URL.
    pub peer_url: &'a str,
    /// Client URL.
    pub client_url: &'a str,
}

/// Why a member process could not start.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StartError {
    /// The member was removed from the cluster; its data directory must be wiped.
    Removed,
    /// The member id was never part of this cluster.
    NoMatch,
}

impl StartError {
    /// The log line etcd prints as it exits.
    pub fn message(&self) -> &'static str {
        match self {
            StartError::Removed => msg::DATA_DIR_MUST_BE_REMOVED,
            StartError::NoMatch => "no match found for existing member",
        }
    }
}

/// One etcd cluster: its membership, replicated data, leader and alarms.
#[derive(Clone, Debug)]
pub struct EtcdCluster {
    id: ClusterId,
    members: BTreeMap<MemberId, Member>,
    removed: BTreeSet<MemberId>,
    kv: KvStore,
    leader: Option<MemberId>,
    term: u64,
    raft_index: u64,
    election_at: Option<SimTime>,
    step_down_at: Option<SimTime>,
    alarms: Vec<(MemberId, Alarm)>,
    timings: EtcdTimings,
}

impl EtcdCluster {
    /// A new cluster whose single member starts at `now` (what `talosctl bootstrap` does);
    /// the member elects itself within one election timeout.
    pub fn bootstrap(
        id: ClusterId,
        first: NewMember<'_>,
        kv: KvStore,
        now: SimTime,
        timings: EtcdTimings,
    ) -> EtcdCluster {
        let member = first.id;
        let mut c = EtcdCluster {
            id,
            members: BTreeMap::new(),
            removed: BTreeSet::new(),
            kv,
            leader: None,
            term: 1,
            raft_index: 1,
            election_at: None,
            step_down_at: None,
            alarms: Vec::new(),
            timings,
        };
        c.members.insert(
            member,
            Member {
                id: member,
                name: String::new(),
                peer_urls: vec![first.peer_url.to_string()],
                client_urls: Vec::new(),
                is_learner: false,
                running: false,
                running_since: None,
            },
        );
        // A freshly bootstrapped member cannot fail to start.
        let _ = c.start_member(member, first.name, first.client_url, now);
        c
    }

    /// Restore a snapshot into a NEW single-member cluster (new cluster and member ids, same
    /// data), as `etcdutl snapshot restore` followed by a fresh start.
    pub fn restore(
        snapshot: &[u8],
        skip_hash_check: bool,
        id: ClusterId,
        first: NewMember<'_>,
        now: SimTime,
        timings: EtcdTimings,
    ) -> Result<EtcdCluster, ApiError> {
        let kv = verify_snapshot(snapshot, skip_hash_check)?;
        Ok(EtcdCluster::bootstrap(id, first, kv, now, timings))
    }

    /// Cluster id.
    pub fn id(&self) -> ClusterId {
        self.id
    }

    /// The current leader, if any.
    pub fn leader(&self) -> Option<MemberId> {
        self.leader
    }

    /// All members (running or not).
    pub fn members(&self) -> impl Iterator<Item = &Member> {
        self.members.values()
    }

    /// One member.
    pub fn member(&self, id: MemberId) -> Option<&Member> {
        self.members.get(&id)
    }

    /// True if the id was removed from this cluster.
    pub fn was_removed(&self, id: MemberId) -> bool {
        self.removed.contains(&id)
    }

    /// Number of voting members.
    pub fn voter_count(&self) -> usize {
        self.members.values().filter(|m| !m.is_learner).count()
    }

    /// Majority of the voters.
    pub fn quorum_size(&self) -> usize {
        self.voter_count() / 2 + 1
    }

    /// True if a majority of the voters run.
    pub fn has_quorum(&self) -> bool {
        let running = self
            .members
            .values()
            .filter(|m| !m.is_learner && m.running)
            .count();
        running >= self.quorum_size()
    }

    /// The replicated data.
    pub fn kv(&self) -> &KvStore {
        &self.kv
    }

    /// Sets an alarm (scenario hook: NOSPACE).
    pub fn raise_alarm(&mut self, member: MemberId, alarm: Alarm) {
        if !self.alarms.contains(&(member, alarm)) {
            self.alarms.push((member, alarm));
        }
    }

    /// The earliest pending election or step-down.
    pub fn next_deadline(&self) -> Option<SimTime> {
        match (self.election_at, self.step_down_at) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Fires pending elections and step-downs whose time has come.
    pub fn tick(&mut self, now: SimTime) {
        if self.step_down_at.is_some_and(|t| t <= now) {
            self.step_down_at = None;
            self.leader = None;
        }
        if self.election_at.is_some_and(|t| t <= now) {
            self.election_at = None;
            if self.leader.is_none() && self.has_quorum() {
                // Deterministic winner: the running voter with the lowest id.
                self.leader = self
                    .members
                    .values()
                    .find(|m| !m.is_learner && m.running)
                    .map(|m| m.id);
                self.term += 1;
            }
        }
        self.reconcile(now);
    }

    /// Re-evaluates leadership after any change: a leader that stopped or left is gone at
    /// once; a leader without quorum steps down after one election timeout; a quorum without
    /// leader elects one after one election timeout.
    fn reconcile(&mut self, now: SimTime) {
        if let Some(l) = self.leader {
            let ok = self
                .members
                .get(&l)
                .is_some_and(|m| m.running && !m.is_learner);
            if !ok {
                self.leader = None;
            }
        }
        let quorum = self.has_quorum();
        match self.leader {
            Some(_) => {
                self.election_at = None;
                if quorum {
                    self.step_down_at = None;
                } else if self.step_down_at.is_none() {
                    self.step_down_at = Some(now + self.timings.election_timeout);
                }
            }
            None => {
                self.step_down_at = None;
                if !quorum {
                    self.election_at = None;
                } else if self.election_at.is_none() {
                    self.election_at = Some(now + self.timings.election_timeout);
                }
            }
        }
    }

    /// Starts a member process at `now` with its data intact. On first start the member
    /// publishes its name and client URL.
    pub fn start_member(
        &mut self,
        id: MemberId,
        name: &str,
        client_url: &str,
        now: SimTime,
    ) -> Result<(), StartError> {
        let Some(m) = self.members.get_mut(&id) else {
            return Err(if self.removed.contains(&id) {
                StartError::Removed
            } else {
                StartError::NoMatch
            });
        };
        if m.running {
            return Ok(());
        }
        m.running = true;
        m.running_since = Some(now);
        if m.name.is_empty() {
            m.name = name.to_string();
            m.client_urls = vec![client_url.to_string()];
        }
        self.reconcile(now);
        Ok(())
    }

    /// Stops a member process at `now` (crash, reboot, power loss).
    pub fn stop_member(&mut self, id: MemberId, now: SimTime) {
        if let Some(m) = self.members.get_mut(&id) {
            m.running = false;
            m.running_since = None;
        }
        self.reconcile(now);
    }

    fn serving(&self, via: MemberId) -> Result<&Member, ApiError> {
        match self.members.get(&via) {
            Some(m) if m.running => Ok(m),
            _ => Err(ApiError::new(Code::Unavailable, msg::SERVER_STOPPED)),
        }
    }

    fn serving_voter(&self, via: MemberId) -> Result<&Member, ApiError> {
        let m = self.serving(via)?;
        if m.is_learner {
            return Err(ApiError::new(Code::Unavailable, msg::LEARNER_RPC));
        }
        Ok(m)
    }

    fn require_leader(&self) -> Result<MemberId, ApiError> {
        self.leader.ok_or_else(ApiError::no_leader)
    }

    /// When the peer connection between `a` and `b` became active (None if either is down).
    fn active_since(&self, a: MemberId, b: MemberId) -> Option<SimTime> {
        let ma = self.members.get(&a)?;
        let mb = self.members.get(&b)?;
        Some(ma.running_since?.max(mb.running_since?))
    }

    /// etcd's `isConnectedFullySince`: `via` connected to every voter for the whole window.
    fn connected_fully(&self, via: MemberId, now: SimTime) -> bool {
        self.members
            .values()
            .filter(|m| !m.is_learner && m.id != via)
            .all(|m| {
                self.active_since(via, m.id)
                    .is_some_and(|t| now.saturating_since(t) >= self.timings.reconfig_window)
            })
    }

    /// etcd's `numConnectedSince`, counting `via` itself.
    fn num_connected(&self, via: MemberId, now: SimTime) -> usize {
        self.members
            .values()
            .filter(|m| !m.is_learner)
            .filter(|m| {
                m.id == via
                    || self
                        .active_since(via, m.id)
                        .is_some_and(|t| now.saturating_since(t) >= self.timings.reconfig_window)
            })
            .count()
    }

    /// `MemberList` with require-leader, served by `via`.
    pub fn member_list(&self, via: MemberId) -> Result<Vec<MemberInfo>, ApiError> {
        self.serving_voter(via)?;
        self.require_leader()?;
        Ok(self.members.values().map(MemberInfo::from).collect())
    }

    /// `MemberAdd` / `MemberAddAsLearner` with require-leader, served by `via`; the new member
    /// gets `new_id` and is neither named nor started.
    pub fn add_member(
        &mut self,
        via: MemberId,
        new_id: MemberId,
        peer_urls: &[String],
        is_learner: bool,
        now: SimTime,
    ) -> Result<MemberInfo, ApiError> {
        self.serving_voter(via)?;
        self.require_leader()?;
        // Strict reconfiguration (etcd `mayAddMember`).
        if !is_learner {
            let started = self
                .members
                .values()
                .filter(|m| !m.is_learner && !m.name.is_empty());
            let n_members = self.voter_count() + 1;
            if started.count() < n_members / 2 + 1 {
                return Err(ApiError::new(Code::Unknown, msg::NOT_ENOUGH_STARTED));
            }
        }
        if !self.connected_fully(via, now) {
            return Err(ApiError::unhealthy());
        }
        // Configuration-change validation, applied through raft.
        if self
            .members
            .values()
            .any(|m| m.peer_urls.iter().any(|u| peer_urls.contains(u)))
        {
            return Err(ApiError::new(
                Code::FailedPrecondition,
                msg::PEER_URLS_EXIST,
            ));
        }
        if is_learner && self.members.values().filter(|m| m.is_learner).count() >= 1 {
            return Err(ApiError::new(
                Code::FailedPrecondition,
                msg::TOO_MANY_LEARNERS,
            ));
        }
        let m = Member {
            id: new_id,
            name: String::new(),
            peer_urls: peer_urls.to_vec(),
            client_urls: Vec::new(),
            is_learner,
            running: false,
            running_since: None,
        };
        let info = MemberInfo::from(&m);
        self.members.insert(new_id, m);
        self.raft_index += 1;
        self.reconcile(now);
        Ok(info)
    }

    /// `MemberRemove` with require-leader, served by `via`.
    pub fn remove_member(
        &mut self,
        via: MemberId,
        id: MemberId,
        now: SimTime,
    ) -> Result<(), ApiError> {
        self.serving_voter(via)?;
        self.require_leader()?;
        let Some(target) = self.members.get(&id) else {
            return Err(ApiError::new(Code::NotFound, msg::MEMBER_NOT_FOUND));
        };
        // etcd `mayRemoveMember`; removing a learner needs no quorum check.
        if !target.is_learner {
            let voters = self.voter_count();
            let started_others = self
                .members
                .values()
                .filter(|m| !m.is_learner && m.id != id && !m.name.is_empty())
                .count();
            if started_others < (voters - 1) / 2 + 1 {
                return Err(ApiError::new(Code::Unknown, msg::NOT_ENOUGH_STARTED));
            }
            let target_down = self.active_since(via, id).is_none();
            if !(id != via && target_down) {
                let active = self.num_connected(via, now);
                if active.saturating_sub(1) < 1 + (voters - 1) / 2 {
                    return Err(ApiError::unhealthy());
                }
            }
        }
        self.members.remove(&id);
        self.removed.insert(id);
        self.alarms.retain(|(m, _)| *m != id);
        self.raft_index += 1;
        self.reconcile(now);
        Ok(())
    }

    /// `MemberPromote`, served by `via`. Without a leader the request times out.
    pub fn promote_member(
        &mut self,
        via: MemberId,
        id: MemberId,
        now: SimTime,
    ) -> Result<(), ApiError> {
        self.serving(via)?;
        if self.leader.is_none() {
            return Err(ApiError::new(Code::DeadlineExceeded, msg::DEADLINE));
        }
        let in_sync = self.learner_in_sync(id, now);
        let Some(m) = self.members.get_mut(&id) else {
            return Err(ApiError::new(Code::NotFound, msg::MEMBER_NOT_FOUND));
        };
        if !m.is_learner {
            return Err(ApiError::new(
                Code::FailedPrecondition,
                msg::MEMBER_NOT_LEARNER,
            ));
        }
        if !in_sync {
            return Err(ApiError::new(
                Code::FailedPrecondition,
                msg::LEARNER_NOT_READY,
            ));
        }
        m.is_learner = false;
        self.raft_index += 1;
        self.reconcile(now);
        Ok(())
    }

    /// True if `id` is a running learner that has caught up with a live leader.
    pub fn learner_in_sync(&self, id: MemberId, now: SimTime) -> bool {
        self.leader.is_some()
            && self.members.get(&id).is_some_and(|m| {
                m.running_since
                    .is_some_and(|t| now.saturating_since(t) >= self.timings.learner_sync)
            })
    }

    /// `Status` of the member `via`: answers even without leader, listing the error.
    pub fn status(&self, via: MemberId) -> Result<MemberStatus, ApiError> {
        let m = self.serving(via)?;
        let mut errors = Vec::new();
        if self.leader.is_none() {
            errors.push(msg::NO_LEADER.to_string());
        }
        for (member, alarm) in &self.alarms {
            if *member == via {
                errors.push(format!("memberID:{member} alarm:{}", alarm_name(*alarm)));
            }
        }
        let size = self.kv.size();
        Ok(MemberStatus {
            member_id: via,
            protocol_version: "3.6.5".into(),
            storage_version: "3.6.0".into(),
            db_size: size,
            db_size_in_use: size,
            leader: self.leader.unwrap_or(0),
            raft_index: self.raft_index,
            raft_term: self.term,
            raft_applied_index: self.raft_index,
            errors,
            is_learner: m.is_learner,
        })
    }

    /// Quorum read through `via` (what the Talos etcd health check does).
    pub fn quorum_read_ok(&self, via: MemberId) -> Result<(), ApiError> {
        self.serving_voter(via)?;
        if self.leader.is_none() {
            return Err(ApiError::new(Code::DeadlineExceeded, msg::DEADLINE));
        }
        Ok(())
    }

    /// Linearizable write through `via`.
    pub fn put(&mut self, via: MemberId, key: &str, value: &str) -> Result<i64, ApiError> {
        self.quorum_read_ok(via)?;
        if self.alarms.iter().any(|(_, a)| *a == Alarm::NoSpace) {
            return Err(ApiError::new(
                Code::Unknown,
                "etcdserver: mvcc: database space exceeded",
            ));
        }
        self.kv.revision += 1;
        self.raft_index += 1;
        self.kv.entries.insert(key.to_string(), value.to_string());
        Ok(self.kv.revision)
    }

    /// Read through `via`; a serializable read answers from local state without quorum.
    pub fn get(
        &self,
        via: MemberId,
        key: &str,
        serializable: bool,
    ) -> Result<Option<String>, ApiError> {
        if serializable {
            self.serving(via)?;
        } else {
            self.quorum_read_ok(via)?;
        }
        Ok(self.kv.entries.get(key).cloned())
    }

    /// `Snapshot` streamed from `via`: works without quorum; `len % 512 == 32`.
    pub fn snapshot(&self, via: MemberId) -> Result<Vec<u8>, ApiError> {
        self.serving(via)?;
        let mut body = self.kv.encode_body();
        let sum = Sha256::digest(&body);
        body.extend_from_slice(&sum);
        Ok(body)
    }

    /// A raw copy of `member/snap/db` (no trailer, `len % 512 == 0`); works while stopped.
    pub fn raw_db_copy(&self) -> Vec<u8> {
        self.kv.encode_body()
    }

    /// Moves leadership away from `via` if it leads; answers the leader afterwards.
    pub fn forfeit_leadership(
        &mut self,
        via: MemberId,
        now: SimTime,
    ) -> Result<MemberId, ApiError> {
        self.serving(via)?;
        let leader = self.require_leader()?;
        if leader == via {
            let next = self
                .members
                .values()
                .find(|m| !m.is_learner && m.running && m.id != via)
                .map(|m| m.id);
            if let Some(next) = next {
                self.leader = Some(next);
                self.term += 1;
            }
        }
        self.reconcile(now);
        self.require_leader()
    }

    /// `AlarmList` served by `via`.
    pub fn alarm_list(&self, via: MemberId) -> Result<Vec<(MemberId, Alarm)>, ApiError> {
        self.serving(via)?;
        Ok(self.alarms.clone())
    }

    /// Member ids in order.
    pub fn member_ids(&self) -> Vec<MemberId> {
        self.members.keys().copied().collect()
    }
}

/// The etcd alarm name as printed in status errors.
pub fn alarm_name(a: Alarm) -> &'static str {
    match a {
        Alarm::NoSpace => "NOSPACE",
        Alarm::Corrupt => "CORRUPT",
    }
}

/// Checks a snapshot's sha256 trailer (unless skipped) and decodes its data.
pub fn verify_snapshot(snapshot: &[u8], skip_hash_check: bool) -> Result<KvStore, ApiError> {
    let has_hash = snapshot.len() % 512 == 32;
    if has_hash {
        let (body, sum) = snapshot.split_at(snapshot.len() - 32);
        if !skip_hash_check {
            let actual = Sha256::digest(body);
            if actual.as_slice() != sum {
                return Err(ApiError::new(
                    Code::InvalidArgument,
                    format!(
                        "expected sha256 {}, got {}",
                        hex::encode(sum),
                        hex::encode(actual)
                    ),
                ));
            }
        }
        KvStore::decode_body(body)
    } else if skip_hash_check {
        KvStore::decode_body(snapshot)
    } else {
        Err(ApiError::new(
            Code::InvalidArgument,
            "snapshot missing hash but --skip-hash-check=false",
        ))
    }
}

#[cfg(test)]
mod tests;
