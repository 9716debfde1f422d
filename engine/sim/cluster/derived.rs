//! The simulated cluster's derived state: services, stages and Kubernetes registration
//! re-evaluated at the model's current time ([`Cluster::settle`]), and what is computed on
//! read (the API server being up, a Node's Ready condition, MachineStatus). Split out of
//! `cluster.rs` along that seam: these read the model and never schedule transitions.

use super::*;

impl Cluster {
    // ----------------------------------------------------------------------------------
    // Derived state
    // ----------------------------------------------------------------------------------

    /// [`Cluster::settle`] unless nothing it reads can have changed since the last one: the
    /// revision is the same (no call, transition or direct change since) and the model has not
    /// reached the earliest time threshold settle compares against. Settling is idempotent
    /// at a fixed state, and between thresholds its comparisons all come out the same, so the
    /// skipped settle would have changed nothing: the answers are those of settling on every
    /// access (`a_lazy_settle_answers_exactly_as_an_eager_one`).
    pub(super) fn settle_if_due(&mut self) {
        if !self.eager_settle
            && let Some(s) = self.settled
            && s.revision == self.revision
            && s.due.is_none_or(|d| self.now < d)
        {
            return;
        }
        self.settle();
    }

    /// The earliest time after now at which a comparison in [`Cluster::settle`] flips by time
    /// alone (conservative: every threshold of every node, whatever its stage).
    fn settle_due(&self) -> Option<SimTime> {
        let now = self.now;
        let t = &self.timings;
        let mut due: Option<SimTime> = None;
        let mut at = |x: SimTime| {
            if x > now {
                due = Some(due.map_or(x, |d| d.min(x)));
            }
        };
        for n in &self.nodes {
            at(n.boot_started_at + t.service_start);
            at(n.boot_started_at + t.kubelet_start);
            if let Some(st) = n.etcd_started_at {
                at(st + t.etcd_health_interval);
            }
            if let Some(k) = n.kubelet_started_at {
                at(k);
                at(k + t.kubelet_ready);
            }
        }
        due
    }

    /// Re-evaluates services, stages and Kubernetes registration at the current time.
    pub(super) fn settle(&mut self) {
        self.settle_now();
        self.settled = Some(Settled {
            revision: self.revision,
            due: self.settle_due(),
        });
    }

    fn settle_now(&mut self) {
        let now = self.now;
        let t = self.timings;
        for i in 0..self.nodes.len() {
            let (up, stage) = (self.nodes[i].api_up(), self.nodes[i].stage);
            if !up || !matches!(stage, Stage::Booting | Stage::Running) {
                continue;
            }
            let etcd_health = self
                .local_member(i)
                .and_then(|(ci, m)| self.etcd[ci].quorum_read_ok(m));
            let n = &mut self.nodes[i];
            let boot = n.boot_started_at;
            if now >= boot + t.service_start {
                let svc = n.service_mut("cri", now);
                svc.set(ServiceState::Running, "Health check successful", now);
                svc.healthy = Some(true);
            }
            if now >= boot + t.kubelet_start {
                let svc = n.service_mut("kubelet", now);
                svc.set(ServiceState::Running, "Health check successful", now);
                svc.healthy = Some(true);
                n.kubelet_started_at.get_or_insert(boot + t.kubelet_start);
            }
            if let Some(st) = n.etcd_started_at
                && now >= st + t.etcd_health_interval
            {
                let svc = n.service_mut("etcd", now);
                match &etcd_health {
                    Ok(()) => {
                        svc.healthy = Some(true);
                        svc.health_message = String::new();
                    }
                    Err(e) => {
                        svc.healthy = Some(false);
                        svc.health_message = e.message.clone();
                    }
                }
            }
            let cri_up = n.service("cri").is_some_and(Service::is_up);
            for (svc, path) in n.extension_services() {
                let ok = cri_up && n.path_exists(path);
                let s = n.service_mut(svc, now);
                if ok {
                    s.set(
                        ServiceState::Running,
                        "Started task ext (PID 2817) for container ext",
                        now,
                    );
                    s.healthy = Some(true);
                } else if cri_up {
                    s.set(
                        ServiceState::Waiting,
                        &format!("Waiting for path {path:?} to exist"),
                        now,
                    );
                }
            }
            if n.stage == Stage::Booting && n.services.values().all(Service::is_up) {
                n.stage = Stage::Running;
                n.first_boot_after_upgrade = false;
                n.last_error = None;
            }
        }
        // Kubernetes: kubelets register and Talos uncordons what it cordoned.
        if self.k8s_api_available() {
            for i in 0..self.nodes.len() {
                let n = &self.nodes[i];
                let deleted = n
                    .kubelet_started_at
                    .is_some_and(|k| self.deleted_k8s_nodes.contains(&(i, k)));
                if n.api_up()
                    && n.kubelet_started_at.is_some_and(|k| now >= k)
                    && !n.k8s_registered
                    && !deleted
                {
                    self.register_k8s_node(i);
                }
                let n = &mut self.nodes[i];
                if n.cordoned_by_talos
                    && n.kubelet_started_at
                        .is_some_and(|k| now >= k + t.kubelet_ready)
                {
                    n.cordoned_by_talos = false;
                    self.unschedulable.remove(&n.hostname);
                }
            }
        }
    }

    pub(super) fn register_k8s_node(&mut self, i: usize) {
        let n = &mut self.nodes[i];
        n.k8s_registered = true;
        let host = n.hostname.clone();
        let cp = n.is_control_plane();
        let mut labels = BTreeMap::from([
            ("kubernetes.io/hostname".to_string(), host.clone()),
            ("kubernetes.io/os".to_string(), "linux".to_string()),
        ]);
        if cp {
            labels.insert(
                "node-role.kubernetes.io/control-plane".into(),
                String::new(),
            );
        }
        self.node_labels.entry(host.clone()).or_insert(labels);
        if cp {
            for comp in [
                "kube-apiserver",
                "kube-controller-manager",
                "kube-scheduler",
            ] {
                let name = format!("{comp}-{host}");
                if !self.pods.iter().any(|p| p.name == name) {
                    self.pods.push(PodState {
                        namespace: "kube-system".into(),
                        name,
                        node: Some(host.clone()),
                        owner: PodOwner::Mirror,
                        app: comp.into(),
                    });
                }
            }
        }
        for ds in ["kube-flannel", "kube-proxy"] {
            let present = self.pods.iter().any(|p| {
                p.owner == PodOwner::DaemonSet(ds.into()) && p.node.as_deref() == Some(&host)
            });
            if !present {
                let name = format!("{ds}-{}", self.pod_suffix());
                self.pods.push(PodState {
                    namespace: "kube-system".into(),
                    name,
                    node: Some(host.clone()),
                    owner: PodOwner::DaemonSet(ds.into()),
                    app: ds.into(),
                });
            }
        }
    }

    pub(super) fn pod_suffix(&mut self) -> String {
        const ALPHA: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
        let mut x = self.next_id();
        (0..5)
            .map(|_| {
                let c = ALPHA[(x % ALPHA.len() as u64) as usize];
                x /= ALPHA.len() as u64;
                char::from(c)
            })
            .collect()
    }

    /// True if the node's kube-apiserver static pod serves (kubelet up long enough and the
    /// local etcd member has a leader).
    pub(super) fn apiserver_up(&self, i: usize) -> bool {
        let n = &self.nodes[i];
        n.api_up()
            && n.is_control_plane()
            && matches!(n.stage, Stage::Booting | Stage::Running)
            && n.kubelet_started_at
                .is_some_and(|k| self.now >= k + self.timings.kubelet_ready)
            && self
                .local_member(i)
                .is_ok_and(|(ci, _)| self.etcd[ci].leader().is_some())
    }

    /// True if some API server can answer Kubernetes requests.
    pub fn k8s_api_available(&self) -> bool {
        (0..self.nodes.len()).any(|i| self.apiserver_up(i))
    }

    pub(super) fn kubelet_running(&self, i: usize) -> bool {
        let n = &self.nodes[i];
        n.api_up()
            && matches!(
                n.stage,
                Stage::Booting
                    | Stage::Running
                    | Stage::Upgrading
                    | Stage::Resetting
                    | Stage::Rebooting
                    | Stage::ShuttingDown
            )
            && n.kubelet_started_at.is_some_and(|k| self.now >= k)
    }

    /// The Ready condition of the node's Kubernetes object (None = no object).
    pub(super) fn k8s_ready(&self, i: usize) -> Option<ConditionStatus> {
        let n = &self.nodes[i];
        if !n.k8s_registered {
            return None;
        }
        let t = &self.timings;
        if self.kubelet_running(i) {
            let ready = n
                .kubelet_started_at
                .is_some_and(|k| self.now >= k + t.kubelet_ready);
            return Some(if ready {
                ConditionStatus::True
            } else {
                ConditionStatus::False
            });
        }
        match n.kubelet_stopped_at {
            Some(s) if self.now < s + t.node_monitor_grace => Some(ConditionStatus::True),
            _ => Some(ConditionStatus::Unknown),
        }
    }

    pub(super) fn machine_status_of(&self, i: usize) -> MachineStatus {
        let n = &self.nodes[i];
        let stage = n.stage;
        if !matches!(stage, Stage::Booting | Stage::Running) {
            return MachineStatus {
                stage,
                ready: true,
                unmet_conditions: Vec::new(),
            };
        }
        let mut unmet = Vec::new();
        let mut required = vec!["apid", "machined", "kubelet"];
        if n.is_control_plane() {
            required.extend(["etcd", "trustd"]);
        }
        let bad: Vec<&str> = required
            .into_iter()
            .filter(|s| {
                n.service(s).is_none_or(|svc| {
                    svc.state != ServiceState::Running || svc.healthy == Some(false)
                })
            })
            .collect();
        if !bad.is_empty() {
            unmet.push((
                "services".to_string(),
                format!("some services are not healthy: {}", bad.join(", ")),
            ));
        }
        if n.is_control_plane() && !self.apiserver_up(i) {
            unmet.push((
                "staticPods".to_string(),
                "static pods kube-system/kube-apiserver, kube-system/kube-controller-manager, kube-system/kube-scheduler are not ready".to_string(),
            ));
        }
        match self.k8s_ready(i) {
            Some(ConditionStatus::True) if self.kubelet_running(i) => {}
            Some(_) => unmet.push((
                "nodeReady".to_string(),
                format!("node {:?} is not ready", n.hostname),
            )),
            None => unmet.push((
                "nodeReady".to_string(),
                format!("node {:?} status is not available yet", n.hostname),
            )),
        }
        MachineStatus {
            stage,
            ready: unmet.is_empty(),
            unmet_conditions: unmet,
        }
    }

    /// After a membership change: running members that were removed exit by themselves.
    pub(super) fn reap_removed_members(&mut self) {
        let now = self.now;
        for i in 0..self.nodes.len() {
            let EtcdData::Member { cluster, member } = self.nodes[i].etcd_data else {
                continue;
            };
            let Some(c) = self.etcd.iter().find(|c| c.id() == cluster) else {
                continue;
            };
            if c.member(member).is_none() && self.nodes[i].etcd_started_at.is_some() {
                let n = &mut self.nodes[i];
                n.etcd_started_at = None;
                let svc = n.service_mut("etcd", now);
                svc.set(
                    ServiceState::Failed,
                    &format!(
                        "Error running Containerd(etcd), going to restart forever: {}",
                        msg::PERMANENTLY_REMOVED
                    ),
                    now,
                );
                svc.healthy = Some(false);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim::{Scenario, Speed};

    /// Everything a client can read of every node at `now`.
    fn answers(c: &mut Cluster, now: SimTime) -> String {
        let labels: Vec<String> = c.nodes().iter().map(|n| n.label().to_string()).collect();
        let mut out = String::new();
        for l in &labels {
            out += &format!(
                "{l}: {:?} {:?} {:?} {:?} {:?} {:?}\n",
                c.machine_status(l, now),
                c.service_list(l, now),
                c.etcd_member_list(l, false, now),
                c.etcd_status(l, now),
                c.etcd_alarm_list(l, now),
                c.boot_id(l, now),
            );
        }
        out += &format!("{:?}\n", c.k8s_list_nodes(now));
        out
    }

    /// The skipped settles change nothing a client or the model can tell: every scenario,
    /// driven through reboots, a shutdown, power cycles and a reset while every node is read
    /// every 7 ms of model time, answers exactly as a model settled on every access, and the
    /// two models end equal.
    #[test]
    fn a_lazy_settle_answers_exactly_as_an_eager_one() {
        for scenario in Scenario::ALL {
            let mut lazy = scenario.build(Speed::new(60.0).unwrap()).unwrap();
            let mut eager = lazy.clone();
            eager.set_eager_settle(true);
            let labels: Vec<String> = lazy.nodes().iter().map(|n| n.label().to_string()).collect();
            let start = lazy.now();
            for k in 0..1500u64 {
                let now = start + Duration::from_millis(7 * k);
                let target = &labels[(k as usize / 100) % labels.len()];
                for c in [&mut lazy, &mut eager] {
                    match k % 300 {
                        20 => drop(c.reboot(target, RebootMode::Default, now)),
                        90 => drop(c.shutdown(target, now)),
                        150 => drop(c.power_on(target, now)),
                        200 => drop(c.power_off(target, now)),
                        230 => drop(c.power_on(target, now)),
                        260 => drop(c.etcd_leave_cluster(target, now)),
                        _ => {}
                    }
                }
                let (a, b) = (answers(&mut lazy, now), answers(&mut eager, now));
                assert_eq!(a, b, "{scenario:?} at {now}");
            }
            assert_eq!(
                format!("{:?}", lazy.nodes()),
                format!("{:?}", eager.nodes())
            );
            assert_eq!(
                format!("{:?}", lazy.etcd_clusters()),
                format!("{:?}", eager.etcd_clusters())
            );
        }
    }

    #[test]
    fn a_read_at_a_settled_instant_skips_the_settle_and_a_change_does_not() {
        let mut c = Scenario::Healthy.build(Speed::new(60.0).unwrap()).unwrap();
        let now = c.now() + Duration::from_millis(5);
        c.advance_to(now);
        let s = c.settled.unwrap();
        assert_eq!(s.revision, c.revision());
        c.fail_next("ServiceList", None, 1);
        // A direct change moves the revision: the next access settles again.
        assert_ne!(c.revision(), s.revision);
        c.advance_to(now);
        assert_eq!(c.settled.unwrap().revision, c.revision());
    }
}
