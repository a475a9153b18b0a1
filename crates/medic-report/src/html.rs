//! The report as one self-contained HTML file: styles and script inline, the timeline as
//! inline SVG, nothing fetched, so it opens from disk anywhere.
//!
//! The host table is drawn by the inline script from the report's data (a JSON element),
//! a page at a time: a run of 100,000 hosts would otherwise be a table of 100,000 rows
//! for the browser to lay out before it shows anything. Values reach the page either
//! escaped here ([`esc`]) or through the DOM's `textContent`, never as markup; the JSON is
//! escaped so that nothing in it can close its `<script>` element.

use std::borrow::Cow;
use std::fmt::Write as _;

use crate::model::{Report, StepReport};
use crate::svg;

/// A value in HTML text or a quoted attribute.
pub(crate) fn esc(s: &str) -> Cow<'_, str> {
    if !s
        .bytes()
        .any(|b| matches!(b, b'<' | b'>' | b'&' | b'"' | b'\''))
    {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 16);
    for c in s.chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

/// JSON made safe inside `<script type="application/json">`: `<`, `>` and `&` as `\u`
/// escapes (so no `</script>` or `<!--` can appear), and the two line separators
/// JavaScript once refused in strings.
fn script_json(json: &str) -> String {
    let mut out = String::with_capacity(json.len() + json.len() / 64);
    for c in json.chars() {
        match c {
            '<' => out.push_str("\\u003c"),
            '>' => out.push_str("\\u003e"),
            '&' => out.push_str("\\u0026"),
            '\u{2028}' => out.push_str("\\u2028"),
            '\u{2029}' => out.push_str("\\u2029"),
            c => out.push(c),
        }
    }
    out
}

fn when(ms: Option<i64>) -> String {
    ms.and_then(|m| jiff::Timestamp::from_millisecond(m).ok())
        .map(|t| t.strftime("%Y-%m-%d %H:%M:%S UTC").to_string())
        .unwrap_or_else(|| "-".to_owned())
}

fn secs(s: Option<f64>) -> String {
    match s {
        Some(s) if s < 60.0 => format!("{s:.1}s"),
        Some(s) => medic_model::format_duration(s.round() as u64),
        None => "-".to_owned(),
    }
}

fn counts(m: &std::collections::BTreeMap<String, u64>) -> String {
    m.iter()
        .map(|(k, v)| format!("{v} {k}"))
        .collect::<Vec<_>>()
        .join(", ")
}

const STYLE: &str = r##"
body{font:14px/1.4 system-ui,-apple-system,"Segoe UI",sans-serif;margin:1.5em;color:#1d1d1f;background:#fff}
h1{font-size:1.5em;margin:0 0 .3em}h2{font-size:1.15em;margin:1.6em 0 .5em;border-bottom:1px solid #ddd}
table{border-collapse:collapse;margin:.3em 0}th,td{border:1px solid #ddd;padding:2px 6px;text-align:left;vertical-align:top}
th{background:#f4f4f6}td.num{text-align:right}
.state-failed,.state-unknown{color:#b00020;font-weight:600}.state-succeeded{color:#1b7f3b}.state-skipped{color:#666}
.badge{display:inline-block;padding:1px 8px;border-radius:10px;background:#eee;margin-right:4px}
.badge.failed,.badge.unknown{background:#fde0e3}.badge.succeeded{background:#dff3e4}
pre{white-space:pre-wrap;margin:0;font-size:12px;max-width:60em}
.caption{color:#444}.key{margin-right:10px;white-space:nowrap}.swatch{display:inline-block;width:10px;height:10px;margin-right:4px}
svg text{font:11px sans-serif;fill:#333}svg text.tick{fill:#777}svg line.tick{stroke:#eee}
svg rect.bar.state-failed,svg rect.bar.state-unknown{stroke:#d00;stroke-width:2}
svg line.gate{stroke:#555;stroke-dasharray:3 3}svg line.failed-mark{stroke:#d00;stroke-width:1}
#filters label{margin-right:1em}#timeline{overflow-x:auto}
tr.host td.steps details summary{cursor:pointer}
"##;

const SCRIPT: &str = r##"
"use strict";
(function () {
  const data = JSON.parse(document.getElementById("report-data").textContent);
  const PAGE = 500;
  let page = 0;
  const body = document.querySelector("#host-table tbody");
  const stateF = document.getElementById("state-filter");
  const phaseF = document.getElementById("phase-filter");
  const nameF = document.getElementById("name-filter");
  const count = document.getElementById("host-count");
  const prev = document.getElementById("prev-page");
  const next = document.getElementById("next-page");
  function cell(tr, text, cls) {
    const td = document.createElement("td");
    td.textContent = text === null || text === undefined ? "" : String(text);
    if (cls) td.className = cls;
    tr.appendChild(td);
    return td;
  }
  function matches(h) {
    if (stateF.value !== "" && h[4] !== stateF.value) return false;
    if (phaseF.value !== "" && !h[8].includes(Number(phaseF.value))) return false;
    const n = nameF.value.trim().toLowerCase();
    return n === "" || h[0].toLowerCase().includes(n);
  }
  function steps(details, h) {
    const t = document.createElement("table");
    const head = t.insertRow();
    for (const k of ["step", "phase", "start", "duration (estimate)", "attempts", "result", "detail, output, evidence"]) {
      const th = document.createElement("th");
      th.textContent = k;
      head.appendChild(th);
    }
    for (const s of h[11]) {
      const tr = t.insertRow();
      cell(tr, s[0]);
      cell(tr, data.phases[s[1]]);
      cell(tr, s[3] === null ? "-" : "+" + s[3].toFixed(1) + "s");
      cell(tr, (s[4] === null ? "-" : s[4].toFixed(1) + "s") + " (" + s[5] + "s)");
      cell(tr, s[6], "num");
      cell(tr, s[2], "state-" + s[2]);
      const td = cell(tr, "");
      for (const [label, v] of [["", s[7]], ["output: ", s[8]], ["evidence: ", s[9]]]) {
        if (v === null || v === "") continue;
        const pre = document.createElement("pre");
        pre.textContent = label + v;
        td.appendChild(pre);
      }
    }
    details.appendChild(t);
  }
  function render() {
    const rows = data.hosts.filter(matches);
    const pages = Math.max(1, Math.ceil(rows.length / PAGE));
    if (page >= pages) page = pages - 1;
    const frag = document.createDocumentFragment();
    for (const h of rows.slice(page * PAGE, (page + 1) * PAGE)) {
      const tr = document.createElement("tr");
      tr.className = "host";
      tr.dataset.state = h[4];
      cell(tr, h[0], "name");
      cell(tr, h[1]);
      cell(tr, [h[2], h[3]].filter(Boolean).join(" / "));
      cell(tr, h[4], "state state-" + h[4]);
      cell(tr, h[5] === null ? "not observed" : h[5]);
      cell(tr, h[6] === null ? "not observed" : h[6]);
      cell(tr, h[7] === null ? "-" : h[7]);
      cell(tr, h[8].map(function (p) { return data.phases[p]; }).join(", "));
      cell(tr, [h[9]].concat(h[10], h[12]).filter(Boolean).join("; "));
      const td = cell(tr, "", "steps");
      if (h[11].length > 0) {
        const d = document.createElement("details");
        const s = document.createElement("summary");
        s.textContent = h[11].length + (h[11].length === 1 ? " step" : " steps");
        d.appendChild(s);
        d.addEventListener("toggle", function () {
          if (d.open && !d.dataset.filled) { d.dataset.filled = "1"; steps(d, h); }
        });
        td.appendChild(d);
      }
      frag.appendChild(tr);
    }
    body.replaceChildren(frag);
    const from = rows.length === 0 ? 0 : page * PAGE + 1;
    const to = Math.min(rows.length, (page + 1) * PAGE);
    count.textContent = rows.length + " of " + data.hosts.length + " hosts match" +
      (pages > 1 ? "; showing " + from + "-" + to : "");
    prev.disabled = page === 0;
    next.disabled = page >= pages - 1;
  }
  function refilter() { page = 0; render(); }
  stateF.addEventListener("change", refilter);
  phaseF.addEventListener("change", refilter);
  nameF.addEventListener("input", refilter);
  prev.addEventListener("click", function () { page -= 1; render(); });
  next.addEventListener("click", function () { page += 1; render(); });
  render();
  document.body.dataset.ready = "1";
})();
"##;

/// The host table's data: arrays rather than objects (a 100,000-host run would otherwise
/// spell every key 100,000 times). Host: `[name, address, role, platform, state,
/// build_before, build_after, verified_by, [phase indexes], failure, [skip reasons],
/// [steps], [host-key lines]]`; step: `[id, phase index, state, start (s after the run's start), duration
/// (s), estimate (s), attempts, detail, output, evidence]`.
fn host_data<'r>(report: &'r Report, t0: i64) -> String {
    let phase_ix = |p: &str| report.phases.iter().position(|x| x.name == p).unwrap_or(0);
    type StepRow<'a> = (
        &'a str,
        usize,
        &'a str,
        Option<f64>,
        Option<f64>,
        u64,
        u32,
        Option<&'a str>,
        Option<&'a str>,
        Option<String>,
    );
    let step = |s: &'r StepReport| -> StepRow<'r> {
        (
            &s.id,
            phase_ix(&s.phase),
            &s.state,
            s.start_ms.map(|t| ((t - t0) as f64 / 100.0).round() / 10.0),
            s.duration_s().map(|d| (d * 10.0).round() / 10.0),
            s.estimate_s,
            s.attempts,
            s.detail.as_deref(),
            s.output.as_deref(),
            s.evidence
                .as_ref()
                .map(|e| e.summary())
                .filter(|e| !e.is_empty()),
        )
    };
    let hosts: Vec<_> = report
        .hosts
        .iter()
        .map(|h| {
            (
                &h.name,
                &h.address,
                &h.role,
                h.platform.as_deref(),
                &h.state,
                h.build_before.as_deref(),
                h.build_after.as_deref(),
                h.verified_by.as_deref(),
                h.phases.iter().map(|p| phase_ix(p)).collect::<Vec<_>>(),
                h.failure.as_deref(),
                h.skipped
                    .iter()
                    .map(|s| format!("skipped in {}: {}", s.phase, s.reason))
                    .collect::<Vec<_>>(),
                h.steps.iter().map(step).collect::<Vec<_>>(),
                &h.host_keys,
            )
        })
        .collect();
    let phases: Vec<&str> = report.phases.iter().map(|p| p.name.as_str()).collect();
    #[derive(serde::Serialize)]
    struct Data<'a, H> {
        phases: Vec<&'a str>,
        hosts: Vec<H>,
    }
    let json = serde_json::to_string(&Data { phases, hosts }).unwrap_or_default();
    script_json(&json)
}

pub(crate) fn to_html(r: &Report) -> String {
    let mut o = String::with_capacity(4096 + r.hosts.len() * 300);
    let run_id = r.run.run_id.as_deref().unwrap_or("?");
    let t0 = r.run.started_ms.unwrap_or(0);
    let _ = write!(
        o,
        r#"<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>medic run report: {}</title>
<style>{STYLE}</style></head><body>
<h1>Run report: {}</h1>
"#,
        esc(run_id),
        esc(run_id)
    );

    // Summary.
    let state = match (r.run.state.as_str(), &r.run.stop_reason) {
        ("stopped", Some(why)) => format!("stopped: {why}"),
        ("failed", _) => "finished with failed steps".to_owned(),
        (s, _) => s.to_owned(),
    };
    let actual_ms = match (r.run.started_ms, r.run.ended_ms) {
        (Some(a), Some(b)) => Some((b - a).max(0)),
        _ => None,
    };
    let scale_note = match r.run.time_scale {
        Some(x) => format!(
            " (a rehearsal at {x}x: the estimate is {} at that scale)",
            secs(Some(r.run.estimate_s as f64 / x))
        ),
        None => String::new(),
    };
    o.push_str(r#"<section id="summary"><h2>Summary</h2><table>"#);
    let mut row = |k: &str, v: &str| {
        let _ = write!(o, "<tr><th>{k}</th><td>{}</td></tr>", esc(v));
    };
    row("state", &state);
    if let Some(n) = &r.run.next {
        row("next", n);
    }
    row("playbook", &r.run.playbook);
    row(
        "plan",
        &r.run.fingerprint[..r.run.fingerprint.len().min(16)],
    );
    row("journal", &r.run.journal);
    row("started", &when(r.run.started_ms));
    row("last recorded", &when(r.run.ended_ms));
    row(
        "duration (plan's estimate)",
        &format!(
            "{} ({}{scale_note})",
            secs(actual_ms.map(|m| m as f64 / 1000.0)),
            medic_model::format_duration(r.run.estimate_s)
        ),
    );
    if let Some(w) = &r.run.window {
        row("change window", w);
    }
    if let Some(p) = &r.run.preflight {
        row("pre-flight", p);
    }
    row(
        "hosts",
        &format!("{} ({})", r.hosts.len(), counts(&r.hosts_by_state)),
    );
    row("steps", &counts(&r.steps_by_state));
    for w in &r.run.warnings {
        row("plan warning", w);
    }
    o.push_str("</table></section>\n");

    // Failures first.
    let failed: Vec<_> = r
        .hosts
        .iter()
        .filter(|h| h.state == "failed" || h.state == "unknown")
        .collect();
    let _ = write!(
        o,
        r#"<section id="failures"><h2>Failures ({})</h2>"#,
        failed.len()
    );
    if failed.is_empty() {
        o.push_str("<p>No step failed.</p>");
    } else {
        o.push_str("<table><tr><th>host</th><th>state</th><th>first failure</th><th>build before</th><th>build after</th></tr>");
        for h in failed.iter().take(200) {
            let _ = write!(
                o,
                r#"<tr><td>{}</td><td class="state-{s}">{s}</td><td><pre>{}</pre></td><td>{}</td><td>{}</td></tr>"#,
                esc(&h.name),
                esc(h.failure.as_deref().unwrap_or("")),
                esc(h.build_before.as_deref().unwrap_or("not observed")),
                esc(h.build_after.as_deref().unwrap_or("not observed")),
                s = esc(&h.state),
            );
        }
        o.push_str("</table>");
        if failed.len() > 200 {
            let _ = write!(
                o,
                "<p>and {} more: filter the host table by state.</p>",
                failed.len() - 200
            );
        }
    }
    o.push_str("</section>\n");

    let _ = writeln!(
        o,
        r#"<section id="timeline"><h2>Timeline</h2>{}</section>"#,
        svg::timeline(r)
    );

    // Phases and waves.
    o.push_str(r#"<section id="phases"><h2>Phases and waves</h2><table><tr><th>phase / wave</th><th>hosts</th><th>steps</th><th>skipped hosts</th><th>results</th><th>started</th><th>took (estimate)</th></tr>"#);
    for p in &r.phases {
        let took = match (p.started_ms, p.ended_ms) {
            (Some(a), Some(b)) => secs(Some((b - a) as f64 / 1000.0)),
            _ => "-".to_owned(),
        };
        let _ = write!(
            o,
            r#"<tr class="phase"><td><span class="swatch" style="background:{}"></span>{}</td><td class="num">{}</td><td class="num">{}</td><td class="num">{}</td><td>{}</td><td>{}</td><td>{took} ({})</td></tr>"#,
            svg::phase_colour(r, &p.name),
            esc(&p.name),
            p.hosts,
            p.steps,
            p.skipped,
            esc(&counts(&p.counts)),
            p.started_ms
                .map(|t| svg::elapsed(t - t0))
                .unwrap_or_else(|| "-".to_owned()),
            medic_model::format_duration(p.estimate_s),
        );
        for w in &p.waves {
            let took = match (w.started_ms, w.ended_ms) {
                (Some(a), Some(b)) => secs(Some((b - a) as f64 / 1000.0)),
                _ => "-".to_owned(),
            };
            let budget = w
                .max_failures
                .map(|m| format!(" (tolerates {m} failed)"))
                .unwrap_or_default();
            let _ = write!(
                o,
                r#"<tr class="wave"><td>&nbsp;&nbsp;wave {}{budget}</td><td class="num">{}</td><td></td><td></td><td>{}</td><td>{}</td><td>{took}</td></tr>"#,
                w.index,
                w.hosts,
                esc(&counts(&w.counts)),
                w.started_ms
                    .map(|t| svg::elapsed(t - t0))
                    .unwrap_or_else(|| "-".to_owned()),
            );
        }
    }
    o.push_str("</table></section>\n");

    // Gates.
    let _ = write!(
        o,
        r#"<section id="gates"><h2>Gates ({})</h2>"#,
        r.gates.len()
    );
    if r.gates.is_empty() {
        o.push_str("<p>The plan has no gate.</p>");
    } else {
        o.push_str("<table><tr><th>gate</th><th>state</th><th>waiting since</th><th>opened</th><th>opened by</th></tr>");
        for g in &r.gates {
            let _ = write!(
                o,
                r#"<tr><td>{}</td><td class="state-{s}">{s}</td><td>{}</td><td>{}</td><td>{}</td></tr>"#,
                esc(&g.id),
                when(g.waiting_since_ms),
                when(g.opened_ms),
                esc(&g.opened_by),
                s = esc(&g.state),
            );
        }
        o.push_str("</table>");
    }
    o.push_str("</section>\n");

    // Host keys: a refused key is why a host's steps failed; an accepted one changed a
    // known_hosts file.
    let _ = write!(
        o,
        r#"<section id="host-keys"><h2>Host keys ({})</h2>"#,
        r.host_keys.len()
    );
    if r.host_keys.is_empty() {
        o.push_str("<p>No host key was accepted as new or refused.</p>");
    } else {
        o.push_str("<table><tr><th>when</th><th>host</th><th>key</th><th>detail</th></tr>");
        for k in r.host_keys.iter().take(200) {
            let cls = if k.event == "refused" {
                "state-failed"
            } else {
                "state-succeeded"
            };
            let _ = write!(
                o,
                r#"<tr class="host-key"><td>{}</td><td>{}</td><td class="{cls}">{}</td><td><pre>{}</pre></td></tr>"#,
                when(Some(k.ts_ms)),
                esc(k.host.as_deref().unwrap_or(&k.endpoint)),
                esc(k.event),
                esc(&k.line),
            );
        }
        o.push_str("</table>");
        if r.host_keys.len() > 200 {
            let _ = write!(
                o,
                "<p>and {} more: each is on its host's row of the host table.</p>",
                r.host_keys.len() - 200
            );
        }
    }
    o.push_str("</section>\n");

    if !r.run_steps.is_empty() {
        o.push_str(r#"<section id="run-steps"><h2>Steps on no host</h2><table><tr><th>step</th><th>result</th><th>attempts</th><th>detail</th></tr>"#);
        for s in &r.run_steps {
            let _ = write!(
                o,
                r#"<tr><td>{}</td><td class="state-{st}">{st}</td><td class="num">{}</td><td><pre>{}</pre></td></tr>"#,
                esc(&s.id),
                s.attempts,
                esc(s.detail.as_deref().unwrap_or("")),
                st = esc(&s.state),
            );
        }
        o.push_str("</table></section>\n");
    }

    // Hosts.
    o.push_str(r#"<section id="hosts"><h2>Hosts</h2><div id="filters"><label>state <select id="state-filter"><option value="">any</option>"#);
    for s in r.hosts_by_state.keys() {
        let _ = write!(o, r#"<option value="{s}">{s}</option>"#, s = esc(s));
    }
    o.push_str(
        r#"</select></label><label>phase <select id="phase-filter"><option value="">any</option>"#,
    );
    for (k, p) in r.phases.iter().enumerate() {
        let _ = write!(o, r#"<option value="{k}">{}</option>"#, esc(&p.name));
    }
    o.push_str(r#"</select></label><label>name <input id="name-filter" type="search"></label><button id="prev-page" type="button">previous</button> <button id="next-page" type="button">next</button> <span id="host-count"></span></div>
<noscript><p>The host table needs JavaScript; the failures above and `medic report --format markdown` need none.</p></noscript>
<table id="host-table"><thead><tr><th>host</th><th>address</th><th>role / platform</th><th>state</th><th>build before</th><th>build after</th><th>verified by</th><th>phases</th><th>failure, skip reason or host key</th><th>steps</th></tr></thead><tbody></tbody></table></section>
"#);
    let _ = write!(
        o,
        "<script type=\"application/json\" id=\"report-data\">{}</script>\n<script>{SCRIPT}</script>\n</body></html>\n",
        host_data(r, t0)
    );
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_markup_and_quotes() {
        assert_eq!(
            esc(r#"<script>alert("x")</script>&'"#),
            "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;&amp;&#39;"
        );
        assert!(matches!(esc("plain"), Cow::Borrowed(_)));
    }

    #[test]
    fn json_cannot_close_its_script_element() {
        let json =
            serde_json::json!(["</script><script>alert(1)</script>", "a\u{2028}b"]).to_string();
        let safe = script_json(&json);
        assert!(!safe.contains('<') && !safe.contains('>'));
        let back: serde_json::Value = serde_json::from_str(&safe).expect("still JSON");
        assert_eq!(back[0], "</script><script>alert(1)</script>");
        assert_eq!(back[1], "a\u{2028}b");
    }
}
