//! Rendering problems for people: one `file:line:col: message` header per problem (stable,
//! greppable), then, when the problem has a place in a file, miette's snippet of it, then
//! what to do. The message is said once: miette's own title line and the problem's internal
//! code are left out. NO_COLOR and non-terminals get plain text.

use std::collections::HashMap;
use std::fmt;
use std::io::IsTerminal as _;

use medic_config::{Problem, Problems};
use miette::{Diagnostic, GraphicalReportHandler, GraphicalTheme, LabeledSpan, SourceCode};

/// At most this many problems of one kind (one code) are shown; the rest are counted.
/// A generated inventory can repeat one mistake a million times, and neither the person
/// reading nor the terminal gains anything from the copies.
const PER_KIND: usize = 20;

/// Beyond this column (or span length) the header's `file:line:col` says where, without
/// miette's snippet: miette formats the underline with the column as a width, which
/// panics past 65,535 (a 100 KB `--set` found by the fuzzer), and nobody reads such a
/// line on a terminal anyway.
const SNIPPET_MAX_COL: u32 = 4096;

/// What the command did not do because of the problems (the last line of the report).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum NotDone {
    /// `validate`, `plan`, `apply`, `demo`: the inputs were refused before anything.
    PlannedOrRun,
    /// `resume`: the run was not continued.
    Resumed,
    /// `worker`: no call was claimed.
    Served,
    /// `approve`: nothing was recorded in the journal.
    Approved,
    /// `journal merge`: the main journal was left as it was.
    Merged,
    /// `status`, `inventory import`: nothing else to say than the problems.
    Nothing,
}

pub(crate) fn problems(p: &Problems, not_done: NotDone) {
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
        if prob.loc.is_some_and(|l| {
            l.line > 0 && l.col <= SNIPPET_MAX_COL && l.len <= SNIPPET_MAX_COL as usize
        }) && handler.render_report(&mut snippet, &Snippet(prob)).is_ok()
        {
            // miette's first line is the (empty) title: the header above said it.
            let body = snippet.split_once('\n').map_or("", |(_, rest)| rest);
            out.push_str(body);
        } else if let Some(h) = &prob.help {
            out.push_str(&format!("  help: {h}\n"));
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
    let found = format!("{n} problem{} found", if n == 1 { "" } else { "s" });
    match not_done {
        NotDone::PlannedOrRun => {
            out.push_str(&format!("{found}; nothing was planned or run\n"));
        }
        NotDone::Resumed => out.push_str(&format!("{found}; the run was not resumed\n")),
        NotDone::Approved => out.push_str(&format!("{found}; nothing was approved\n")),
        NotDone::Served => out.push_str(&format!("{found}; this worker served nothing\n")),
        NotDone::Merged => out.push_str(&format!("{found}; nothing was merged\n")),
        NotDone::Nothing if n > 1 => out.push_str(&format!("{found}\n")),
        NotDone::Nothing => {}
    }
    eprint!("{out}");
}

/// Problems that do not stop the command: one `warning: file:line:col: message` line each,
/// with what to do.
pub(crate) fn warnings(p: &Problems) {
    for w in &p.0 {
        match &w.help {
            Some(h) => eprintln!("warning: {w}\n  help: {h}"),
            None => eprintln!("warning: {w}"),
        }
    }
}

/// A problem as miette sees it for its snippet: no code and no title of its own.
struct Snippet<'a>(&'a Problem);

impl fmt::Debug for Snippet<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Snippet")
    }
}

impl fmt::Display for Snippet<'_> {
    fn fmt(&self, _: &mut fmt::Formatter<'_>) -> fmt::Result {
        Ok(())
    }
}

impl std::error::Error for Snippet<'_> {}

impl Diagnostic for Snippet<'_> {
    fn help<'a>(&'a self) -> Option<Box<dyn fmt::Display + 'a>> {
        Diagnostic::help(self.0)
    }

    fn source_code(&self) -> Option<&dyn SourceCode> {
        Diagnostic::source_code(self.0)
    }

    fn labels(&self) -> Option<Box<dyn Iterator<Item = LabeledSpan> + '_>> {
        Diagnostic::labels(self.0)
    }
}
