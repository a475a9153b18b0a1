//! Ansible's INI inventory, as ansible-core's `ini` plugin reads it: hosts before any
//! section are `ungrouped`; `[g]` hosts, `[g:vars]` `key=value` lines, `[g:children]`
//! group names (a child may be declared further down; `[g:vars]` of a group declared
//! nowhere is an error); host lines are split like a POSIX shell (quotes, `#` comments);
//! values are read as Python literals where they are one (`2222`, `'text'`).

use std::collections::BTreeMap;

use super::{Builder, Val, Var};
use crate::diag::SourceFile;
use crate::yaml::Loc;

#[derive(Clone, Copy, PartialEq, Eq)]
enum State {
    Hosts,
    Children,
    Vars,
}

pub(super) fn read(b: &mut Builder, f: &SourceFile) {
    let text = f.text.clone();
    let mut group = "ungrouped".to_owned();
    let mut state = State::Hosts;
    // Groups named before they are declared: (line's loc, what, parents waiting).
    let mut pending: BTreeMap<String, (Loc, State, Vec<String>)> = BTreeMap::new();
    let mut offset = 0usize;
    for (i, raw) in text.split_inclusive('\n').enumerate() {
        let line_start = offset;
        offset += raw.len();
        let body = raw.trim_end_matches(['\n', '\r']);
        let lead = body.len() - body.trim_start().len();
        let line = body.trim();
        let at = |from: usize, len: usize| Loc {
            line: u32::try_from(i + 1).unwrap_or(u32::MAX),
            col: u32::try_from(body[..from].chars().count() + 1).unwrap_or(u32::MAX),
            offset: line_start + from,
            len,
        };
        if line.is_empty() || line.starts_with(['#', ';']) {
            continue;
        }
        if line.starts_with('[') {
            match section(line) {
                Some((name, tag)) => {
                    let st = match tag {
                        None | Some("hosts") => State::Hosts,
                        Some("children") => State::Children,
                        Some("vars") => State::Vars,
                        Some(t) => {
                            b.problem(
                                f,
                                at(lead, line.len()),
                                format!("section [{name}:{t}] has an unknown type `{t}`"),
                                "a section is [GROUP], [GROUP:children] or [GROUP:vars]",
                            );
                            // Skip its lines rather than read them as hosts.
                            group = name.to_owned();
                            state = State::Vars;
                            continue;
                        }
                    };
                    if !b.has_group(name) && st == State::Vars && !pending.contains_key(name) {
                        pending.insert(name.to_owned(), (at(lead, line.len()), st, Vec::new()));
                    }
                    b.add_group(name);
                    if st != State::Vars
                        && let Some((_, _, parents)) = pending.remove(name)
                    {
                        for p in parents {
                            b.add_child(&p, name);
                        }
                    }
                    group = name.to_owned();
                    state = st;
                }
                None => b.problem(
                    f,
                    at(lead, line.len()),
                    format!("invalid section `{line}`"),
                    "a section is [GROUP], [GROUP:children] or [GROUP:vars], with no spaces inside the brackets",
                ),
            }
            continue;
        }
        match state {
            State::Hosts => {
                let tokens = match shlex(line) {
                    Ok(t) => t,
                    Err(e) => {
                        b.problem(
                            f,
                            at(lead, line.len()),
                            format!("host line: {e}"),
                            "close the quote",
                        );
                        continue;
                    }
                };
                let Some(((pattern, pat_off), rest)) = tokens.split_first() else {
                    continue;
                };
                let mut vars = Vec::new();
                for (t, off) in rest {
                    match t.split_once('=') {
                        Some((k, v)) => vars.push((
                            k.to_owned(),
                            Var {
                                val: value(v),
                                file: f.clone(),
                                loc: at(lead + off, t.len()),
                            },
                        )),
                        None => b.problem(
                            f,
                            at(lead + off, t.len()),
                            format!("expected key=value after the host, found `{t}`"),
                            "write host variables as NAME=VALUE (quote values with spaces)",
                        ),
                    }
                }
                if pattern.trim() == "---" {
                    b.problem(
                        f,
                        at(lead + pat_off, 3),
                        "`---` in an INI inventory: this looks like YAML",
                        "name the file .yml or .yaml",
                    );
                    continue;
                }
                b.add_hosts(&group, pattern, f, at(lead + pat_off, pattern.len()), vars);
            }
            State::Vars => match line.split_once('=') {
                Some((k, v)) => {
                    let voff = lead + k.len() + 1 + (v.len() - v.trim_start().len());
                    b.set_group_var(
                        &group,
                        k.trim().to_owned(),
                        Var {
                            val: value(v.trim()),
                            file: f.clone(),
                            loc: at(voff, v.trim().len()),
                        },
                    );
                }
                None => b.problem(
                    f,
                    at(lead, line.len()),
                    format!("expected key=value in [{group}:vars], found `{line}`"),
                    "write one NAME=VALUE per line",
                ),
            },
            State::Children => match child_name(line) {
                Some(c) if b.has_group(c) => b.add_child(&group, c),
                Some(c) => pending
                    .entry(c.to_owned())
                    .or_insert_with(|| (at(lead, c.len()), State::Children, Vec::new()))
                    .2
                    .push(group.clone()),
                None => b.problem(
                    f,
                    at(lead, line.len()),
                    format!("expected a group name in [{group}:children], found `{line}`"),
                    "write one group name per line",
                ),
            },
        }
    }
    for (name, (loc, st, parents)) in pending {
        let msg = match st {
            State::Children => format!(
                "section [{}:children] names the group `{name}`, which is declared nowhere",
                parents.last().map_or("?", String::as_str)
            ),
            _ => format!(
                "section [{name}:vars] is for the group `{name}`, which is declared nowhere"
            ),
        };
        b.problem(
            f,
            loc,
            msg,
            format!("declare it with a [{name}] or [{name}:children] section"),
        );
    }
}

/// `[name]` or `[name:tag]`, then only spaces or a `#` comment.
fn section(line: &str) -> Option<(&str, Option<&str>)> {
    let rest = line.strip_prefix('[')?;
    let close = rest.find(']')?;
    let after = rest[close + 1..].trim_start();
    if !(after.is_empty() || after.starts_with('#')) {
        return None;
    }
    let inner = &rest[..close];
    let (name, tag) = match inner.split_once(':') {
        Some((n, t)) => (n, Some(t)),
        None => (inner, None),
    };
    let name_ok = !name.is_empty() && !name.contains(char::is_whitespace);
    let tag_ok =
        tag.is_none_or(|t| !t.is_empty() && t.chars().all(|c| c.is_alphanumeric() || c == '_'));
    (name_ok && tag_ok).then_some((name, tag))
}

fn child_name(line: &str) -> Option<&str> {
    let name = line.split('#').next()?.trim();
    (!name.is_empty() && !name.contains([':', ']']) && !name.contains(char::is_whitespace))
        .then_some(name)
}

/// A POSIX shell split with `#` comments (Python's `shlex.split(line, comments=True)`);
/// each word with its byte offset in the line.
fn shlex(line: &str) -> Result<Vec<(String, usize)>, String> {
    let mut out = Vec::new();
    let mut cur: Option<(String, usize)> = None;
    let mut chars = line.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        match c {
            c if c.is_whitespace() => {
                if let Some(w) = cur.take() {
                    out.push(w);
                }
            }
            '#' => break,
            '\'' => {
                let w = cur.get_or_insert_with(|| (String::new(), i));
                loop {
                    match chars.next() {
                        Some((_, '\'')) => break,
                        Some((_, ch)) => w.0.push(ch),
                        None => return Err("no closing quotation".to_owned()),
                    }
                }
            }
            '"' => {
                let w = cur.get_or_insert_with(|| (String::new(), i));
                loop {
                    match chars.next() {
                        Some((_, '"')) => break,
                        Some((_, '\\')) => match chars.next() {
                            Some((_, e @ ('\\' | '"' | '$' | '`'))) => w.0.push(e),
                            Some((_, e)) => {
                                w.0.push('\\');
                                w.0.push(e);
                            }
                            None => return Err("no closing quotation".to_owned()),
                        },
                        Some((_, ch)) => w.0.push(ch),
                        None => return Err("no closing quotation".to_owned()),
                    }
                }
            }
            '\\' => {
                let w = cur.get_or_insert_with(|| (String::new(), i));
                match chars.next() {
                    Some((_, e)) => w.0.push(e),
                    None => return Err("no escaped character".to_owned()),
                }
            }
            c => cur.get_or_insert_with(|| (String::new(), i)).0.push(c),
        }
    }
    if let Some(w) = cur.take() {
        out.push(w);
    }
    Ok(out)
}

/// What Python's `ast.literal_eval` makes of a value, for the kinds medic reads: a whole
/// number, a quoted string; anything else that is a literal (booleans, lists...) is named
/// by kind, and what is not a literal stays the text it is.
fn value(v: &str) -> Val {
    let t = v.trim();
    // literal_eval ignores a trailing comment after a literal.
    let lit = match t.find(" #") {
        Some(i) if literal(t[..i].trim()).is_some() => t[..i].trim(),
        _ => t,
    };
    literal(lit).unwrap_or_else(|| Val::Str(t.to_owned()))
}

fn literal(t: &str) -> Option<Val> {
    let digits = t.strip_prefix(['-', '+']).unwrap_or(t);
    if !digits.is_empty()
        && digits.bytes().all(|b| b.is_ascii_digit() || b == b'_')
        && !digits.starts_with('_')
        && !digits.ends_with('_')
        && (digits == "0" || !digits.starts_with('0'))
    {
        return t.replace('_', "").parse().ok().map(Val::Int);
    }
    for q in ['\'', '"'] {
        if t.len() >= 2
            && t.starts_with(q)
            && t.ends_with(q)
            && !t[1..t.len() - 1].contains([q, '\\'])
        {
            return Some(Val::Str(t[1..t.len() - 1].to_owned()));
        }
    }
    match t {
        "True" | "False" => Some(Val::Other("a boolean")),
        "None" => Some(Val::Other("null")),
        _ if t.starts_with(['[', '{', '(']) && t.ends_with([']', '}', ')']) => {
            Some(Val::Other("a collection"))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shell_split_with_comments() {
        let w = |l: &str| -> Vec<String> {
            shlex(l).expect("splits").into_iter().map(|w| w.0).collect()
        };
        assert_eq!(w("h a=1 b='x y' # c"), ["h", "a=1", "b=x y"]);
        assert_eq!(w(r#"h p="a\"b" q=c#d"#), ["h", r#"p=a"b"#, "q=c"]);
        assert!(shlex("h a='x").is_err());
    }

    #[test]
    fn values_as_python_literals() {
        assert!(matches!(value("2222"), Val::Int(2222)));
        assert!(matches!(value("8080 # a comment"), Val::Int(8080)));
        assert!(matches!(value("'03#x'"), Val::Str(s) if s == "03#x"));
        assert!(matches!(value("10.0.0.1"), Val::Str(s) if s == "10.0.0.1"));
        assert!(matches!(value("admin"), Val::Str(s) if s == "admin"));
        assert!(matches!(value("True"), Val::Other(_)));
    }
}
