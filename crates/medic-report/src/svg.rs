//! The timeline: a Gantt chart of the run's steps, drawn as SVG here (no library, no
//! script). Up to [`MAX_BARS`] executed steps on up to [`MAX_ROWS`] hosts, one bar per
//! step on one row per host, coloured by phase; beyond that one row per phase showing how
//! many of its steps were running over time, failed steps as marks, because hundreds of
//! thousands of bars would draw as a solid block and take a browser seconds to lay out.

use std::fmt::Write as _;

use crate::html::esc;
use crate::model::{Report, StepReport};

pub(crate) const MAX_BARS: usize = 3000;
pub(crate) const MAX_ROWS: usize = 400;
/// Failed steps marked in the per-phase view.
const MAX_MARKS: usize = 5000;

const LABEL_W: f64 = 190.0;
const PLOT_W: f64 = 900.0;
const ROW_H: f64 = 16.0;
const AXIS_H: f64 = 24.0;

/// Phase colours, in plan order, repeated beyond eight phases.
pub(crate) const PALETTE: [&str; 8] = [
    "#4e79a7", "#59a14f", "#f28e2b", "#76b7b2", "#edc948", "#b07aa1", "#9c755f", "#bab0ac",
];

pub(crate) fn phase_colour(report: &Report, phase: &str) -> &'static str {
    let k = report
        .phases
        .iter()
        .position(|p| p.name == phase)
        .unwrap_or(PALETTE.len() - 1);
    PALETTE[k % PALETTE.len()]
}

/// "+1m30s" from the run's start.
pub(crate) fn elapsed(ms: i64) -> String {
    let s = (ms.max(0) as f64 / 1000.0).round() as u64;
    if s < 60 && ms < 60_000 {
        return format!("+{:.1}s", ms.max(0) as f64 / 1000.0);
    }
    format!("+{}", medic_model::format_duration(s))
}

struct Scale {
    t0: i64,
    px_per_ms: f64,
}

impl Scale {
    fn x(&self, t: i64) -> f64 {
        LABEL_W + (t - self.t0).max(0) as f64 * self.px_per_ms
    }
}

/// The chart's `<svg>` element and its time axis; `what` the chart shows, for its label.
fn open_svg(o: &mut String, sc: &Scale, span_ms: i64, height: f64, what: &str) {
    let _ = write!(
        o,
        r#"<svg id="timeline-svg" xmlns="http://www.w3.org/2000/svg" width="{:.0}" height="{height:.0}" viewBox="0 0 {:.0} {height:.0}" role="img" aria-label="timeline of the run's {what}">"#,
        LABEL_W + PLOT_W + 10.0,
        LABEL_W + PLOT_W + 10.0
    );
    axis(o, sc, span_ms, height);
}

fn axis(o: &mut String, sc: &Scale, span_ms: i64, height: f64) {
    // About eight ticks at a round step.
    let steps = [
        100, 250, 500, 1_000, 2_000, 5_000, 10_000, 15_000, 30_000, 60_000, 120_000, 300_000,
        600_000, 900_000, 1_800_000, 3_600_000, 7_200_000, 14_400_000, 28_800_000, 86_400_000,
    ];
    let step = steps
        .into_iter()
        .find(|s| span_ms / s <= 8)
        .unwrap_or(86_400_000);
    let mut t = 0;
    while t <= span_ms {
        let x = sc.x(sc.t0 + t);
        let _ = write!(
            o,
            r##"<line class="tick" x1="{x:.1}" y1="{AXIS_H}" x2="{x:.1}" y2="{height:.1}"/><text class="tick" x="{x:.1}" y="14">{}</text>"##,
            elapsed(t)
        );
        t += step;
    }
}

pub(crate) fn timeline(report: &Report) -> String {
    let steps: Vec<(&str, &StepReport)> = report
        .hosts
        .iter()
        .flat_map(|h| h.steps.iter().map(move |s| (h.name.as_str(), s)))
        .chain(report.run_steps.iter().map(|s| ("(run)", s)))
        .filter(|(_, s)| s.start_ms.is_some())
        .collect();
    if steps.is_empty() {
        return r#"<p class="empty">No step has started yet.</p>"#.to_owned();
    }
    let t0 = steps
        .iter()
        .filter_map(|(_, s)| s.start_ms)
        .min()
        .unwrap_or(0);
    let t1 = steps
        .iter()
        .filter_map(|(_, s)| s.end_ms.or(s.start_ms))
        .chain(report.run.ended_ms)
        .chain(report.gates.iter().filter_map(|g| g.opened_ms))
        .max()
        .unwrap_or(t0)
        .max(t0 + 1);
    let span_ms = t1 - t0;
    let sc = Scale {
        t0,
        px_per_ms: PLOT_W / span_ms as f64,
    };
    let rows: Vec<&str> = {
        let mut r: Vec<&str> = Vec::new();
        let mut last = "";
        for (h, _) in &steps {
            // Steps come host by host.
            if *h != last {
                r.push(h);
                last = h;
            }
        }
        r
    };
    let per_step = steps.len() <= MAX_BARS && rows.len() <= MAX_ROWS;
    let mut o = String::new();
    let legend: Vec<String> = report
        .phases
        .iter()
        .map(|p| {
            format!(
                r#"<span class="key"><span class="swatch" style="background:{}"></span>{}</span>"#,
                phase_colour(report, &p.name),
                esc(&p.name)
            )
        })
        .collect();
    if per_step {
        let height = AXIS_H + rows.len() as f64 * ROW_H + 4.0;
        let _ = write!(
            o,
            r#"<p class="caption">{} steps on {} rows (one per host), over {}; a bar per step from its first start to its end, coloured by phase, failed ones outlined in red; gates as dashed lines. {}</p>"#,
            steps.len(),
            rows.len(),
            elapsed(span_ms).trim_start_matches('+'),
            legend.join(" ")
        );
        open_svg(&mut o, &sc, span_ms, height, "steps");
        let mut row = 0usize;
        let mut last = "";
        for (h, s) in &steps {
            if *h != last {
                if !last.is_empty() {
                    row += 1;
                }
                last = h;
                let y = AXIS_H + row as f64 * ROW_H + 12.0;
                let _ = write!(
                    o,
                    r#"<text class="row" x="4" y="{y:.1}">{}</text>"#,
                    esc(&shorten(h, 28))
                );
            }
            let start = s.start_ms.unwrap_or(t0);
            let end = s.end_ms.unwrap_or(t1);
            let x = sc.x(start);
            let w = (sc.x(end) - x).max(1.5);
            let y = AXIS_H + row as f64 * ROW_H + 2.0;
            let dur = s
                .duration_s()
                .map(|d| format!(", {d:.1}s"))
                .unwrap_or_default();
            let _ = write!(
                o,
                r#"<rect class="bar state-{}" data-step="{}" x="{x:.1}" y="{y:.1}" width="{w:.1}" height="{:.0}" fill="{}"><title>{} {}: {}{dur}, {} attempt(s)</title></rect>"#,
                esc(&s.state),
                esc(&s.id),
                ROW_H - 4.0,
                phase_colour(report, &s.phase),
                esc(h),
                esc(&s.id),
                esc(&s.state),
                s.attempts
            );
        }
        gates(&mut o, report, &sc, height);
        o.push_str("</svg>");
        return o;
    }

    // Per phase: steps running per time slot.
    const SLOTS: usize = 300;
    let slot_ms = (span_ms as f64 / SLOTS as f64).max(1.0);
    let height = AXIS_H + report.phases.len() as f64 * ROW_H * 2.0 + 4.0;
    let _ = write!(
        o,
        r#"<p class="caption">{} steps on {} hosts, over {}: too many for a bar each, so each phase's row shows how many of its steps were running over time (darker is more; the busiest moment is in its label), failed steps as red marks. {}</p>"#,
        steps.len(),
        rows.len(),
        elapsed(span_ms).trim_start_matches('+'),
        legend.join(" ")
    );
    open_svg(&mut o, &sc, span_ms, height, "phases");
    let mut marks = 0usize;
    for (k, p) in report.phases.iter().enumerate() {
        // Running steps per slot, by a difference array over the slots.
        let mut diff = vec![0i64; SLOTS + 1];
        let mut failed = Vec::new();
        for (_, s) in steps.iter().filter(|(_, s)| s.phase == p.name) {
            let a = (((s.start_ms.unwrap_or(t0) - t0) as f64 / slot_ms) as usize).min(SLOTS - 1);
            let b = (((s.end_ms.unwrap_or(t1) - t0) as f64 / slot_ms) as usize).clamp(a, SLOTS - 1);
            diff[a] += 1;
            diff[b + 1] -= 1;
            if s.state == "failed" && marks < MAX_MARKS {
                marks += 1;
                failed.push(s.end_ms.unwrap_or(t1));
            }
        }
        let mut run = 0i64;
        let counts: Vec<i64> = diff[..SLOTS]
            .iter()
            .map(|d| {
                run += d;
                run
            })
            .collect();
        let peak = counts.iter().copied().max().unwrap_or(0).max(1);
        let y = AXIS_H + k as f64 * ROW_H * 2.0;
        let _ = write!(
            o,
            r#"<text class="row" x="4" y="{:.1}">{} (peak {peak})</text>"#,
            y + 14.0,
            esc(&shorten(&p.name, 20))
        );
        let colour = phase_colour(report, &p.name);
        for (slot, c) in counts.iter().enumerate().filter(|(_, c)| **c > 0) {
            let x = LABEL_W + slot as f64 * PLOT_W / SLOTS as f64;
            let _ = write!(
                o,
                r#"<rect class="load" x="{x:.1}" y="{:.1}" width="{:.2}" height="{:.0}" fill="{colour}" fill-opacity="{:.2}"/>"#,
                y + 2.0,
                PLOT_W / SLOTS as f64 + 0.2,
                ROW_H * 2.0 - 4.0,
                0.15 + 0.85 * *c as f64 / peak as f64
            );
        }
        for t in failed {
            let x = sc.x(t);
            let _ = write!(
                o,
                r#"<line class="failed-mark" x1="{x:.1}" y1="{:.1}" x2="{x:.1}" y2="{:.1}"/>"#,
                y + 2.0,
                y + ROW_H * 2.0 - 2.0
            );
        }
    }
    gates(&mut o, report, &sc, height);
    o.push_str("</svg>");
    o
}

fn gates(o: &mut String, report: &Report, sc: &Scale, height: f64) {
    for g in &report.gates {
        if let Some(t) = g.opened_ms {
            let x = sc.x(t);
            let _ = write!(
                o,
                r#"<line class="gate" x1="{x:.1}" y1="{AXIS_H}" x2="{x:.1}" y2="{height:.1}"><title>{} opened by {}</title></line>"#,
                esc(&g.id),
                esc(&g.opened_by)
            );
        }
    }
}

/// At most `max` characters, with an ellipsis when cut.
fn shorten(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_owned();
    }
    let mut out: String = s.chars().take(max - 1).collect();
    out.push('…');
    out
}
