//! Renderings of a sealed plan for people and tools: text, DOT, Mermaid and a markdown
//! change-board runbook. JSON is in `crate::json`, as it is a contract.

mod dot;
mod markdown;
mod text;

pub use dot::{to_dot, to_mermaid};
pub use markdown::to_markdown;
pub use text::to_text;

use std::borrow::Cow;

use crate::plan::{Plan, Step};

/// The steps a person performs (`driver: manual`) with what the operator must do: the
/// step's `instruction` argument, else its action.
pub(crate) fn manual_steps(plan: &Plan) -> Vec<(&Step, String)> {
    plan.steps
        .iter()
        .filter(|s| &*s.driver == "manual")
        .map(|s| {
            let what = s
                .args
                .iter()
                .find(|(k, _)| k == "instruction")
                .map(|(_, v)| v.clone())
                .unwrap_or_else(|| format!("{} (see the playbook)", s.action));
            (s, what)
        })
        .collect()
}

/// The first `max` host names joined by commas, then how many more there are.
pub(crate) fn host_list(hosts: &[&str], max: usize) -> String {
    let shown = hosts[..hosts.len().min(max)].join(", ");
    if hosts.len() > max {
        format!("{shown} and {} more", hosts.len() - max)
    } else {
        shown
    }
}

/// A value on a line of text: control characters (newlines, terminal escapes) are written
/// as `\u{..}` escapes, so a value from an input file cannot add lines or steer a terminal.
pub fn escape_text(s: &str) -> Cow<'_, str> {
    if !s.chars().any(char::is_control) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        if c.is_control() {
            out.extend(c.escape_unicode());
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// A value in markdown text or a table cell: control characters as in [`escape_text`],
/// HTML's `<`, `>` and `&` as entities, and markdown's punctuation backslash-escaped, so a
/// value from the inventory or the playbook reads as written and cannot add a heading, a
/// link, a table column or HTML to the runbook.
pub fn escape_md(s: &str) -> Cow<'_, str> {
    // What can start emphasis, code, a link, a table cell or strike-through inside a line
    // (control characters are escaped first, so a value never starts a line).
    const MD: &[char] = &['\\', '`', '*', '_', '[', ']', '|', '~'];
    if !s
        .chars()
        .any(|c| c.is_control() || MD.contains(&c) || matches!(c, '<' | '>' | '&'))
    {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in escape_text(s).chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            c if MD.contains(&c) => {
                out.push('\\');
                out.push(c);
            }
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

/// A value as inline code: a span fenced with more backticks than the value holds in a
/// row (markdown has no escapes inside code), HTML-safe since markdown keeps code literal.
pub(crate) fn code_md(s: &str) -> String {
    let s = escape_text(s);
    let mut longest = 0;
    let mut run = 0;
    for c in s.chars() {
        run = if c == '`' { run + 1 } else { 0 };
        longest = longest.max(run);
    }
    let fence = "`".repeat(longest + 1);
    let pad = if longest > 0 { " " } else { "" };
    // A `|` would still end a table cell.
    let body = s.replace('|', "\\|");
    format!("{fence}{pad}{body}{pad}{fence}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_cannot_inject() {
        assert_eq!(escape_text("a\nb\u{1b}[2J"), "a\\u{a}b\\u{1b}[2J");
        assert_eq!(escape_text("plain 20.0.1-690"), "plain 20.0.1-690");
        assert_eq!(
            escape_md("x | <script>alert(1)</script> # [a](b)"),
            "x \\| &lt;script&gt;alert(1)&lt;/script&gt; # \\[a\\](b)"
        );
        assert_eq!(code_md("dsupdate_1.zip"), "`dsupdate_1.zip`");
        assert_eq!(code_md("a`b"), "`` a`b ``");
    }
}
