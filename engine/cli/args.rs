//! The command line, as clap derive types; the doc comments are the `--help` text.

use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};

/// Executable, resumable disaster-recovery runbooks for Talos Linux clusters.
///
/// Runbooks are YAML or rhai files compiled into a DAG of steps with guards that refuse to
/// break etcd quorum, waits on the real conditions (Talos `running`, not just kubectl
/// `Ready`), retries, timeouts and rollbacks.
#[derive(Debug, Parser)]
#[command(name = "runbook", version, propagate_version = true)]
pub struct Args {
    /// More log output on stderr (-v: debug, -vv: trace); RUST_LOG overrides.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,

    /// Where runs live (default: $XDG_STATE_HOME/runbook, else ~/.local/state/runbook).
    #[arg(long, value_name = "DIR", global = true)]
    pub state_dir: Option<PathBuf>,

    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// List the runbooks that can be named: built-ins, ./runbooks/ and
    /// $XDG_CONFIG_HOME/runbook/runbooks/.
    List {
        /// `text` (for people) or `json` (for scripts; the shapes are in docs/cli.md).
        #[arg(long, value_enum, default_value_t = DataFormat::Text)]
        output: DataFormat,
    },

    /// Compile runbook files (or every runbook in the given directories) and report every
    /// problem with file:line:column. Exits 0 when all compile.
    Check {
        /// Runbook files (.yaml, .yml, .rhai) or directories holding them.
        #[arg(required = true, value_name = "PATH")]
        paths: Vec<PathBuf>,
    },

    /// Show the plan a runbook compiles to: the steps in execution order with their guards,
    /// waits, retries, timeouts and rollbacks. Changes nothing.
    Plan {
        /// A runbook name (see `runbook list`) or a path to a runbook file.
        #[arg(value_name = "NAME|PATH")]
        runbook: String,

        /// A parameter value, e.g. `--param nodes=192.168.2.20,192.168.2.223`. Repeatable.
        #[arg(short, long = "param", value_name = "KEY=VALUE|KEY=@FILE|KEY=env:VAR", value_parser = super::param_value::ParamParser)]
        params: Vec<(String, String)>,

        /// Output format: text for people, dot or mermaid for a picture, json for tools.
        #[arg(long, value_enum, default_value_t = PlanFormat::Text)]
        format: PlanFormat,

        /// Where the cluster is, to read the params that default from it (`default_from:`);
        /// without a cluster they must be given with `--param`.
        #[command(flatten)]
        cluster: ClusterArgs,
    },

    /// List the catalog: actions, guards and wait conditions with their arguments.
    Actions {
        /// `text` (for people) or `json` (for scripts; the shapes are in docs/cli.md).
        #[arg(long, value_enum, default_value_t = DataFormat::Text)]
        output: DataFormat,
    },

    /// Execute a runbook durably: every step is journaled in a new run directory, so the run
    /// can be killed at any instant and continued with `runbook resume`.
    ///
    /// Exit codes: 0 success, 1 a step failed (rollbacks ran), 4 a guard refused (paused),
    /// 5 waiting for approval (paused), 6 journal failure, 7 locked: the run lock or the
    /// cluster lock, 12 the cluster does not answer (no run directory was created; see
    /// docs/cli.md).
    Run {
        /// A runbook name (see `runbook list`) or a path to a runbook file.
        #[arg(value_name = "NAME|PATH")]
        runbook: String,

        /// A parameter value, e.g. `--param nodes=192.168.2.20,192.168.2.223`. Repeatable.
        #[arg(short, long = "param", value_name = "KEY=VALUE|KEY=@FILE|KEY=env:VAR", value_parser = super::param_value::ParamParser)]
        params: Vec<(String, String)>,

        /// Walk the plan and print what would happen: evaluate expression guards, perform no
        /// side effect, write no journal.
        #[arg(long)]
        dry_run: bool,

        /// Pre-approve approval gates that declare `allow_yes: true` (never the others).
        #[arg(long)]
        yes: bool,

        /// How to show progress: auto (bars on a terminal, else plain), plain, or json (one
        /// event per line on stdout).
        #[arg(long, value_enum, default_value_t = OutputArg::Auto)]
        output: OutputArg,

        /// Where the cluster is.
        #[command(flatten)]
        cluster: ClusterArgs,

        /// Start even though a `preflight` step finds a critical problem; the reason, you, this
        /// host and the findings overridden are journaled and shown by `status`. Only the
        /// preflight's refusal is lifted: every safety guard still refuses. `resume` keeps it.
        #[arg(long, value_name = "REASON", value_parser = parse_reason)]
        override_preflight: Option<String>,
    },

    /// Continue an interrupted or paused run where it stopped: replay the journal, recompile the
    /// stored runbook copy with the stored params, check the plan hash, settle interrupted
    /// steps, continue.
    Resume {
        /// The run id (default: the latest unfinished run).
        #[arg(value_name = "RUN_ID")]
        run: Option<String>,

        /// Secret parameters must be given again (they are never stored): `--param key=@FILE`,
        /// `key=env:VAR` or `key=value`.
        #[arg(short, long = "param", value_name = "KEY=VALUE|KEY=@FILE|KEY=env:VAR", value_parser = super::param_value::ParamParser)]
        params: Vec<(String, String)>,

        /// Pre-approve approval gates that declare `allow_yes: true`.
        #[arg(long)]
        yes: bool,

        /// How to show progress: auto, plain or json.
        #[arg(long, value_enum, default_value_t = OutputArg::Auto)]
        output: OutputArg,
        /// Where the cluster is.
        #[command(flatten)]
        cluster: ClusterArgs,
    },

    /// Approve a step that waits for approval (durably, in the journal); then `runbook resume`.
    Approve {
        /// The run id.
        #[arg(value_name = "RUN_ID")]
        run: String,

        /// The step id, as `runbook status` shows it.
        #[arg(value_name = "STEP")]
        step: String,
    },

    /// Release the cluster-wide disruption lock (Kubernetes Lease
    /// `kube-system/runbook-disruption`) that run RUN_ID holds, e.g. after its process was
    /// killed; journaled in RUN_ID's journal with the reason. Reaches the cluster RUN_ID
    /// recorded. Refuses a lock held by another run unless `--holder` names that run.
    Unlock {
        /// The run whose lock to release (and whose journal records it).
        #[arg(value_name = "RUN_ID")]
        run: String,

        /// Why (journaled).
        #[arg(long, value_name = "TEXT", value_parser = parse_reason)]
        reason: String,

        /// Release the lock although another run holds it: that run's id, exactly.
        #[arg(long, value_name = "RUN_ID")]
        holder: Option<String>,
    },

    /// List runs with their status, age and current step.
    Runs {
        /// `text` (for people) or `json` (for scripts; the shapes are in docs/cli.md).
        #[arg(long, value_enum, default_value_t = DataFormat::Text)]
        output: DataFormat,
    },

    /// Show one run: each step's state, attempts, timing, outcome, and the guard and wait
    /// figures it saw.
    Status {
        /// The run id.
        #[arg(value_name = "RUN_ID")]
        run: String,

        /// `text` (for people) or `json` (for scripts; the shapes are in docs/cli.md).
        #[arg(long, value_enum, default_value_t = DataFormat::Text)]
        output: DataFormat,
    },

    /// Abort a run that is not being driven: run the rollbacks of its completed steps, newest
    /// first, and finish it as aborted (exit 8).
    Abort {
        /// The run id.
        #[arg(value_name = "RUN_ID")]
        run: String,

        /// Secret parameters, given again.
        #[arg(short, long = "param", value_name = "KEY=VALUE|KEY=@FILE|KEY=env:VAR", value_parser = super::param_value::ParamParser)]
        params: Vec<(String, String)>,

        /// How to show progress: auto, plain or json.
        #[arg(long, value_enum, default_value_t = OutputArg::Auto)]
        output: OutputArg,
        /// Where the cluster is.
        #[command(flatten)]
        cluster: ClusterArgs,
    },

    /// Print a shell completion script: `runbook completions bash > ~/.local/share/bash-completion/completions/runbook`.
    Completions {
        /// The shell.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },

    /// Lint Talos machine configs (SOPS-encrypted ones are decrypted in memory with `sops`):
    /// L1 image vs GPU, L2 nvidia modules, L3 driver versions, L4 install disk vs removable
    /// media, L5 wipe, L13 shared secrets, L14 endpoint, L15 init, L16 scheduling. Exit 9 when
    /// any finding is an error.
    Lint {
        /// The inventory (cluster.yaml): which config is which node's, its GPU and removable
        /// media. Without CONFIG arguments, every node's config is linted.
        #[arg(long, value_name = "FILE")]
        inventory: Option<PathBuf>,

        /// Machine config files (default: those of the inventory).
        #[arg(value_name = "CONFIG")]
        configs: Vec<PathBuf>,

        /// `text` (file:line:column lines) or `json` (`{"findings": [...]}`).
        #[arg(long, value_enum, default_value_t = DataFormat::Text)]
        output: DataFormat,

        /// Also run the live lints against the cluster (connection flags as for `doctor`):
        /// the running image and extensions against the config, modules configured vs loaded,
        /// the install disk with removable media attached, Talos version skew, time, alarms.
        #[arg(long)]
        live: bool,

        /// Where the cluster is (with `--live`).
        #[command(flatten)]
        cluster: ClusterArgs,
    },

    /// Diagnose the cluster, read-only: per node Talos stage, services, Kubernetes Ready (and
    /// where they disagree), image and extensions against the hardware, modules, disks, time;
    /// etcd voters, quorum margin, leader, alarms; version skew; the newest verified backup.
    /// Exit 0 healthy, 10 warnings, 11 critical.
    Doctor {
        /// Where the cluster is.
        #[command(flatten)]
        cluster: ClusterArgs,

        /// A directory of etcd snapshots (with sidecars) to report the newest verified one.
        #[arg(long, value_name = "DIR")]
        backup_dir: Option<std::path::PathBuf>,

        /// `text` (a table, findings, a verdict) or `json` (the same report as data).
        #[arg(long, value_enum, default_value_t = DataFormat::Text)]
        output: DataFormat,
    },

    /// Print the man page (roff), generated from these definitions: `runbook man | man -l -`.
    Man,

    /// The simulated Talos cluster to rehearse runbooks against (see docs/simulator.md).
    Sim {
        /// What to do with the simulator.
        #[command(subcommand)]
        command: SimCommand,
    },
}

/// `runbook sim` subcommands.
#[derive(Debug, Subcommand)]
pub enum SimCommand {
    /// Run a simulated cluster in the foreground until Ctrl-C. Writes talosconfig (and
    /// talosconfig-operator, talosconfig-reader) into DIR and prints how to point runbook,
    /// talosctl and kubectl at it.
    Up {
        /// The cluster topology; `seed` is the three-node homelab (.20 NUC with GPU, .223 and
        /// .49 Mac Minis); `fleet` is its three control planes plus `--workers` workers.
        #[arg(long, default_value = "seed")]
        preset: String,

        /// Workers of `--preset fleet` (1 to 254; default 47, a 50-node cluster).
        #[arg(long, value_name = "N")]
        workers: Option<u32>,

        /// The starting state (see `runbook sim scenarios`).
        #[arg(long, default_value = "healthy")]
        scenario: String,

        /// Time acceleration: 60 makes a one-minute reboot take one second.
        #[arg(long, default_value_t = 1.0)]
        speed: f64,

        /// Run directory for talosconfig, kubeconfig and calls.jsonl (created if missing).
        #[arg(long, default_value = ".runbook-sim")]
        dir: PathBuf,
    },

    /// List the scenarios, one line each.
    Scenarios,
}

/// Where the cluster is, for commands that drive a run. Without any of these, only local
/// actions and expression guards can run.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct ClusterArgs {
    /// Rehearse on a simulated cluster started inside this process (see `runbook sim
    /// scenarios`); it ends with the process, so interrupted rehearsals are resumed against
    /// `runbook sim up` instead.
    #[arg(long, conflicts_with = "talosconfig")]
    pub sim: bool,

    /// The simulator's starting state, with `--sim`.
    #[arg(long, default_value = "healthy", requires = "sim")]
    pub scenario: String,

    /// The simulator's time acceleration, with `--sim` (60: a one-minute reboot takes a second).
    #[arg(long, default_value_t = 60.0, requires = "sim")]
    pub speed: f64,

    /// The simulator's topology, with `--sim`: `seed` (three control planes) or `fleet` (plus
    /// `--workers` workers).
    #[arg(long, default_value = "seed", requires = "sim")]
    pub preset: String,

    /// Workers of `--preset fleet`, with `--sim` (1 to 254; default 47).
    #[arg(long, value_name = "N", requires = "sim")]
    pub workers: Option<u32>,

    /// The talosconfig to reach the cluster with, as talosctl looks it up: this flag, then
    /// `$TALOSCONFIG`, then `~/.talos/config` (for `run` of a runbook that needs a cluster,
    /// and `doctor`). `--sim` ignores `$TALOSCONFIG`.
    #[arg(long, value_name = "PATH")]
    pub talosconfig: Option<PathBuf>,

    /// The talosconfig context (default: its current context).
    #[arg(long, value_name = "NAME")]
    pub context: Option<String>,

    /// The Talos API endpoints to connect through, as talosctl's `-e`: comma-separated or
    /// repeated; they replace the context's endpoints (the first that answers is used).
    #[arg(
        short = 'e',
        long = "endpoints",
        value_name = "ENDPOINT",
        value_delimiter = ',',
        conflicts_with = "sim"
    )]
    pub endpoints: Vec<String>,

    /// The nodes to observe and act on, as talosctl's `-n`: comma-separated or repeated; they
    /// replace the context's nodes (and are what params defaulted from the cluster choose
    /// among).
    #[arg(
        short = 'n',
        long = "nodes",
        value_name = "NODE",
        value_delimiter = ',',
        conflicts_with = "sim"
    )]
    pub nodes: Vec<String>,

    /// A kubeconfig for the Kubernetes actions and checks, as kubectl looks it up: this flag,
    /// then `$KUBECONFIG` (its first file), then `~/.kube/config` (for `run` and `doctor`, and
    /// only when the talosconfig is not named by `--talosconfig` either; `resume` keeps the one
    /// the run recorded). `--sim` ignores `$KUBECONFIG`. When none is found, one is fetched
    /// with the Talos `Kubeconfig` call and kept in memory only (never written anywhere).
    #[arg(long, value_name = "PATH")]
    pub kubeconfig: Option<PathBuf>,

    /// The kubeconfig context (default: its current context).
    #[arg(long, value_name = "NAME", conflicts_with = "sim")]
    pub kube_context: Option<String>,

    /// A JSON map of node label → direct endpoint (the simulator writes `endpoints.json`);
    /// needed to reach nodes in maintenance mode when labels are not addresses.
    #[arg(long, value_name = "FILE")]
    pub node_endpoints: Option<PathBuf>,

    /// Go on without the cluster-wide disruption lock when it cannot be taken because the
    /// Kubernetes API does not answer (recovery runbooks run exactly then). REASON is
    /// journaled. A live lock held by another run still refuses (see `runbook unlock`).
    #[arg(long, value_name = "REASON", value_parser = parse_reason)]
    pub no_cluster_lock: Option<String>,

    /// The TTL of the cluster lock this run holds (Lease `leaseDurationSeconds`): a holder
    /// that dies without releasing it may be taken over this long after its last renewal.
    #[arg(
        long,
        value_name = "SECONDS",
        env = "RUNBOOK_CLUSTER_LOCK_TTL",
        default_value_t = crate::cluster::lease::DEFAULT_TTL_SECONDS,
        value_parser = crate::cluster::lease::parse_ttl
    )]
    pub cluster_lock_ttl: u32,
}

/// `--output` of the commands that print data (`list`, `actions`, `runs`, `status`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum DataFormat {
    /// Aligned text for people.
    Text,
    /// One JSON document on stdout.
    Json,
}

/// `--output` of the commands that drive a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OutputArg {
    /// Progress bars on a terminal, plain lines otherwise.
    Auto,
    /// Plain lines on stderr.
    Plain,
    /// One JSON event per line on stdout (docs/cli.md).
    Json,
}

/// Renderings of `runbook plan`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum PlanFormat {
    /// Steps in execution order, for operators.
    Text,
    /// Graphviz DOT.
    Dot,
    /// A Mermaid flowchart.
    Mermaid,
    /// JSON (format documented in docs/cli.md).
    Json,
}

fn parse_reason(s: &str) -> Result<String, String> {
    if s.trim().is_empty() {
        return Err("a reason is required (it is journaled)".into());
    }
    Ok(s.trim().to_string())
}
