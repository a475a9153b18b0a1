//! The command line, as clap types. Nothing here does work; `main.rs` turns these into
//! validated inputs.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// medic plans a fleet remediation as a dependency graph, shows exactly what will happen,
/// then runs it in stages: resumable after any crash, never claiming a success it did not
/// verify.
#[derive(Parser, Debug)]
#[command(
    name = "medic",
    version,
    propagate_version = true,
    max_term_width = 100
)]
pub(crate) struct Cli {
    #[command(subcommand)]
    pub(crate) cmd: Cmd,
    #[command(flatten)]
    pub(crate) log: LogArgs,
}

#[derive(Subcommand, Debug)]
pub(crate) enum Cmd {
    /// Check an inventory and a playbook; report every problem at once (exit 2 if any).
    Validate(InputArgs),
    /// Build the plan and render it: what runs where, in which order and waves, how long,
    /// and which hosts are skipped and why. Touches no host.
    #[command(after_help = PLAN_HELP)]
    Plan(PlanArgs),
    /// Check, read-only and days before the window, that the plan can run: every host of
    /// the plan reachable with a known key, its live build and Relay role as in the
    /// inventory, its packages staged, privilege escalation working; the Manager's API, build
    /// and direct-download setting. Exit 0: the plan can run; 1: findings; 2: bad input.
    #[command(after_help = PREFLIGHT_HELP)]
    Preflight(Box<PreflightArgs>),
    /// Run a plan: stages, waves, budgets and gates, inside the window, journaled so that
    /// `medic resume` can finish it after any crash. With --simulate, a rehearsal on a
    /// simulated fleet built from the inventory (no host is touched).
    Apply(Box<ApplyArgs>),
    /// Finish a run from its journal: succeeded steps never run again, steps left running
    /// are re-probed with their check before anything is decided.
    Resume(ResumeArgs),
    /// Serve the steps of one zone of a run whose journal is in PostgreSQL (`medic apply
    /// --workers`): claim them, run them with the run's drivers, hold a lease. One worker
    /// at a time also coordinates the run (gates, waves, budgets, window); when it dies,
    /// another takes over. Exits when the run has ended.
    #[command(after_help = WORKER_HELP)]
    Worker(WorkerArgs),
    /// Show a run's progress from its journal (works while the run goes on).
    Status(StatusArgs),
    /// Approve a waiting gate of a running (or stopped) run from another shell.
    Approve(ApproveArgs),
    /// Write a run's report from its journal: per host the builds before and after, every
    /// step with its times, attempts, result, output and evidence; phases, waves and gates.
    /// HTML (one file with a timeline, opens from disk), markdown or JSON.
    #[command(after_help = REPORT_HELP)]
    Report(ReportArgs),
    /// The whole Deep Security remediation on a built-in simulated fleet of 60 hosts.
    Demo(DemoArgs),
    /// Work with inventories.
    #[command(subcommand)]
    Inventory(InventoryCmd),
    /// Work with run journals: bring an air-gapped zone's results back (merge).
    #[command(subcommand)]
    Journal(JournalCmd),
    /// Print a completion script for bash, zsh or fish on standard output.
    #[command(after_help = COMPLETIONS_HELP)]
    Completions(CompletionsArgs),
    /// Print medic's manual page (roff, every command and option) on standard output.
    #[command(after_help = MAN_HELP)]
    Man,
}

#[derive(Subcommand, Debug)]
pub(crate) enum InventoryCmd {
    /// Write an inventory v1 file from the Manager's computer list (a few paged searches),
    /// merged with an Ansible inventory's hosts, groups and connection details (--ansible).
    Import(ImportArgs),
}

#[derive(Subcommand, Debug)]
pub(crate) enum JournalCmd {
    /// Merge the journal of an air-gapped zone's slice (run there with `medic apply --plan
    /// ZONE.slice.json`) into the main run's journal; then `medic resume` goes on. Refused,
    /// with nothing written: a slice of another plan, a slice journal that does not fit its
    /// slice, a slice run that has not ended. Merging the same journal again writes nothing.
    Merge(MergeArgs),
}

#[derive(Args, Debug)]
pub(crate) struct MergeArgs {
    /// The slice run's journal, brought back from the site.
    #[arg(value_name = "SLICE-JOURNAL")]
    pub(crate) slice: PathBuf,
    /// The main run's journal.
    #[arg(long, value_name = "FILE")]
    pub(crate) journal: PathBuf,
}

#[derive(Args, Debug)]
pub(crate) struct ImportArgs {
    /// The Manager, e.g. https://dsm01:4119 (`/api` is added when missing).
    #[arg(long, value_name = "URL")]
    pub(crate) dsm: String,
    /// CA bundle (PEM) that signed the Manager's certificate.
    #[arg(long, value_name = "FILE")]
    pub(crate) dsm_ca: Option<PathBuf>,
    /// File holding the API key (default: $MEDIC_DSM_API_KEY).
    #[arg(long, value_name = "FILE")]
    pub(crate) dsm_api_key_file: Option<PathBuf>,
    /// Name and kind of a relay group the API cannot tell:
    /// ID=NAME[,offline][,bundle_source=HOST] (repeatable).
    #[arg(long = "relay-group", value_name = "HINT")]
    pub(crate) relay_groups: Vec<String>,
    /// An Ansible inventory (INI, YAML, a directory of them, or the JSON of
    /// `ansible-inventory --list`): addresses, ports, users and groups come from it,
    /// matched with the Manager's computers by host name or address.
    #[arg(long, value_name = "PATH")]
    pub(crate) ansible: Option<PathBuf>,
    /// The Manager's name in the inventory (default: from the URL).
    #[arg(long, value_name = "NAME")]
    pub(crate) manager_name: Option<String>,
    /// Write to FILE instead of standard output.
    #[arg(long, value_name = "FILE")]
    pub(crate) out: Option<PathBuf>,
    /// Seconds to wait for the Manager to accept the connection, and for each answer.
    #[arg(long, value_name = "SECS", default_value_t = 10.0, value_parser = crate::values::timeout_secs)]
    pub(crate) dsm_timeout: f64,
}

#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum)]
pub(crate) enum WindowPolicyArg {
    /// Do not start a wave whose estimate exceeds the time left; stop, resumable.
    Stop,
    /// Start it anyway (the cutoff still stops new steps).
    Continue,
}

#[derive(Args, Debug)]
pub(crate) struct RunArgs {
    /// Where the run's journal goes (default: .medic/runs/RUN-ID/journal.sqlite).
    #[arg(long, value_name = "FILE")]
    pub(crate) journal: Option<PathBuf>,
    /// Also write every event as a JSON line to FILE (default: beside the journal).
    #[arg(long, value_name = "FILE.jsonl")]
    pub(crate) events: Option<PathBuf>,
    /// The approved change window, RFC 3339 with offsets; no step starts outside it.
    #[arg(long, value_name = "START/END")]
    pub(crate) window: Option<String>,
    /// What to do when a wave's estimate does not fit the time left in the window.
    #[arg(long, value_enum, default_value_t = WindowPolicyArg::Stop)]
    pub(crate) window_policy: WindowPolicyArg,
    /// Approve every gate without asking.
    #[arg(long)]
    pub(crate) yes: bool,
    /// Strict failure budgets in every phase: in-flight steps are capped so a budget can
    /// never be overshot.
    #[arg(long)]
    pub(crate) strict: bool,
    /// At most N steps at once per relay group.
    #[arg(long, value_name = "N", allow_negative_numbers = true,
          value_parser = crate::values::at_least_one)]
    pub(crate) max_per_group: Option<u32>,
    /// Progress bars: auto (on a terminal), always or never.
    #[arg(long, value_enum, default_value_t = Progress::Auto)]
    pub(crate) progress: Progress,
    #[command(flatten)]
    pub(crate) conn: ConnArgs,
}

/// How to reach the hosts and the Manager. Secrets come from the environment or a file,
/// never from the command line.
#[derive(Args, Debug, Clone)]
pub(crate) struct ConnArgs {
    /// Extra known_hosts file (besides ~/.ssh/known_hosts); host keys are checked strictly.
    #[arg(long, value_name = "FILE")]
    pub(crate) known_hosts: Option<PathBuf>,
    /// Trust and record the key of a host seen for the first time (a changed key is
    /// always refused).
    #[arg(long)]
    pub(crate) accept_new_host_keys: bool,
    /// SSH private key file (after ssh-agent); repeatable.
    #[arg(long = "ssh-key", value_name = "FILE")]
    pub(crate) ssh_keys: Vec<PathBuf>,
    /// File holding the SSH key's passphrase (default: $MEDIC_SSH_PASSPHRASE).
    #[arg(long, value_name = "FILE")]
    pub(crate) ssh_passphrase_file: Option<PathBuf>,
    /// The Manager's API base URL (default: https://MANAGER-ADDRESS:4119/api).
    #[arg(long, value_name = "URL")]
    pub(crate) dsm: Option<String>,
    /// CA bundle (PEM) that signed the Manager's certificate.
    #[arg(long, value_name = "FILE")]
    pub(crate) dsm_ca: Option<PathBuf>,
    /// File holding the Manager's API key (default: $MEDIC_DSM_API_KEY).
    #[arg(long, value_name = "FILE")]
    pub(crate) dsm_api_key_file: Option<PathBuf>,
    /// Where dsa_control and dsa_query are on Linux hosts (default: /opt/ds_agent).
    #[arg(long, value_name = "DIR")]
    pub(crate) linux_agent_dir: Option<String>,
    /// Where the agent packages (Agent-Core-*.rpm|.deb) are staged on Linux hosts
    /// (default: /var/tmp/medic/packages).
    #[arg(long, value_name = "DIR")]
    pub(crate) linux_package_dir: Option<String>,
    /// Also run the Deep Security commands whose form is not verified (offline bundle
    /// export and import, relay cache clear): confirm them on one agent first.
    #[arg(long)]
    pub(crate) allow_unverified_commands: bool,
    /// Seconds between two polls of a security update, a rebooting host or the Manager
    /// (default: 10; one Manager search per poll, whatever the number of hosts waiting).
    #[arg(long, value_name = "SECS")]
    pub(crate) poll_interval: Option<f64>,
    /// How privileged commands (rpm, dpkg, dsa_control, dsa_query) gain root on Linux
    /// hosts whose inventory entry has no `become:` (default: none).
    #[arg(long = "become", value_name = "METHOD", value_parser = ["sudo", "none"])]
    pub(crate) become_method: Option<String>,
    /// File holding the sudo password (default: $MEDIC_SUDO_PASSWORD; without either,
    /// sudo must not ask for one).
    #[arg(long, value_name = "FILE")]
    pub(crate) sudo_password_file: Option<PathBuf>,
    /// File holding the agents' self-protection password, for upgrades and reinstalls
    /// (default: $MEDIC_AGENT_PASSWORD).
    #[arg(long, value_name = "FILE")]
    pub(crate) agent_password_file: Option<PathBuf>,
}

#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum)]
pub(crate) enum Progress {
    Auto,
    Always,
    Never,
}

#[derive(Args, Debug)]
pub(crate) struct SimArgs {
    /// Rehearse on a simulated fleet built from the inventory; no host is touched.
    #[arg(long)]
    pub(crate) simulate: bool,
    /// With --simulate: simulated seconds per real second (e.g. 600).
    #[arg(long, value_name = "X", default_value_t = 1.0, requires = "simulate",
          allow_negative_numbers = true, value_parser = crate::values::time_scale)]
    pub(crate) time_scale: f64,
    /// With --simulate: the seed of the simulated fleet's durations and reboots.
    #[arg(long, value_name = "N", default_value_t = 1, requires = "simulate")]
    pub(crate) sim_seed: u64,
    /// With --simulate: inject a fault (repeatable): `unreachable:HOST` (the host never
    /// answers), `hang:HOST:ACTION` (that action never ends) or `fail:HOST:ACTION:TIMES`
    /// (that action fails its first TIMES attempts, then works).
    #[arg(long = "sim-fault", value_name = "SPEC", requires = "simulate")]
    pub(crate) sim_faults: Vec<String>,
}

#[derive(Args, Debug)]
pub(crate) struct ApplyArgs {
    /// A plan written by `medic plan --format json` (applied exactly as reviewed).
    #[arg(long, value_name = "PLAN.json", conflicts_with_all = ["playbook", "sets"])]
    pub(crate) plan: Option<PathBuf>,
    /// The fleet (inventory v1). With --plan it is only needed for --simulate.
    #[arg(long, short = 'i', value_name = "INV")]
    pub(crate) inventory: Option<PathBuf>,
    /// The playbook, when no --plan is given.
    #[arg(long, short = 'p', value_name = "PB")]
    pub(crate) playbook: Option<PathBuf>,
    /// Set a playbook parameter (repeatable).
    #[arg(long = "set", value_name = "K=V")]
    pub(crate) sets: Vec<String>,
    /// With --plan: refuse the plan unless it is signed (`medic plan --sign`) by a key in
    /// FILE: `ssh-ed25519 KEY` lines, e.g. the signer's .pub or an allowed_signers file.
    #[arg(long, value_name = "FILE", requires = "plan")]
    pub(crate) verify_key: Option<PathBuf>,
    /// Run again only the failed steps of --journal (and what depends on them).
    #[arg(long, requires = "journal")]
    pub(crate) retry_failed: bool,
    /// Start the run in its PostgreSQL journal and leave it to `medic worker` processes
    /// (one or more per zone) instead of running it here; prints the command to start them.
    #[arg(long)]
    pub(crate) workers: bool,
    /// Start a real run without the pre-flight checks (`medic preflight`) that otherwise
    /// run first and refuse the run on a finding; the choice is recorded in the journal.
    #[arg(long)]
    pub(crate) skip_preflight: bool,
    #[command(flatten)]
    pub(crate) run: RunArgs,
    #[command(flatten)]
    pub(crate) sim: SimArgs,
}

#[derive(Args, Debug)]
pub(crate) struct ResumeArgs {
    /// The journal of the run to finish: a file, or postgres://USER@HOST/DB?run=RUN-ID
    /// (default: $MEDIC_JOURNAL_URL).
    #[arg(long, value_name = "FILE")]
    pub(crate) journal: Option<PathBuf>,
    /// Also write events to FILE (default: the run's events file).
    #[arg(long, value_name = "FILE.jsonl")]
    pub(crate) events: Option<PathBuf>,
    /// Approve every gate without asking.
    #[arg(long)]
    pub(crate) yes: bool,
    /// Progress bars: auto (on a terminal), always or never.
    #[arg(long, value_enum, default_value_t = Progress::Auto)]
    pub(crate) progress: Progress,
    /// A new approved change window for a run stopped at the end of its window, RFC 3339
    /// with offsets; recorded in the journal (the plan stays the same).
    #[arg(long, value_name = "START/END")]
    pub(crate) window: Option<String>,
}

const WORKER_HELP: &str = "Start workers where they reach their hosts, e.g. two in zone tokyo and one in \
zone osaka: `medic worker --journal postgres://medic@db.example/medic?run=RUN-ID --zone tokyo`. The \
password comes from MEDIC_JOURNAL_URL, PGPASSWORD or ~/.pgpass, never the command line. Exit codes \
are those of the run: 0 finished, 1 failed steps, 3 stopped (resumable).";

#[derive(Args, Debug)]
pub(crate) struct WorkerArgs {
    /// The run's journal, postgres://USER@HOST[:PORT]/DB?run=RUN-ID (default:
    /// $MEDIC_JOURNAL_URL).
    #[arg(long, value_name = "URL")]
    pub(crate) journal: Option<PathBuf>,
    /// A zone whose steps this worker runs (the inventory's `zone` of hosts and relay
    /// groups; repeatable). Hosts without a zone, and the steps with no host (the
    /// Manager's), are in zone `default`.
    #[arg(long, value_name = "ZONE", default_value = "default")]
    pub(crate) zone: Vec<String>,
    /// At most N driver calls at once in this worker.
    #[arg(long, value_name = "N", default_value_t = 32, allow_negative_numbers = true,
          value_parser = crate::values::at_least_one)]
    pub(crate) max_parallel: u32,
    /// Seconds a claimed step stays this worker's without a heartbeat (renewed every
    /// third of it); after that another worker of the zone takes it over.
    #[arg(long, value_name = "SECS", default_value_t = 30.0,
          allow_negative_numbers = true, value_parser = crate::values::lease_secs)]
    pub(crate) lease: f64,
    /// This worker's name in the run (default: HOSTNAME-PID); unique per run.
    #[arg(long, value_name = "NAME")]
    pub(crate) name: Option<String>,
}

#[derive(Args, Debug)]
pub(crate) struct StatusArgs {
    /// The journal of the run (printed when the run starts and in its summary): a file, or
    /// postgres://USER@HOST/DB?run=RUN-ID (default: $MEDIC_JOURNAL_URL).
    #[arg(long, value_name = "FILE")]
    pub(crate) journal: Option<PathBuf>,
    /// Text for people, or JSON for scripts.
    #[arg(long, value_enum, default_value_t = StatusFormat::Text)]
    pub(crate) format: StatusFormat,
}

#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum)]
pub(crate) enum StatusFormat {
    Text,
    Json,
}

const REPORT_HELP: &str = "Every run also writes RUN-ID.report.html beside its journal when it ends \
(the last lines of `medic apply` name it). The report works on a running or stopped run too: \
it shows what the journal holds so far.";

#[derive(Args, Debug)]
pub(crate) struct ReportArgs {
    /// The journal of the run (printed when the run starts and in its summary): a file, or
    /// postgres://USER@HOST/DB?run=RUN-ID (default: $MEDIC_JOURNAL_URL).
    #[arg(long, value_name = "FILE")]
    pub(crate) journal: Option<PathBuf>,
    /// html (one self-contained file), markdown, or json (`medic.report/v1`).
    #[arg(long, value_enum, default_value_t = ReportFormat::Html)]
    pub(crate) format: ReportFormat,
    /// Write to FILE instead of standard output.
    #[arg(long, value_name = "FILE")]
    pub(crate) out: Option<PathBuf>,
}

#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum)]
pub(crate) enum ReportFormat {
    Html,
    Markdown,
    Json,
}

#[derive(Args, Debug)]
pub(crate) struct ApproveArgs {
    /// The journal of the run whose gate to approve: a file, or
    /// postgres://USER@HOST/DB?run=RUN-ID (default: $MEDIC_JOURNAL_URL).
    #[arg(long, value_name = "FILE")]
    pub(crate) journal: Option<PathBuf>,
    /// What to approve: a gate (gate/agent-upgrade/wave-1) or a manual step once its work
    /// is done (manager-upgrade/dsm01); `medic status` lists what the run waits for.
    #[arg(value_name = "GATE_OR_STEP")]
    pub(crate) gate: String,
    /// Who approves (default: $USER).
    #[arg(long, value_name = "NAME")]
    pub(crate) by: Option<String>,
}

#[derive(Args, Debug)]
pub(crate) struct DemoArgs {
    /// Simulated seconds per real second; the default finishes in well under a minute.
    #[arg(long, value_name = "X", default_value_t = 600.0,
          allow_negative_numbers = true, value_parser = crate::values::time_scale)]
    pub(crate) time_scale: f64,
    /// Where the demo's journal and events go (default: .medic/demo-TIMESTAMP).
    #[arg(long, value_name = "DIR")]
    pub(crate) dir: Option<PathBuf>,
    /// Progress bars: auto (on a terminal), always or never.
    #[arg(long, value_enum, default_value_t = Progress::Auto)]
    pub(crate) progress: Progress,
}

#[derive(Args, Debug)]
pub(crate) struct InputArgs {
    /// The fleet: inventory v1 YAML (Manager, relay groups, hosts).
    #[arg(long, short = 'i', value_name = "INV")]
    pub(crate) inventory: PathBuf,
    /// The remediation: playbook YAML (parameters and phases), e.g.
    /// playbooks/ds-activeupdate-cert-2023.yaml.
    #[arg(long, short = 'p', value_name = "PB")]
    pub(crate) playbook: PathBuf,
    /// Set a playbook parameter (repeatable), e.g. --set manager_min_build=20.0.463, or the
    /// fixed builds per version line: --set fixed_build.linux=12.0.0-9999,20.0.0-5137.
    #[arg(long = "set", value_name = "K=V")]
    pub(crate) sets: Vec<String>,
}

/// What `medic plan --help` adds after the options.
const PLAN_HELP: &str = "\
Parameters of the Deep Security playbook (--set NAME.PLATFORM=VALUE, platform linux or windows):
  fixed_build.linux=12.0.0-9999,20.0.0-5137
      the first unaffected build of each version line, at most one per MAJOR.MINOR line,
      all four parts (12.0.0-9999 or 12.0.0.9999). A host is compared with its own line's
      build, or with the highest one when its line has none, and goes to that build.
  target_build.linux=20.0.1-690
      optional, one build: every affected host of the platform goes to it instead.
  manager_min_build=20.0.463, relay_barrier=global|relay-group, bundle_name=...
An offline Relay goes to exactly the final build of its bundle source when both run the same
platform. The shipped fixed builds and manager_min_build are example values: the plan warns
about each one still in effect, and a real `medic apply` refuses to start until each is set.

Manual steps: the Manager upgrade (planned only when its build is below manager_min_build and
some Relay or Agent is upgraded) is done by a person. The run pauses at it; after upgrading the
Manager, approve it with `medic approve --journal JOURNAL manager-upgrade/MANAGER` (--yes never
approves it); medic then reads the Manager's build through its API before going on.";

/// What `medic preflight --help` adds after the options.
const PREFLIGHT_HELP: &str = "\
Checks, one row per check per host (ok, finding, or not checked with the reason):
  reachable        SSH login and a harmless command
  host-key         the host's key is in known_hosts (strict: an unknown key is a finding,
                   never accepted, whatever --accept-new-host-keys says)
  agent-build      the live agent build is the inventory's (drift is a finding)
  relay-role       the live Relay role (port 4122 listening) is the inventory's (Linux)
  packages         Linux: the Agent-Core package the upgrade would choose for the host's
                   distribution; Windows: the MSI, and for windows-prereq the *.cer
                   certificates (and *kb4474419*.msu where SHA-2 support is missing)
  privilege        privileged commands get root (become: sudo with $MEDIC_SUDO_PASSWORD or
                   --sudo-password-file)
  manager-api      the Manager's API answers with the key ($MEDIC_DSM_API_KEY or
                   --dsm-api-key-file)
  manager-build    the Manager's build (X-DSM-Version) is at least manager_min_build, or
                   the plan has the manual Manager upgrade
  direct-download  the Manager's direct-download setting is the inventory's
                   settings.direct_download_when_relays_unavailable
Nothing is changed on any host or on the Manager. Only hosts with at least one step over SSH
are checked.

Exit codes: 0 the plan can run (no finding); 1 at least one finding; 2 bad input (nothing
checked); 4 internal error. A real `medic apply` runs the same checks before it creates its
journal and refuses to start on a finding (exit 2, each finding named); --skip-preflight skips
them and the journal records it.";

#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum)]
pub(crate) enum PreflightFormat {
    /// A table for people.
    Text,
    /// `medic.preflight/v1`: every row, the summary and `can_run`.
    Json,
    /// A Markdown table for the change board.
    Markdown,
}

#[derive(Args, Debug)]
pub(crate) struct PreflightArgs {
    #[command(flatten)]
    pub(crate) input: InputArgs,
    #[arg(long, value_enum, default_value_t = PreflightFormat::Text)]
    pub(crate) format: PreflightFormat,
    /// Write the table to FILE instead of standard output.
    #[arg(long, value_name = "FILE")]
    pub(crate) out: Option<PathBuf>,
    /// Hosts checked at once.
    #[arg(long, value_name = "N", default_value_t = 16)]
    pub(crate) parallel: usize,
    /// Seconds each check may take before it is a finding.
    #[arg(long, value_name = "SECS", default_value_t = 60.0)]
    pub(crate) timeout: f64,
    /// Progress on standard error: auto (on a terminal), always or never.
    #[arg(long, value_enum, default_value_t = Progress::Auto)]
    pub(crate) progress: Progress,
    #[command(flatten)]
    pub(crate) conn: ConnArgs,
}

#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum)]
pub(crate) enum Format {
    /// A summary for people.
    Text,
    /// The plan contract (medic.plan/v1), also accepted by `medic apply --plan`.
    Json,
    /// Graphviz.
    Dot,
    /// Mermaid flowchart.
    Mermaid,
    /// A change-board runbook.
    Markdown,
}

#[derive(Args, Debug)]
pub(crate) struct PlanArgs {
    #[command(flatten)]
    pub(crate) input: InputArgs,
    /// How to render the plan.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub(crate) format: Format,
    /// Write to FILE instead of standard output.
    #[arg(long, value_name = "FILE")]
    pub(crate) out: Option<PathBuf>,
    /// The approved change window, RFC 3339 with offsets:
    /// 2026-12-01T22:00+09:00/2026-12-02T04:00+09:00. The plan says whether it fits.
    #[arg(long, value_name = "START/END")]
    pub(crate) window: Option<String>,
    /// With --format json: sign the plan with the OpenSSH Ed25519 secret key in FILE
    /// (`ssh-keygen -t ed25519 -f FILE`; an encrypted key's passphrase comes from
    /// $MEDIC_SIGN_PASSPHRASE). `medic apply --plan P --verify-key FILE.pub` checks it.
    #[arg(long, value_name = "FILE")]
    pub(crate) sign: Option<PathBuf>,
    /// Write the slice of the air-gapped zone ZONE instead (plan JSON, with --journal): its
    /// steps and the evidence of what the main run did before them, to run at the site
    /// with `medic apply --plan`.
    #[arg(long, value_name = "ZONE", requires = "journal")]
    pub(crate) slice: Option<String>,
    /// With --slice: the main run's journal, whose plan and results the slice is cut from.
    #[arg(long, value_name = "FILE", requires = "slice")]
    pub(crate) journal: Option<PathBuf>,
}

#[derive(Args, Debug)]
pub(crate) struct CompletionsArgs {
    /// The shell the script is for.
    #[arg(value_enum, value_name = "SHELL")]
    pub(crate) shell: CompletionShell,
}

#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum)]
pub(crate) enum CompletionShell {
    /// Bash (with the bash-completion package).
    Bash,
    /// Zsh (a `_medic` file on $fpath).
    Zsh,
    /// Fish (a `medic.fish` file in ~/.config/fish/completions).
    Fish,
}

/// What `medic completions --help` adds after the options.
const COMPLETIONS_HELP: &str = "\
Install:
  bash  medic completions bash > ~/.local/share/bash-completion/completions/medic
  zsh   medic completions zsh > ~/.zfunc/_medic   (with fpath+=~/.zfunc before compinit)
  fish  medic completions fish > ~/.config/fish/completions/medic.fish
A new shell then completes commands, options and their fixed values.";

/// What `medic man --help` adds after the options.
const MAN_HELP: &str = "\
Read it with `medic man | man -l -`, or install it:
  medic man > ~/.local/share/man/man1/medic.1   (then `man medic`)";

/// Diagnostic logs (`logs.rs`), for every command.
#[derive(Args, Debug)]
pub(crate) struct LogArgs {
    /// The least severe log lines written: error, warn, info (default), debug or trace; the
    /// default can also come from $MEDIC_LOG or $RUST_LOG (tracing directives, e.g.
    /// `medic_drivers=debug`).
    #[arg(long, global = true, value_enum, value_name = "LEVEL")]
    pub(crate) log_level: Option<LogLevel>,
    /// How log lines are written: text for people or json (one object per line).
    #[arg(long, global = true, value_enum, value_name = "FORMAT", default_value_t = LogFormat::Text)]
    pub(crate) log_format: LogFormat,
    /// Append log lines to FILE instead of standard error.
    #[arg(long, global = true, value_name = "FILE")]
    pub(crate) log_file: Option<PathBuf>,
}

#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum)]
pub(crate) enum LogLevel {
    /// Only errors.
    Error,
    /// Errors and warnings (e.g. a new host key accepted).
    Warn,
    /// Also what the drivers did that an operator should see.
    Info,
    /// Also each step attempt's start and end, and each remote command's name.
    Debug,
    /// Everything medic logs.
    Trace,
}

#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum)]
pub(crate) enum LogFormat {
    /// `LEVEL step{run=.. step=.. host=.. action=.. attempt=..}: message fields`.
    Text,
    /// One JSON object per line, with the step's span and its fields.
    Json,
}
