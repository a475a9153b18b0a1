//! The CLI's reporters: progress bars (one per active phase, log lines above them, hidden
//! when stderr is not a terminal, where plain log lines are printed instead), the JSON
//! lines event file, and the final summary text. They consume `RunEvent`s only and write
//! nothing: the operator's answers at the terminal go to the run as input events
//! ([`Control::approve`]), and the run records them in its journal.

use std::collections::{HashMap, HashSet};
use std::fmt::Write as _;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use medic_exec::{Control, Outcome, Reporter, RunEvent, StopReason, Summary};

/// Who answers the questions of a run (gate approvals, manual steps).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Operator {
    /// A person at this terminal: asked at a prompt (or from another shell).
    Terminal,
    /// No terminal: the exact `medic approve` command is printed.
    Elsewhere,
    /// `medic demo`: manual steps are approved automatically, and it says so.
    Demo,
}

pub(crate) struct Progress {
    multi: Option<MultiProgress>,
    bars: HashMap<String, ProgressBar>,
    /// The run's journal, named in the commands shown.
    journal: PathBuf,
    operator: Operator,
    /// Where the operator's answers go: into the run, which records them.
    control: Control,
    /// Gates and manual steps approved (the run said so): not asked, or no longer.
    answered: Arc<Mutex<HashSet<String>>>,
    /// A rehearsal on the simulated fleet: after an approval, the fleet plays the operator.
    rehearsal: bool,
    /// Gate approvals asked at the prompt (`--yes` approves gates, so only without it).
    ask_gates: bool,
    prompt: Option<std::sync::mpsc::Sender<(String, String)>>,
    asked: std::collections::HashSet<String>,
    /// The plan's size, as `medic plan` counts it.
    size: medic_plan::PlanSize,
}

impl Progress {
    pub(crate) fn new(
        bars: bool,
        journal: PathBuf,
        operator: Operator,
        control: Control,
        rehearsal: bool,
        ask_gates: bool,
        size: medic_plan::PlanSize,
    ) -> Self {
        let multi = bars.then(|| MultiProgress::with_draw_target(ProgressDrawTarget::stderr()));
        if let Some(m) = &multi {
            crate::logs::attach_bars(m);
        }
        Progress {
            multi,
            bars: HashMap::new(),
            journal,
            operator,
            control,
            answered: Arc::default(),
            rehearsal,
            ask_gates,
            prompt: None,
            asked: Default::default(),
            size,
        }
    }

    fn line(&self, s: &str) {
        match &self.multi {
            Some(m) => {
                let _ = m.println(s);
            }
            None => eprintln!("{s}"),
        }
    }

    fn approve_command(&self, id: &str) -> String {
        format!(
            "medic approve --journal {} {}",
            crate::text::shell_word(&self.journal.display().to_string()),
            crate::text::shell_word(id)
        )
    }

    /// Where the run is recorded, and how to follow and steer it from another shell: said
    /// when the run starts, not only at its end.
    fn journal_lines(&self) -> String {
        let j = crate::text::shell_word(&self.journal.display().to_string()).into_owned();
        format!(
            "journal: {j}\n  progress from another shell: medic status --journal {j}\n  approve a gate or a manual step: medic approve --journal {j} ID"
        )
    }

    /// Puts `question` about `id` to the terminal. One thread reads the answers, one
    /// question at a time, so a `y` always answers the question printed last.
    fn ask(&mut self, id: &str, question: String) {
        if !self.asked.insert(id.to_owned()) {
            return;
        }
        let tx = self.prompt.get_or_insert_with(|| {
            let (tx, rx) = std::sync::mpsc::channel::<(String, String)>();
            let control = self.control.clone();
            let answered = Arc::clone(&self.answered);
            let multi = self.multi.clone();
            std::thread::spawn(move || prompt_loop(&control, &answered, multi.as_ref(), &rx));
            tx
        });
        let _ = tx.send((id.to_owned(), question));
    }

    /// `id` no longer waits for an answer at the prompt.
    fn answer(&self, id: &str) {
        self.answered
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(id.to_owned());
    }

    /// A manual step waits: what to do, then how to approve it.
    fn manual_waiting(&mut self, step: &str, instruction: &str, question: &str) {
        self.line(&format!(
            "manual step {step}: waiting for the operator: {instruction} (the steps that need it wait; the others go on)"
        ));
        match self.operator {
            Operator::Terminal => {
                let q = format!(
                    "{question} type y and Enter when it is done (or run `{}` from another shell)",
                    self.approve_command(step)
                );
                self.ask(step, q);
            }
            Operator::Elsewhere => self.line(&format!(
                "manual step {step}: when it is done, approve it: {}",
                self.approve_command(step)
            )),
            Operator::Demo => {
                self.line(&format!(
                    "demo: approving manual step {step} automatically, as the operator would once it is done (a real run waits for `{}` or y at the prompt; --yes never approves it)",
                    self.approve_command(step)
                ));
                self.control.approve(step, "medic demo");
            }
        }
    }
}

/// Asks each question in turn and gives a `y` to the run as an approval; a question whose
/// step was approved meanwhile (from another shell: the run said so) is not asked. Ends at
/// the end of the input.
fn prompt_loop(
    control: &Control,
    answered: &Mutex<HashSet<String>>,
    multi: Option<&MultiProgress>,
    rx: &std::sync::mpsc::Receiver<(String, String)>,
) {
    let say = |s: &str| match multi {
        Some(m) => {
            let _ = m.println(s);
        }
        None => eprintln!("{s}"),
    };
    let approved = |id: &str| {
        answered
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .contains(id)
    };
    while let Ok((id, question)) = rx.recv() {
        loop {
            if approved(&id) {
                break;
            }
            say(&question);
            let mut answer = String::new();
            match std::io::stdin().read_line(&mut answer) {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
            if answer.trim().eq_ignore_ascii_case("y") {
                let by = std::env::var("USER").unwrap_or_else(|_| "terminal".to_owned());
                control.approve(&id, by);
                break;
            }
            say(&format!("{id} is not approved: it still waits"));
        }
    }
}

impl Reporter for Progress {
    fn event(&mut self, ev: &RunEvent) {
        match ev {
            RunEvent::RunStarted {
                run_id,
                playbook,
                done_before,
                resumed,
                ..
            } => {
                let size = self.size;
                let what = if *resumed {
                    format!("resuming run {run_id} ({size}): {done_before} already done")
                } else {
                    format!("run {run_id}: {size}")
                };
                self.line(&format!("{playbook}: {what}"));
                self.line(&self.journal_lines());
            }
            RunEvent::PhaseStarted { phase, steps } => match &self.multi {
                Some(m) => {
                    let bar = m.add(ProgressBar::new(u64::from(*steps)));
                    bar.set_style(
                        ProgressStyle::with_template("{prefix:>24} [{bar:30}] {pos}/{len} {msg}")
                            .unwrap_or_else(|_| ProgressStyle::default_bar())
                            .progress_chars("=> "),
                    );
                    bar.set_prefix(phase.clone());
                    self.bars.insert(phase.clone(), bar);
                }
                None => self.line(&format!("phase {phase}: started ({steps} steps)")),
            },
            RunEvent::WaveStarted { phase, wave, hosts } => {
                if let Some(b) = self.bars.get(phase) {
                    b.set_message(format!("wave {wave} ({hosts} hosts)"));
                } else {
                    self.line(&format!(
                        "phase {phase}: wave {wave} started ({hosts} hosts)"
                    ));
                }
            }
            RunEvent::StepFinished {
                step,
                outcome,
                detail,
                phase,
                ..
            } => {
                if let Some(b) = self.bars.get(phase) {
                    b.inc(1);
                }
                if *outcome == Outcome::Failed || *outcome == Outcome::Unknown {
                    self.line(&format!(
                        "{} {step}: {}",
                        outcome.as_str(),
                        detail.as_deref().unwrap_or("")
                    ));
                }
            }
            RunEvent::StepNoted { step, note, .. } => {
                self.line(&format!("note {step}: {note}"));
            }
            RunEvent::HostKeyAccepted { .. } | RunEvent::HostKeyRefused { .. } => {
                if let Some(l) = ev.host_key_line() {
                    self.line(&l);
                }
            }
            RunEvent::StepRetrying {
                step,
                attempt,
                wait_ms,
                error,
            } => {
                self.line(&format!(
                    "retry {step} (attempt {attempt} failed: {error}); next in {:.1}s",
                    *wait_ms as f64 / 1000.0
                ));
            }
            RunEvent::PhaseFinished {
                phase,
                succeeded,
                failed,
                skipped,
            } => {
                let text = format!(
                    "phase {phase}: done, {succeeded} succeeded, {failed} failed, {skipped} skipped by guard"
                );
                match self.bars.remove(phase) {
                    Some(b) => {
                        b.finish_and_clear();
                        self.line(&text);
                    }
                    None => self.line(&text),
                }
            }
            RunEvent::GateWaiting {
                gate, waiting_for, ..
            } => {
                self.line(&format!("gate {gate}: waiting for {waiting_for}"));
                if waiting_for == "approval" {
                    if self.operator == Operator::Terminal && self.ask_gates {
                        let q = format!(
                            "approve {gate}? type y and Enter (or run `{}` from another shell)",
                            self.approve_command(gate)
                        );
                        self.ask(gate, q);
                    } else {
                        self.line(&format!(
                            "gate {gate}: approve it with: {}",
                            self.approve_command(gate)
                        ));
                    }
                }
            }
            RunEvent::GateOpened {
                gate, approved_by, ..
            } => {
                self.answer(gate);
                match approved_by {
                    Some(by) => self.line(&format!("gate {gate}: open (approved by {by})")),
                    None => self.line(&format!("gate {gate}: open")),
                }
            }
            RunEvent::ManualStepWaiting {
                step,
                instruction,
                question,
                ..
            } => self.manual_waiting(step, instruction, question),
            RunEvent::ManualStepApproved {
                step,
                approved_by,
                host,
                action,
                ..
            } => {
                self.answer(step);
                self.line(&format!(
                    "manual step {step}: approved by {approved_by}; checking that it is done"
                ));
                if self.rehearsal {
                    let on = host
                        .as_deref()
                        .map(|h| format!(" on {h}"))
                        .unwrap_or_default();
                    self.line(&format!(
                        "rehearsal: medic plays the operator: the simulated fleet performs {action}{on} now, as a person does in a real run"
                    ));
                }
            }
            RunEvent::BudgetExceeded {
                phase,
                wave,
                failures,
                tolerated,
                in_flight,
            } => {
                let w = wave.map(|w| format!(" wave {w}")).unwrap_or_default();
                self.line(&format!("budget exceeded in {phase}{w}: {failures} failed, {tolerated} tolerated; no new step starts, {in_flight} in flight drain"));
            }
            RunEvent::WindowWaiting { until_ms } => self.line(&format!(
                "waiting for the change window to open ({})",
                fmt_ms(*until_ms)
            )),
            RunEvent::WindowClosed => self.line("the change window closed: no new step starts"),
            RunEvent::CancelRequested { hard } => {
                if *hard {
                    self.line("second interrupt: stopping in-flight steps (recorded as unknown)");
                } else {
                    self.line("interrupt: no new step starts; waiting for in-flight steps (interrupt again to stop them)");
                }
            }
            RunEvent::RunFinished { .. } => {
                for (_, b) in self.bars.drain() {
                    b.finish_and_clear();
                }
            }
            RunEvent::StepStarted { .. }
            | RunEvent::StepReprobed { .. }
            | RunEvent::WaveFinished { .. } => {}
        }
    }
}

fn fmt_ms(ms: i64) -> String {
    jiff::Timestamp::from_millisecond(ms)
        .map(|t| t.to_string())
        .unwrap_or_else(|_| ms.to_string())
}

/// Every event as one JSON line, with the wall-clock time it was reported.
pub(crate) struct JsonLines {
    out: std::io::BufWriter<std::fs::File>,
    failed: bool,
    /// Put on every line: a file given with `--events` may hold several runs.
    run_id: String,
}

impl JsonLines {
    pub(crate) fn create(path: &Path, run_id: &str) -> std::io::Result<Self> {
        use std::os::unix::fs::OpenOptionsExt as _;
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)?;
        }
        let f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .open(path)?;
        Ok(JsonLines {
            out: std::io::BufWriter::new(f),
            failed: false,
            run_id: run_id.to_owned(),
        })
    }
}

impl Reporter for JsonLines {
    fn event(&mut self, ev: &RunEvent) {
        if self.failed {
            return;
        }
        let ts = jiff::Timestamp::now().as_millisecond();
        let line = match serde_json::to_value(ev) {
            Ok(serde_json::Value::Object(mut m)) => {
                m.insert("ts_ms".to_owned(), ts.into());
                m.insert("run_id".to_owned(), self.run_id.clone().into());
                serde_json::Value::Object(m).to_string()
            }
            _ => return,
        };
        let ok = writeln!(self.out, "{line}").is_ok();
        let ok = ok
            && (!matches!(
                ev,
                RunEvent::RunFinished { .. }
                    | RunEvent::GateWaiting { .. }
                    | RunEvent::ManualStepWaiting { .. }
            ) || self.out.flush().is_ok());
        if !ok {
            self.failed = true;
            eprintln!(
                "warning: the events file cannot be written; the journal still records the run"
            );
        }
    }
}

/// The final summary, by verified state.
pub(crate) fn summary_text(
    s: &Summary,
    stop: Option<&StopReason>,
    skipped: &[medic_plan::Skipped],
) -> String {
    let mut o = String::new();
    let _ = writeln!(o, "\nsummary");
    let _ = writeln!(
        o,
        "  hosts: {} verified, {} failed, {} incomplete, {} without steps",
        s.hosts_verified, s.hosts_failed, s.hosts_incomplete, s.hosts_without_steps
    );
    let _ = writeln!(
        o,
        "  {:<16} {:>6} {:>13} {:>14} {:>7}",
        "action", "acted", "already done", "guard skipped", "failed"
    );
    for (a, c) in &s.actions {
        let _ = writeln!(
            o,
            "  {a:<16} {:>6} {:>13} {:>14} {:>7}",
            c.acted, c.already_done, c.guard_skipped, c.failed
        );
    }
    let states: Vec<String> = s.steps.iter().map(|(k, v)| format!("{v} {k}")).collect();
    let _ = writeln!(o, "  steps and gates: {}", states.join(", "));
    if !s.failures.is_empty() {
        let _ = writeln!(o, "  failed steps: {}", s.failures.join(", "));
    }
    if !s.host_keys.is_empty() {
        let _ = writeln!(o, "  host keys:");
        for k in &s.host_keys {
            let _ = writeln!(o, "    {k}");
        }
    }
    if !s.notes.is_empty() {
        let _ = writeln!(o, "  notes (succeeded, not failures):");
        for n in &s.notes {
            let _ = writeln!(o, "    {n}");
        }
    }
    if !skipped.is_empty() {
        let mut by: std::collections::BTreeMap<(&str, &str), u32> =
            std::collections::BTreeMap::new();
        for k in skipped {
            *by.entry((k.phase.as_str(), k.reason.as_str())).or_default() += 1;
        }
        let _ = writeln!(o, "  skipped by the plan:");
        for ((phase, reason), n) in by {
            let _ = writeln!(o, "    {n:>5} x {phase}: {reason}");
        }
    }
    if s.overshoot > 0 {
        let _ = writeln!(
            o,
            "  {} failure(s) came from steps already in flight when the budget was exceeded",
            s.overshoot
        );
    }
    if let Some(r) = stop {
        let _ = writeln!(o, "  stopped: {r}");
    }
    o
}
