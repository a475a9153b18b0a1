//! The report as markdown, for a change-board ticket: the same content as the HTML page
//! without the picture, every host's steps listed, failures first.

use std::fmt::Write as _;

use medic_plan::render::escape_md as md;

use crate::model::Report;

fn when(ms: Option<i64>) -> String {
    ms.and_then(|m| jiff::Timestamp::from_millisecond(m).ok())
        .map(|t| t.strftime("%Y-%m-%d %H:%M:%S").to_string())
        .unwrap_or_else(|| "-".to_owned())
}

fn counts(m: &std::collections::BTreeMap<String, u64>) -> String {
    m.iter()
        .map(|(k, v)| format!("{v} {k}"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn one_line(s: &str) -> String {
    md(&s.replace('\n', " / ")).into_owned()
}

pub(crate) fn to_markdown(r: &Report) -> String {
    let mut o = String::new();
    let run_id = r.run.run_id.as_deref().unwrap_or("?");
    let _ = writeln!(o, "# Run report: {}\n", md(run_id));
    let _ = writeln!(o, "| | |\n|---|---|");
    let _ = writeln!(o, "| state | {} |", md(&r.run.state));
    if let Some(why) = &r.run.stop_reason {
        let _ = writeln!(o, "| stop reason | {} |", one_line(why));
    }
    if let Some(n) = &r.run.next {
        let _ = writeln!(o, "| next | {} |", one_line(n));
    }
    let _ = writeln!(o, "| playbook | {} |", md(&r.run.playbook));
    let _ = writeln!(o, "| journal | {} |", md(&r.run.journal));
    let _ = writeln!(o, "| started | {} UTC |", when(r.run.started_ms));
    let _ = writeln!(o, "| last recorded | {} UTC |", when(r.run.ended_ms));
    let _ = writeln!(
        o,
        "| plan's estimate | {}{} |",
        medic_model::format_duration(r.run.estimate_s),
        r.run
            .time_scale
            .map(|x| format!(" (simulated; the rehearsal ran at {x}x)"))
            .unwrap_or_default()
    );
    if let Some(w) = &r.run.window {
        let _ = writeln!(o, "| change window | {} |", md(w));
    }
    let _ = writeln!(
        o,
        "| hosts | {} ({}) |",
        r.hosts.len(),
        counts(&r.hosts_by_state)
    );
    let _ = writeln!(o, "| steps | {} |", counts(&r.steps_by_state));

    let _ = writeln!(o, "\n## Phases and waves\n");
    let _ = writeln!(
        o,
        "| phase / wave | hosts | steps | skipped | results | took | estimate |\n|---|---:|---:|---:|---|---:|---:|"
    );
    let took = |a: Option<i64>, b: Option<i64>| match (a, b) {
        (Some(a), Some(b)) => format!("{:.1}s", (b - a) as f64 / 1000.0),
        _ => "-".to_owned(),
    };
    for p in &r.phases {
        let _ = writeln!(
            o,
            "| {} | {} | {} | {} | {} | {} | {} |",
            md(&p.name),
            p.hosts,
            p.steps,
            p.skipped,
            counts(&p.counts),
            took(p.started_ms, p.ended_ms),
            medic_model::format_duration(p.estimate_s)
        );
        for w in &p.waves {
            let _ = writeln!(
                o,
                "| wave {} | {} | | | {} | {} | |",
                w.index,
                w.hosts,
                counts(&w.counts),
                took(w.started_ms, w.ended_ms)
            );
        }
    }

    let _ = writeln!(o, "\n## Gates\n");
    if r.gates.is_empty() {
        let _ = writeln!(o, "The plan has no gate.");
    } else {
        let _ = writeln!(
            o,
            "| gate | state | opened | opened by |\n|---|---|---|---|"
        );
        for g in &r.gates {
            let _ = writeln!(
                o,
                "| {} | {} | {} | {} |",
                md(&g.id),
                g.state,
                when(g.opened_ms),
                md(&g.opened_by)
            );
        }
    }

    let _ = writeln!(o, "\n## Host keys\n");
    if r.host_keys.is_empty() {
        let _ = writeln!(o, "No host key was accepted as new or refused.");
    } else {
        let _ = writeln!(o, "| when | host | key | detail |\n|---|---|---|---|");
        for k in &r.host_keys {
            let _ = writeln!(
                o,
                "| {} UTC | {} | {} | {} |",
                when(Some(k.ts_ms)),
                md(k.host.as_deref().unwrap_or(&k.endpoint)),
                k.event,
                one_line(&k.line)
            );
        }
    }

    let _ = writeln!(o, "\n## Hosts (failures first)\n");
    let _ = writeln!(
        o,
        "| host | state | build before | build after | verified by | failure, skip reason or host key |\n|---|---|---|---|---|---|"
    );
    for h in &r.hosts {
        let why: Vec<String> = h
            .failure
            .iter()
            .cloned()
            .chain(
                h.skipped
                    .iter()
                    .map(|s| format!("skipped in {}: {}", s.phase, s.reason)),
            )
            .chain(h.host_keys.iter().cloned())
            .collect();
        let _ = writeln!(
            o,
            "| {} | {} | {} | {} | {} | {} |",
            md(&h.name),
            h.state,
            md(h.build_before.as_deref().unwrap_or("not observed")),
            md(h.build_after.as_deref().unwrap_or("not observed")),
            md(h.verified_by.as_deref().unwrap_or("-")),
            one_line(&why.join("; "))
        );
    }

    let _ = writeln!(o, "\n## Steps\n");
    let _ = writeln!(
        o,
        "| host | step | started | took | estimate | attempts | result | detail | evidence |\n|---|---|---|---:|---:|---:|---|---|---|"
    );
    let t0 = r.run.started_ms.unwrap_or(0);
    let steps = r
        .hosts
        .iter()
        .flat_map(|h| h.steps.iter().map(move |s| (h.name.as_str(), s)))
        .chain(r.run_steps.iter().map(|s| ("-", s)));
    for (h, s) in steps {
        let detail: Vec<&str> = s
            .detail
            .iter()
            .chain(s.output.iter())
            .map(String::as_str)
            .collect();
        let _ = writeln!(
            o,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            md(h),
            md(&s.id),
            s.start_ms
                .map(|t| format!("+{:.1}s", (t - t0) as f64 / 1000.0))
                .unwrap_or_else(|| "-".to_owned()),
            s.duration_s()
                .map(|d| format!("{d:.1}s"))
                .unwrap_or_else(|| "-".to_owned()),
            medic_model::format_duration(s.estimate_s),
            s.attempts,
            s.state,
            one_line(&detail.join(" / ")),
            one_line(&s.evidence.as_ref().map(|e| e.summary()).unwrap_or_default())
        );
    }
    o
}
