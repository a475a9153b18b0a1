//! Rendering problems for people: one `file:line:col: message` header per problem (stable,
//! greppable), then miette's snippet with the help text. NO_COLOR and non-terminals get
//! plain text.

use std::collections::HashMap;
use std::io::IsTerminal as _;

use medic_config::Problems;
use miette::{GraphicalReportHandler, GraphicalTheme};

/// At most this many problems of one kind (one code) are shown; the rest are counted.
/// A generated inventory can repeat one mistake a million times, and neither the person
/// reading nor the terminal gains anything from the copies.
const PER_KIND: usize = 20;

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
    let mut shown: HashMap<&str, usize> = HashMap::new();
    // Hidden problems per kind, in the order their kinds were first seen.
    let mut hidden: Vec<(&str, &str, usize)> = Vec::new();
    for prob in &p.0 {
        let n = shown.entry(prob.code).or_default();
        if *n >= PER_KIND {
            match hidden.iter_mut().find(|(code, _, _)| *code == prob.code) {
                Some(h) => h.2 += 1,
                None => hidden.push((prob.code, &prob.message, 1)),
            }
            continue;
        }
        *n += 1;
        out.push_str(&format!("error: {prob}\n"));
        let mut snippet = String::new();
        if handler.render_report(&mut snippet, prob).is_ok() {
            out.push_str(&snippet);
        }
        out.push('\n');
    }
    for (_, message, k) in &hidden {
        out.push_str(&format!(
            "... and {k} more problem{} of the same kind as `{message}`\n",
            if *k == 1 { "" } else { "s" }
        ));
    }
    let n = p.len();
    out.push_str(&format!(
        "{n} problem{} found; nothing was planned or run\n",
        if n == 1 { "" } else { "s" }
    ));
    eprint!("{out}");
}
