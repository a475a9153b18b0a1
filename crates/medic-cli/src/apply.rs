//! `apply`, `resume`, `demo`, `approve` and `inventory import`: the command line turned into
//! a `medic_run` request, and the run shown: its reporters, signal handling and summary.

use std::io::IsTerminal as _;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use medic_exec::WindowPolicy;
use medic_exec::{Control, Fanout, Reporter, RunExit, StopReason};
use medic_journal::RunState;
use medic_run::bad;
use medic_run::conn::Conn;
use medic_run::journal::JournalTarget;
use medic_run::resume;
use medic_run::run::{PlanInputs, Ready, RunSpec, Simulate, abs};
use medic_run::runtime;

use crate::args::{ApplyArgs, ApproveArgs, DemoArgs, Progress, ResumeArgs, WindowPolicyArg};
use crate::reporters::{JsonLines, Operator, summary_text};
use crate::{Failure, exit_codes, parse_window};

/// The connection settings as the run records them (paths made absolute).
pub(crate) fn conn(a: &crate::args::ConnArgs) -> Conn {
    Conn {
        known_hosts: a.known_hosts.as_deref().map(abs),
        accept_new_host_keys: a.accept_new_host_keys,
        ssh_keys: a.ssh_keys.iter().map(|k| abs(k)).collect(),
        ssh_passphrase_file: a.ssh_passphrase_file.as_deref().map(abs),
        dsm: a.dsm.clone(),
        dsm_ca: a.dsm_ca.as_deref().map(abs),
        dsm_api_key_file: a.dsm_api_key_file.as_deref().map(abs),
        linux_agent_dir: a.linux_agent_dir.clone(),
        linux_package_dir: a.linux_package_dir.clone(),
        allow_unverified_commands: a.allow_unverified_commands,
        poll_interval_s: a.poll_interval,
        become_method: a.become_method.clone(),
        sudo_password_file: a.sudo_password_file.as_deref().map(abs),
        agent_password_file: a.agent_password_file.as_deref().map(abs),
    }
}

pub(crate) fn show_bars(p: Progress) -> bool {
    match p {
        Progress::Always => true,
        Progress::Never => false,
        Progress::Auto => std::io::stderr().is_terminal(),
    }
}

/// What `medic apply` asks to run.
fn spec(a: &ApplyArgs) -> RunSpec {
    RunSpec {
        inputs: PlanInputs {
            plan: a.plan.clone(),
            verify_key: a.verify_key.clone(),
            inventory: a.inventory.clone(),
            playbook: a.playbook.clone(),
            sets: a.sets.clone(),
        },
        window: a.run.window.clone(),
        window_policy: match a.run.window_policy {
            WindowPolicyArg::Continue => WindowPolicy::Continue,
            WindowPolicyArg::Stop => WindowPolicy::Stop,
        },
        yes: a.run.yes,
        strict: a.run.strict,
        max_per_group: a.run.max_per_group,
        simulate: a.sim.simulate,
        sim: Simulate {
            time_scale: a.sim.time_scale,
            seed: a.sim.sim_seed,
            faults: a.sim.sim_faults.clone(),
        },
        conn: conn(&a.run.conn),
        journal: a.run.journal.clone(),
        events: a.run.events.clone(),
    }
}

pub(crate) fn apply(a: &ApplyArgs) -> Result<u8, Failure> {
    let spec = spec(a);
    spec.check_flags()?;
    if a.retry_failed
        && let Some(journal) = a
            .run
            .journal
            .as_deref()
            .filter(|j| j.exists() || medic_run::journal::is_database(j))
    {
        // A retry runs the journal's own plan with its recorded inputs: a new plan, inventory,
        // playbook, parameter or run setting would be ignored, silently.
        let given = [
            ("--plan", a.plan.is_some()),
            ("--inventory", a.inventory.is_some()),
            ("--playbook", a.playbook.is_some()),
            ("--set", !a.sets.is_empty()),
            ("--simulate", a.sim.simulate),
            ("--strict", a.run.strict),
            ("--max-per-group", a.run.max_per_group.is_some()),
        ];
        let ignored: Vec<&str> = given.iter().filter(|g| g.1).map(|g| g.0).collect();
        if !ignored.is_empty() {
            return Err(bad(
                "--retry-failed",
                format!(
                    "a retry runs the journal's own plan and inputs; {} cannot change them",
                    ignored.join(", ")
                ),
                "run `medic apply --retry-failed --journal FILE` without them, or start a new run (with a new --journal) for new inputs",
            ));
        }
        parse_window(a.run.window.as_deref())?;
        let ready = medic_run::resume::open(
            &resume::Request {
                journal: &JournalTarget::from_arg(journal)?,
                events: a.run.events.clone(),
                yes: a.run.yes,
                retry_failed: true,
                window: a.run.window.as_deref(),
            },
            &crate::report::warnings,
        )?;
        return execute(ready, a.run.progress);
    }
    // Workers share the run through the database; a file journal reaches no other machine.
    let workers_target = if a.workers {
        let target = match &a.run.journal {
            Some(p) => Some(medic_run::journal::JournalTarget::from_arg(p)?),
            None => medic_run::journal::JournalTarget::from_env()?,
        };
        match target {
            Some(t @ medic_run::journal::JournalTarget::Postgres(_)) => Some(t),
            _ => {
                return Err(bad(
                    "--workers",
                    "workers share a run through a PostgreSQL journal, and none was given",
                    "pass --journal postgres://USER@HOST/DB (or set MEDIC_JOURNAL_URL)",
                ));
            }
        }
    } else {
        None
    };
    let window = spec.window()?;
    for (flag, out) in [("--events", &a.run.events), ("--journal", &a.run.journal)] {
        if let Some(out) = out {
            let mut inputs = vec![
                ("--inventory", a.inventory.as_deref()),
                ("--playbook", a.playbook.as_deref()),
                ("--plan", a.plan.as_deref()),
                ("--verify-key", a.verify_key.as_deref()),
            ];
            inputs.extend(conn_files(&a.run.conn));
            medic_run::files::refuse_overwriting_inputs(flag, out, &inputs)?;
        }
    }
    let (plan, inv_text) = spec.plan(window, &crate::sign::read_plan, &crate::report::warnings)?;
    // A real run checks that it can run before its journal exists (`medic preflight`).
    let preflight = if a.sim.simulate {
        None
    } else if a.skip_preflight {
        Some(crate::preflight::SKIPPED.to_owned())
    } else {
        Some(crate::preflight::before_apply(
            &plan,
            inv_text.as_deref(),
            &spec.conn,
            a.run.progress,
        )?)
    };
    let ready = spec.start(plan, inv_text, window, preflight.as_deref())?;
    if workers_target.is_some() {
        return Ok(crate::worker::leave_to_workers(ready));
    }
    execute(ready, a.run.progress)
}

pub(crate) fn resume(a: &ResumeArgs) -> Result<u8, Failure> {
    let ready = medic_run::resume::open(
        &resume::Request {
            journal: &JournalTarget::existing(a.journal.as_deref())?,
            events: a.events.clone(),
            yes: a.yes,
            retry_failed: false,
            window: a.window.as_deref(),
        },
        &crate::report::warnings,
    )?;
    execute(ready, a.progress)
}

/// Runs a run that is ready on the process's runtime, with the terminal's reporters, until
/// it ends, stops or is interrupted; says how it ended and maps that to the exit code.
pub(crate) fn execute(ready: Ready, progress: Progress) -> Result<u8, Failure> {
    let Ready {
        plan,
        drivers,
        journal,
        prior,
        opts,
        inputs,
        events,
        window_changed,
    } = ready;
    let events = events.as_path();
    let inputs = &inputs;
    if let Some((old, new)) = &window_changed {
        eprintln!("change window: {new} (was {old})");
    }
    let rt = runtime()?;
    let terminal = std::io::stdin().is_terminal() && std::io::stderr().is_terminal();
    let operator = if inputs.demo {
        Operator::Demo
    } else if terminal {
        Operator::Terminal
    } else {
        Operator::Elsewhere
    };
    // The terminal's answers (and the demo's) reach the run through it, never the journal.
    let control = Control::default();
    let mut reporters: Vec<Box<dyn Reporter>> = vec![Box::new(crate::reporters::Progress::new(
        show_bars(progress),
        journal.path().to_path_buf(),
        operator,
        control.clone(),
        inputs.simulate,
        !inputs.yes,
        plan.size(),
    ))];
    medic_run::status::record_outcome(
        &journal,
        &medic_run::status::Outcome {
            state: RunState::Running,
            ..Default::default()
        },
    );
    match JsonLines::create(events, &opts.run_id) {
        Ok(j) => reporters.push(Box::new(j)),
        Err(e) => eprintln!("warning: cannot write events to {}: {e}", events.display()),
    }
    let mut fan = Fanout(reporters);
    let plan = Arc::new(plan);
    crate::out::stop_on_close(&control);
    let report = rt.block_on(async {
        let watch = tokio::spawn(crate::out::watch_streams());
        let c = control.clone();
        let interrupts = tokio::spawn(async move {
            // First interrupt drains, the second aborts in-flight steps.
            if tokio::signal::ctrl_c().await.is_ok() {
                c.cancel.cancel();
                if tokio::signal::ctrl_c().await.is_ok() {
                    c.abort.cancel();
                }
            }
        });
        let report = medic_exec::execute(
            plan.clone(),
            &drivers,
            &journal,
            &prior,
            &opts,
            control,
            &mut fan,
        )
        .await;
        // The runtime outlives the run (it is the process's): its watchers end with it.
        watch.abort();
        interrupts.abort();
        report
    });
    drop(fan);
    let path = journal.path().to_path_buf();
    let journal_failed = matches!(report.stop, Some(StopReason::JournalFailed { .. }));
    let next = medic_run::status::next_step(report.exit, report.stop.as_ref(), &path);
    if !journal_failed {
        medic_run::status::record_outcome(
            &journal,
            &medic_run::status::Outcome {
                state: medic_run::status::state_of_exit(report.exit),
                reason: report.stop.as_ref().map(ToString::to_string),
                next: next.clone(),
            },
        );
    }
    // After a journal failure the close reports the same failure again; the stop reason
    // already said it.
    let is_database = journal.is_database();
    if let Err(e) = journal.close()
        && !journal_failed
    {
        eprintln!("error: the journal could not be closed cleanly: {e}");
    }
    // The run report, beside the journal: from the journal as closed.
    // A database journal has no directory to hold the report: the summary gives the
    // `medic report` command that makes it from the database, from any machine.
    let report_file = (!journal_failed && !is_database)
        .then(|| crate::run_report::write_beside(&path, &opts.run_id))
        .flatten();
    eprint!(
        "{}",
        summary_text(&report.summary, report.stop.as_ref(), plan.skipped())
    );
    eprintln!("  journal: {}", path.display());
    eprintln!("  events:  {}", events.display());
    if let Some(f) = &report_file {
        eprintln!("  report:  {}", f.display());
    } else if is_database && !journal_failed {
        eprintln!(
            "  report:  `medic report --journal {} --out {}.report.html`",
            crate::text::shell_word(&path.display().to_string()),
            opts.run_id
        );
    }
    if let Some(next) = &next
        && !journal_failed
    {
        eprintln!("  next: {next}");
    }
    if journal_failed {
        // Not the plain "stopped" code: nothing can go on until someone frees space or
        // fixes the disk. Every step recorded before the failure is durable, and steps in
        // flight are re-probed by `resume`, so no side effect is repeated.
        eprintln!(
            "error: the journal {} cannot be written; free space on its disk (or fix the disk), then run `medic resume --journal {}`",
            path.display(),
            path.display()
        );
        return Ok(exit_codes::INTERNAL);
    }
    // The process ends after this: the plan and the journal's view are plain data (a million
    // steps are a few hundred MiB in small allocations, about 0.2 s to free one by one), so
    // they are left to the exit. The drivers and the journal are dropped as usual.
    std::mem::forget(plan);
    std::mem::forget(prior);
    Ok(match report.exit {
        RunExit::Ok => exit_codes::OK,
        RunExit::Failed => exit_codes::RUN_FAILED,
        RunExit::Stopped => exit_codes::STOPPED,
    })
}

pub(crate) fn demo(a: &DemoArgs) -> Result<u8, Failure> {
    let d = medic_run::demo::Demo::write(a.dir.as_deref())?;
    crate::report::warnings(&d.loaded.warnings);
    let plan = d.plan()?;
    eprintln!(
        "medic demo: the Deep Security remediation on a simulated fleet of {} hosts (3 sites, one air-gapped), {}, estimated {} of real work, replayed {}x faster",
        d.loaded.inventory.hosts.len(),
        plan.size(),
        medic_model::format_duration(plan.estimate().makespan_s),
        a.time_scale
    );
    let ready = d.start(plan, a.time_scale)?;
    execute(ready, a.progress)
}

pub(crate) fn approve(a: &ApproveArgs) -> Result<u8, Failure> {
    let by =
        a.by.clone()
            .or_else(|| std::env::var("USER").ok())
            .unwrap_or_else(|| "operator".to_owned());
    medic_run::approve::record(
        &JournalTarget::existing(a.journal.as_deref())?,
        &a.gate,
        &by,
    )?;
    println!("approved {} as {by}", a.gate);
    Ok(exit_codes::OK)
}

pub(crate) fn inventory_import(a: &crate::args::ImportArgs) -> Result<u8, Failure> {
    let rt = runtime()?;
    let _g = rt.enter();
    let import = medic_run::import::Import::prepare(&medic_run::import::Request {
        dsm: &a.dsm,
        dsm_ca: a.dsm_ca.as_deref(),
        dsm_api_key_file: a.dsm_api_key_file.as_deref(),
        timeout: Duration::from_secs_f64(a.dsm_timeout),
        manager_name: a.manager_name.as_deref(),
        relay_groups: &a.relay_groups,
        ansible: a.ansible.as_deref(),
        out: a.out.as_deref(),
    })?;
    let url = import.client().base_url().to_owned();
    eprintln!(
        "importing from {url} (each request times out after {} s)",
        a.dsm_timeout
    );
    let imported = rt.block_on(async {
        let ticker = tokio::spawn({
            let url = url.clone();
            let c = import.client().clone();
            async move {
                let start = std::time::Instant::now();
                loop {
                    tokio::time::sleep(Duration::from_secs(5)).await;
                    eprintln!(
                        "  still reading from {url}: {} s, {} requests sent",
                        start.elapsed().as_secs(),
                        c.requests_sent()
                    );
                }
            }
        });
        let r = import.fetch().await;
        ticker.abort();
        r
    })?;
    let out = import.finish(&imported);
    if let Some(m) = &out.ansible {
        eprintln!("{}", m.summary);
        for n in &m.notes {
            eprintln!("  {n}");
        }
    }
    out.check()?;
    crate::write_out(a.out.as_deref(), &out.text)?;
    if let Some(o) = &a.out {
        eprintln!("wrote {}", o.display());
    }
    Ok(exit_codes::OK)
}

/// The files the connection settings name (keys, secrets, CA bundle, known hosts), as
/// inputs an output must never be.
pub(crate) fn conn_files(c: &crate::args::ConnArgs) -> Vec<(&'static str, Option<&Path>)> {
    let mut v = vec![
        ("--known-hosts", c.known_hosts.as_deref()),
        ("--ssh-passphrase-file", c.ssh_passphrase_file.as_deref()),
        ("--dsm-ca", c.dsm_ca.as_deref()),
        ("--dsm-api-key-file", c.dsm_api_key_file.as_deref()),
        ("--sudo-password-file", c.sudo_password_file.as_deref()),
        ("--agent-password-file", c.agent_password_file.as_deref()),
    ];
    v.extend(c.ssh_keys.iter().map(|k| ("--ssh-key", Some(k.as_path()))));
    v
}
