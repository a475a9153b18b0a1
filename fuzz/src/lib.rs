//! Helpers shared by medic's fuzz targets: the real playbook and lab inventory, the split of
//! a multi-part input, and what every target does with a result (render problems the way the
//! CLI does; render a plan every way and check its JSON round trip).

use medic_config::Problems;
use medic_plan::Plan;
use miette::{GraphicalReportHandler, GraphicalTheme};

/// The shipped playbook: the `set` target fuzzes `--set` against it, the `plan` target uses
/// it when the input brings no playbook of its own.
pub const PLAYBOOK: &str = include_str!("../../playbooks/ds-activeupdate-cert-2023.yaml");

/// The lab inventory: the `set` target plans it with each playbook that loads.
pub const LAB_INVENTORY: &str = include_str!("../../examples/lab/inventory.yaml");

/// The line that separates the parts of a `plan` input: inventory, playbook, window, sets.
pub const SPLIT: &str = "\n%%\n";

/// Renders every problem as `medic` does on the terminal (crates/medic-cli/src/report.rs):
/// the one-line header, then miette's snippet of the file around the problem's span.
/// Spans that fall outside the text or inside a UTF-8 character panic here, as they would
/// in the CLI.
pub fn render_problems(p: &Problems) -> String {
    let handler =
        GraphicalReportHandler::new_themed(GraphicalTheme::unicode_nocolor()).with_context_lines(1);
    let mut out = String::new();
    for prob in &p.0 {
        out.push_str(&format!("error: {prob}\n"));
        let mut snippet = String::new();
        if handler.render_report(&mut snippet, prob).is_ok() {
            out.push_str(&snippet);
        }
    }
    out.push_str(&p.clone().sorted().to_string());
    out
}

/// Everything the CLI does with a plan that built: every rendering, and the JSON contract
/// (`medic apply --plan` reads back what `medic plan --format json` wrote, losslessly).
pub fn check_plan(plan: &Plan) {
    let _ = medic_plan::render::to_text(plan);
    let _ = medic_plan::render::to_dot(plan);
    let _ = medic_plan::render::to_mermaid(plan);
    let _ = medic_plan::render::to_markdown(plan);
    let json = medic_plan::plan_to_json(plan);
    match medic_plan::plan_from_json(&json) {
        Ok(back) => {
            let again = medic_plan::plan_to_json(&back);
            assert!(again == json, "plan JSON round trip is not lossless");
        }
        Err(e) => panic!("a plan medic wrote does not read back: {e}"),
    }
}

/// `--set` arguments, one a line (a final newline ends the last line; it starts no empty
/// argument). `\r` and empty lines in the middle are kept: they are arguments too.
pub fn set_lines(text: &str) -> Vec<String> {
    let text = text.strip_suffix('\n').unwrap_or(text);
    if text.is_empty() {
        return Vec::new();
    }
    text.split('\n').map(str::to_owned).collect()
}
