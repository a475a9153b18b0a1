//! `medic preflight`, and the same checks at the start of a real `medic apply`: sets up the
//! drivers from the connection settings, runs `medic_drivers::preflight` (where the checks
//! live) with a progress bar on a terminal, and renders the table as text, JSON or
//! Markdown. Values that come from the inventory or the hosts are escaped in text and
//! Markdown, so that a host's output cannot move the terminal's cursor or inject markup.

use std::sync::Arc;
use std::time::Duration;

use medic_config::{Problem, Problems, SourceFile};
use medic_drivers::preflight::{
    CheckStatus, ManagerAccess, PreflightOptions, PreflightReport, plan_uses_manager,
    plan_uses_ssh, run_preflight,
};
use medic_model::Inventory;
use medic_plan::Plan;
use serde::Serialize;

use crate::args::{PreflightArgs, PreflightFormat, Progress};
use medic_run::conn::{Conn, manager_client_with, ssh_config};
use medic_run::runtime;
use medic_run::{bad, internal};

use crate::apply::show_bars;
use crate::{Failure, exit_codes, load, make_plan, write_out};

/// The JSON output's format tag.
const FORMAT: &str = "medic.preflight/v1";

pub(crate) fn preflight(a: &PreflightArgs) -> Result<u8, Failure> {
    let opts = options(a.parallel, a.timeout)?;
    if let Some(out) = &a.out {
        let mut inputs = vec![
            ("--inventory", Some(a.input.inventory.as_path())),
            ("--playbook", Some(a.input.playbook.as_path())),
        ];
        inputs.extend(crate::apply::conn_files(&a.conn));
        medic_run::files::refuse_overwriting_inputs("--out", out, &inputs)?;
        medic_run::files::check_output("--out", out)?;
    }
    let (inv, pb, text, inv_text) = load(&a.input)?;
    let plan = make_plan(&inv, &pb, &text, None, (&a.input.inventory, &inv_text))?;
    let conn = crate::apply::conn(&a.conn);
    let report = check(&plan, Some(&inv), &conn, opts, a.progress)?;
    let out = match a.format {
        PreflightFormat::Text => to_text(&plan, &report),
        PreflightFormat::Json => to_json(&plan, &report)?,
        PreflightFormat::Markdown => to_markdown(&plan, &report),
    };
    write_out(a.out.as_deref(), &out)?;
    Ok(if report.can_run() {
        exit_codes::OK
    } else {
        exit_codes::FINDINGS
    })
}

fn options(parallel: usize, timeout: f64) -> Result<PreflightOptions, Failure> {
    if parallel == 0 {
        return Err(bad(
            "--parallel",
            "`0` hosts at once checks nothing",
            "pass --parallel N with N of at least 1, e.g. 16",
        ));
    }
    if !(timeout.is_finite() && timeout > 0.0 && timeout <= 3600.0) {
        return Err(bad(
            "--timeout",
            format!("`{timeout}` is not a usable time limit for a check"),
            "pass a number of seconds above 0 and at most 3600, e.g. 60",
        ));
    }
    Ok(PreflightOptions {
        parallel,
        timeout: Duration::from_secs_f64(timeout),
    })
}

/// Runs the checks of `plan` with the drivers the connection settings describe.
fn check(
    plan: &Plan,
    inv: Option<&Inventory>,
    conn: &Conn,
    opts: PreflightOptions,
    progress: Progress,
) -> Result<PreflightReport, Failure> {
    let rt = runtime()?;
    let _g = rt.enter();
    let poll = conn.poll_interval()?;
    let ssh = if plan_uses_ssh(plan) {
        let mut cfg = ssh_config(conn, poll)?;
        // Strict, whatever the run would do: a key seen for the first time is a finding to
        // confirm with the host's administrator, never recorded by a read-only check.
        cfg.accept_new_host_keys = false;
        cfg.probe_timeout = opts.timeout;
        cfg.connect_timeout = cfg.connect_timeout.min(opts.timeout);
        let d = medic_drivers::SshDriver::new(cfg)
            .map_err(|e| bad("ssh", e.to_string(), "check the SSH settings"))?;
        Some(Arc::new(d))
    } else {
        None
    };
    let manager = if !plan_uses_manager(plan) {
        ManagerAccess::NotNeeded
    } else {
        match medic_drivers::dsm::load_api_key(conn.dsm_api_key_file.as_deref()) {
            Err(medic_drivers::dsm::DsmError::NoApiKey) => ManagerAccess::Unavailable(
                "no API key for the Manager: set MEDIC_DSM_API_KEY or pass --dsm-api-key-file FILE"
                    .to_owned(),
            ),
            // A read-only check answers within a timeout or two: with the client's usual
            // eight backoffs, a Manager that refuses the connection kept `medic preflight`
            // (and a real `medic apply`) silent for the whole check timeout, 60 s, then
            // said "no answer" instead of "connection refused".
            _ => ManagerAccess::Client(manager_client_with(plan, conn, |cfg| {
                cfg.retry.max_retries = cfg.retry.max_retries.min(1);
                cfg.connect_timeout = cfg.connect_timeout.min(opts.timeout);
                cfg.read_timeout = cfg.read_timeout.min(opts.timeout);
            })?),
        }
    };
    let bar = show_bars(progress).then(|| {
        let b = indicatif::ProgressBar::new(0);
        b.set_style(
            indicatif::ProgressStyle::with_template("pre-flight [{bar:30}] {pos}/{len} {msg}")
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        crate::logs::attach_bar(&b);
        b
    });
    let mut tick = |done: usize, total: usize, name: &str| {
        if let Some(b) = &bar {
            b.set_length(total as u64);
            b.set_position(done as u64);
            b.set_message(format!("{} checked", text_safe(name)));
        }
    };
    let report = rt.block_on(run_preflight(plan, inv, ssh, manager, opts, &mut tick));
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    Ok(report)
}

/// The pre-flight of a real `medic apply`, before its journal exists: `Ok` with the line
/// the journal records, or the findings as a refusal (exit 2, nothing run, no journal).
pub(crate) fn before_apply(
    plan: &Plan,
    inv_text: Option<&str>,
    conn: &Conn,
    progress: Progress,
) -> Result<String, Failure> {
    let inv = match inv_text {
        Some(t) => Some(medic_config::load_inventory("inventory", t).map_err(Failure::BadInput)?),
        None => None,
    };
    let report = check(
        plan,
        inv.as_ref(),
        conn,
        PreflightOptions::default(),
        progress,
    )?;
    let (ok, findings, not_checked) = report.counts();
    if findings == 0 {
        let line = format!(
            "passed: {ok} checks ok, {not_checked} not checked, on {} hosts and the Manager",
            report.hosts
        );
        eprintln!("pre-flight {line}");
        return Ok(line);
    }
    let file = SourceFile::new("pre-flight", "");
    Err(Failure::BadInput(Problems(
        report
            .findings()
            .map(|r| {
                Problem::new(
                    &file,
                    None,
                    "medic::apply::preflight",
                    format!(
                        "finding on {} ({}): {}",
                        text_safe(&r.host),
                        r.check.as_str(),
                        text_safe(&r.detail)
                    ),
                )
                .help("fix it and start again (`medic preflight` shows every check), or pass --skip-preflight to start without the checks (the journal records it)")
            })
            .collect(),
    )))
}

/// The journal line of a run started with `--skip-preflight`.
pub(crate) const SKIPPED: &str = "skipped (--skip-preflight)";

/// Text without control characters (ANSI escapes, carriage returns, new lines): each one
/// is shown as `\u{..}`.
fn text_safe(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if c.is_control() {
            out.push_str(&c.escape_unicode().to_string());
        } else {
            out.push(c);
        }
    }
    out
}

/// A Markdown table cell: inline Markdown punctuation backslash-escaped, HTML's `<`, `>` and `&`
/// as entities, control characters escaped; nothing in it can start markup or end the cell.
fn md_safe(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            // Inside a cell nothing starts a block; these start or end inline markup, a
            // link or image, or the cell.
            '\\' | '`' | '*' | '_' | '[' | ']' | '!' | '|' | '~' => {
                out.push('\\');
                out.push(c);
            }
            c if c.is_control() => out.push_str(&c.escape_unicode().to_string()),
            c => out.push(c),
        }
    }
    out
}

fn status_word(s: CheckStatus) -> &'static str {
    s.as_str()
}

fn summary_line(r: &PreflightReport) -> String {
    let (ok, findings, not_checked) = r.counts();
    format!(
        "{} checks on {} hosts and the Manager: {ok} ok, {findings} finding{}, {not_checked} not checked",
        r.rows.len(),
        r.hosts,
        if findings == 1 { "" } else { "s" }
    )
}

fn verdict(r: &PreflightReport) -> &'static str {
    if r.can_run() {
        "the plan can run"
    } else {
        "the plan cannot run as it is: fix each finding (or the inventory, then plan again) and run `medic preflight` again"
    }
}

fn header(plan: &Plan) -> String {
    let fp = plan.fingerprint();
    format!(
        "pre-flight of {} (plan {})",
        plan.playbook(),
        &fp[..fp.len().min(16)]
    )
}

pub(crate) fn to_text(plan: &Plan, r: &PreflightReport) -> String {
    let rows: Vec<[String; 4]> = r
        .rows
        .iter()
        .map(|x| {
            [
                text_safe(&x.host),
                x.check.as_str().to_owned(),
                status_word(x.status).to_owned(),
                text_safe(&x.detail),
            ]
        })
        .collect();
    let head = ["HOST", "CHECK", "STATUS", "DETAIL"].map(str::to_owned);
    let width = |i: usize| {
        rows.iter()
            .chain(std::iter::once(&head))
            .map(|r| r[i].chars().count())
            .max()
            .unwrap_or(0)
    };
    let (w0, w1, w2) = (width(0), width(1), width(2));
    let mut out = format!("{}\n", header(plan));
    for r in std::iter::once(&head).chain(rows.iter()) {
        out.push_str(&format!(
            "{:w0$}  {:w1$}  {:w2$}  {}\n",
            r[0], r[1], r[2], r[3]
        ));
    }
    out.push_str(&format!("\nsummary: {}\n", summary_line(r)));
    let findings: Vec<_> = r.findings().collect();
    if !findings.is_empty() {
        out.push_str("findings:\n");
        for f in findings {
            out.push_str(&format!(
                "  {} {}: {}\n",
                text_safe(&f.host),
                f.check.as_str(),
                text_safe(&f.detail)
            ));
        }
    }
    out.push_str(&format!("{}\n", verdict(r)));
    out
}

pub(crate) fn to_markdown(plan: &Plan, r: &PreflightReport) -> String {
    let mut out = format!("# {}\n\n", md_safe(&header(plan)));
    out.push_str("| host | check | status | detail |\n|---|---|---|---|\n");
    for x in &r.rows {
        let status = match x.status {
            CheckStatus::Finding => "**finding**",
            s => status_word(s),
        };
        out.push_str(&format!(
            "| {} | {} | {status} | {} |\n",
            md_safe(&x.host),
            md_safe(x.check.as_str()),
            md_safe(&x.detail)
        ));
    }
    out.push_str(&format!(
        "\n**Summary:** {}\n\n{}\n",
        md_safe(&summary_line(r)),
        md_safe(verdict(r))
    ));
    out
}

#[derive(Serialize)]
struct JsonReport<'a> {
    format: &'static str,
    playbook: &'a str,
    fingerprint: &'a str,
    can_run: bool,
    summary: JsonSummary,
    checks: Vec<JsonRow<'a>>,
}

#[derive(Serialize)]
struct JsonSummary {
    hosts: usize,
    checks: usize,
    ok: usize,
    findings: usize,
    not_checked: usize,
}

#[derive(Serialize)]
struct JsonRow<'a> {
    host: &'a str,
    check: &'static str,
    /// `ok`, `finding` or `not-checked`.
    status: &'static str,
    detail: &'a str,
}

pub(crate) fn to_json(plan: &Plan, r: &PreflightReport) -> Result<String, Failure> {
    let (ok, findings, not_checked) = r.counts();
    let j = JsonReport {
        format: FORMAT,
        playbook: plan.playbook(),
        fingerprint: plan.fingerprint(),
        can_run: r.can_run(),
        summary: JsonSummary {
            hosts: r.hosts,
            checks: r.rows.len(),
            ok,
            findings,
            not_checked,
        },
        checks: r
            .rows
            .iter()
            .map(|x| JsonRow {
                host: &x.host,
                check: x.check.as_str(),
                status: match x.status {
                    CheckStatus::Ok => "ok",
                    CheckStatus::Finding => "finding",
                    CheckStatus::NotChecked => "not-checked",
                },
                detail: &x.detail,
            })
            .collect(),
    };
    let mut s = serde_json::to_string_pretty(&j).map_err(|e| internal(e.to_string()))?;
    s.push('\n');
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hostile_values_are_escaped() {
        let evil = "a|b <script>x</script> **bold** [l](http://x) \x1b[31mred\r\nnext `c`";
        let md = md_safe(evil);
        for bad in ["<script>", "\x1b", "\n", "\r"] {
            assert!(!md.contains(bad), "{bad:?} in {md}");
        }
        // Every markup character is escaped by the backslash before it.
        let chars: Vec<char> = md.chars().collect();
        for (i, c) in chars.iter().enumerate() {
            if matches!(c, '|' | '*' | '[' | ']' | '`' | '<' | '>') {
                assert!(i > 0 && chars[i - 1] == '\\', "bare {c:?} at {i} in {md}");
            }
        }
        assert!(md.contains("&lt;script&gt;"), "{md}");
        let t = text_safe(evil);
        assert!(
            !t.contains('\x1b') && !t.contains('\n') && !t.contains('\r'),
            "{t}"
        );
        assert!(t.contains("\\u{1b}[31mred"), "{t}");
    }
}
