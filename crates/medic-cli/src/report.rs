//! Rendering problems for people: one `file:line:col: message` header per problem (stable,
//! greppable), then miette's snippet with the help text. NO_COLOR and non-terminals get
//! plain text.

use std::io::IsTerminal as _;

use medic_config::Problems;
use miette::{GraphicalReportHandler, GraphicalTheme};

pub(crate) fn problems(p: &Problems) {
    let color = std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
        && std::io::stderr().is_terminal();
    let theme = if color {
        GraphicalTheme::unicode()
    } else {
        GraphicalTheme::unicode_nocolor()
    };
    let handler = GraphicalReportHandler::new_themed(theme).with_context_lines(1);
    let mut out = String::new();
    for prob in &p.0 {
        out.push_str(&format!("error: {prob}\n"));
        let mut snippet = String::new();
        if handler.render_report(&mut snippet, prob).is_ok() {
            out.push_str(&snippet);
        }
        out.push('\n');
    }
    let n = p.len();
    out.push_str(&format!(
        "{n} problem{} found; nothing was planned or run\n",
        if n == 1 { "" } else { "s" }
    ));
    eprint!("{out}");
}
