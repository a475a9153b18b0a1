//! The fast path of [`super::parse`]: builds the [`Node`] tree straight from the events of
//! `granit-parser`, the parser `serde-saphyr` is built on, without going through serde.
//!
//! It only ever *accepts* a document when it is sure that `serde-saphyr` would accept it and
//! build the very same tree (same kinds, same locations). Whenever it is not sure (a syntax
//! error, an anchor, an alias, a tag, a merge key, a duplicate or non-string key, several
//! documents, a budget close to its limit, a scalar whose type it does not decide itself) it
//! answers `None`, and the caller parses the document again with `serde-saphyr`, which then
//! decides and words any error. Plain scalars are typed with `serde-saphyr`'s rules
//! (YAML 1.1 booleans, `null`/`~`, integers, finite floats); the rare spellings that this
//! module does not decide itself are asked of `serde-saphyr` one scalar at a time.
//!
//! A big text is first offered to [`super::lines`]; otherwise, when it can be cut between two
//! items of the block sequence that makes most of it, its two halves are parsed on two
//! threads and joined (the cut is checked by the halves' own parses).

use std::borrow::Cow;

use serde_saphyr::granit_parser::{Event, Options, Parser, ScalarStyle, Span};

use super::{Loc, Node, NodeKind, NodeKindWrap};

/// The limits the fast path stays within; past any of them, `serde-saphyr` decides.
#[derive(Clone, Copy, Debug)]
pub(super) struct Limits {
    pub(super) max_events: usize,
    pub(super) max_nodes: usize,
    pub(super) max_total_scalar_bytes: usize,
    pub(super) max_depth: usize,
    pub(super) simple_key_max_lookahead: usize,
    pub(super) flow_nesting_limit: usize,
}

impl Limits {
    pub(super) fn from_budget(b: &serde_saphyr::Budget) -> Self {
        Limits {
            max_events: b.max_events,
            max_nodes: b.max_nodes,
            max_total_scalar_bytes: b.max_total_scalar_bytes,
            max_depth: b.max_depth,
            simple_key_max_lookahead: b.simple_key_max_lookahead,
            flow_nesting_limit: b.flow_nesting_limit,
        }
    }

    /// The parser options `serde-saphyr` derives from the same budget.
    fn parser_options(&self) -> Options {
        let mut o = Options::default();
        o.simple_key_max_lookahead = self.simple_key_max_lookahead;
        o.flow_nesting_limit = self.flow_nesting_limit;
        o.block_nesting_limit = o.block_nesting_limit.max(self.max_depth.saturating_add(1));
        o.emit_comments = false;
        o.strict_indentation = false;
        o.bom_inside_document_as_content = false;
        o
    }
}

/// The location `serde-saphyr` gives a node that starts with this event.
fn loc_of(span: &Span) -> Loc {
    let (offset, len) = match (span.start.byte_offset(), span.end.byte_offset()) {
        (Some(s), Some(e)) => {
            let len = e.saturating_sub(s);
            if s <= u32::MAX as usize && len <= u32::MAX as usize {
                (s, len)
            } else {
                (0, 0)
            }
        }
        _ => (0, 0),
    };
    Loc {
        line: span.start.line().min(u32::MAX as usize) as u32,
        col: span.start.col().saturating_add(1).min(u32::MAX as usize) as u32,
        offset,
        len,
    }
}

/// How a plain scalar resolves.
#[derive(Debug, PartialEq)]
enum Plain {
    Kind(NodeKind<'static>),
    Str,
    /// Not decided here: ask `serde-saphyr`.
    Ask,
    /// Leave the whole document to `serde-saphyr`.
    GiveUp,
}

fn yaml11_bool(s: &str) -> Option<bool> {
    const T: [&str; 4] = ["true", "yes", "y", "on"];
    const F: [&str; 4] = ["false", "no", "n", "off"];
    if s.len() > 5 {
        return None;
    }
    if T.iter().any(|t| s.eq_ignore_ascii_case(t)) {
        Some(true)
    } else if F.iter().any(|f| s.eq_ignore_ascii_case(f)) {
        Some(false)
    } else {
        None
    }
}

/// Types a plain scalar the way `serde-saphyr` types an untagged plain scalar for an untyped
/// visitor, for the spellings that are easy to decide; the others are `Ask`.
fn classify_plain(s: &str) -> Plain {
    if matches!(s, "" | "~" | "null" | "Null" | "NULL") {
        return Plain::Kind(NodeKind::Null);
    }
    if let Some(b) = yaml11_bool(s) {
        return Plain::Kind(NodeKind::Bool(b));
    }
    let bytes = s.as_bytes();
    let (Some(&first), Some(&last)) = (bytes.first(), bytes.last()) else {
        return Plain::GiveUp;
    };
    if matches!(first, b' ' | b'\t' | b'\r' | b'\n') || matches!(last, b' ' | b'\t' | b'\r' | b'\n')
    {
        return Plain::GiveUp;
    }
    // Numbers (in any radix, `.inf`, `.nan`, Rust's float syntax) only use these bytes;
    // anything else is text.
    if !bytes
        .iter()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'+' | b'-'))
    {
        return Plain::Str;
    }
    if first.is_ascii_alphabetic() || first == b'_' {
        // Booleans and nulls were handled; Rust's `inf`/`nan` are not finite and not
        // digit-led, so serde-saphyr keeps them as text.
        return Plain::Str;
    }
    if first.is_ascii_digit() {
        if bytes.iter().all(u8::is_ascii_digit) {
            if s == "0" || first != b'0' {
                return match s.parse::<u64>() {
                    Ok(v) => Plain::Kind(
                        i64::try_from(v)
                            .map(NodeKind::Int)
                            .unwrap_or(NodeKind::Float(v as f64)),
                    ),
                    Err(_) => Plain::Ask,
                };
            }
            return Plain::Ask;
        }
        // Two dots make neither an integer nor a float: an IPv4 address, a dotted version.
        if bytes.iter().filter(|&&b| b == b'.').count() >= 2 {
            return Plain::Str;
        }
        return Plain::Ask;
    }
    let second = bytes.get(1).copied();
    let third = bytes.get(2).copied();
    match first {
        b'+' | b'-' => match second {
            Some(d) if d.is_ascii_digit() => Plain::Ask,
            Some(b'.') if third.is_some_and(|c| c.is_ascii_alphanumeric()) => Plain::Ask,
            _ => Plain::Str,
        },
        b'.' => match second {
            Some(c) if c.is_ascii_alphanumeric() => Plain::Ask,
            _ => Plain::Str,
        },
        _ => Plain::Str,
    }
}

/// Asks `serde-saphyr` how it types a plain scalar that `classify_plain` left open. The text
/// only holds `[0-9A-Za-z_.+-]` and starts with a digit, a sign or a dot, so on its own it is
/// the same plain scalar.
fn ask_saphyr(s: &str) -> Option<NodeKind<'static>> {
    match serde_saphyr::from_str::<NodeKindWrap>(s) {
        Ok(NodeKindWrap(k @ (NodeKind::Null | NodeKind::Bool(_) | NodeKind::Int(_)))) => Some(k),
        Ok(NodeKindWrap(k @ (NodeKind::Float(_) | NodeKind::Str(_)))) => Some(k),
        _ => None,
    }
}

/// The kind of an untagged plain scalar.
pub(super) fn plain_kind(value: Cow<'_, str>) -> Option<NodeKind<'_>> {
    match classify_plain(&value) {
        Plain::Kind(k) => Some(k),
        Plain::Str => Some(NodeKind::Str(value)),
        Plain::Ask => ask_saphyr(&value),
        Plain::GiveUp => None,
    }
}

fn scalar_kind(value: Cow<'_, str>, style: ScalarStyle) -> Option<NodeKind<'_>> {
    match style {
        ScalarStyle::Plain => plain_kind(value),
        ScalarStyle::SingleQuoted
        | ScalarStyle::DoubleQuoted
        | ScalarStyle::Literal
        | ScalarStyle::Folded => Some(NodeKind::Str(value)),
    }
}

/// An open collection: its location, where its children start on the shared scratch stacks,
/// and for a map the key waiting for its value.
enum Frame<'a> {
    Seq(Loc, usize),
    Map(Loc, usize, Option<Node<'a>>),
}

/// True when every key is a string, none is a merge key and no two are equal: then
/// `serde-saphyr` sees no duplicate either (it compares integers by value and everything
/// else by text).
pub(super) fn keys_ok(entries: &[(Node<'_>, Node<'_>)]) -> bool {
    fn key<'n>(n: &'n Node<'_>) -> Option<&'n str> {
        match &n.kind {
            NodeKind::Str(s) if s != "<<" => Some(s.as_ref()),
            _ => None,
        }
    }
    if entries.len() <= 12 {
        for (i, (k, _)) in entries.iter().enumerate() {
            let Some(a) = key(k) else { return false };
            if entries[..i].iter().any(|(p, _)| key(p) == Some(a)) {
                return false;
            }
        }
        return true;
    }
    let mut ks: Vec<&str> = Vec::with_capacity(entries.len());
    for (k, _) in entries {
        match key(k) {
            Some(s) => ks.push(s),
            None => return false,
        }
    }
    ks.sort_unstable();
    ks.windows(2).all(|w| w[0] != w[1])
}

/// What one parse counted, for the budget checks of a split parse.
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct Counts {
    pub(super) events: usize,
    pub(super) nodes: usize,
    pub(super) scalar_bytes: usize,
    pub(super) depth: usize,
}

/// Texts at least this long are parsed in two halves on two threads.
const SPLIT_AT_BYTES: usize = 1 << 20;

/// Builds the tree, or `None` when `serde-saphyr` must decide.
pub(super) fn parse<'a>(text: &'a str, limits: &Limits) -> Option<Node<'a>> {
    parse_split(text, limits, SPLIT_AT_BYTES)
}

/// From `min_len` bytes on: by lines when the text has their shape, else in two halves on
/// two threads when it can be cut between two items of the block sequence that makes most
/// of it (an inventory's `hosts`); else, and for smaller texts, in one go.
fn parse_split<'a>(text: &'a str, limits: &Limits, min_len: usize) -> Option<Node<'a>> {
    if text.len() >= min_len
        && let Some(node) = super::lines::parse(text, limits)
    {
        return Some(node);
    }
    if text.len() >= min_len
        && let Some(cut) = cut_point(text)
        && let Some(node) = parse_halves(text, cut, limits)
    {
        return Some(node);
    }
    parse_whole(text, limits).map(|(n, _)| n)
}

/// A line start near the middle where an item of a block sequence begins: among the
/// `- ` lines of a window after the middle, the first of the least indented.
fn cut_point(text: &str) -> Option<(usize, usize)> {
    if text.contains('\r') {
        return None;
    }
    let bytes = text.as_bytes();
    let mid = text.len() / 2;
    let window_end = (mid + (64 << 10)).min(text.len());
    let mut best: Option<(usize, usize)> = None;
    let mut pos = mid + bytes[mid..].iter().position(|&b| b == b'\n')? + 1;
    while pos < window_end {
        let line = &bytes[pos..];
        let indent = line.iter().take_while(|&&b| b == b' ').count();
        if line.get(indent) == Some(&b'-')
            && line.get(indent + 1) == Some(&b' ')
            && best.is_none_or(|(_, i)| indent < i)
        {
            best = Some((pos, indent));
        }
        match line.iter().position(|&b| b == b'\n') {
            Some(n) => pos += n + 1,
            None => break,
        }
    }
    best
}

/// Moves the locations of a tree parsed from `text[offset..]` (which starts a line) to
/// where they are in the whole text.
fn shift(node: &mut Node<'_>, lines: u32, offset: usize) {
    let mut stack: Vec<&mut Node<'_>> = vec![node];
    while let Some(n) = stack.pop() {
        n.loc.line = n.loc.line.saturating_add(lines);
        n.loc.offset += offset;
        if n.loc.offset > u32::MAX as usize {
            (n.loc.offset, n.loc.len) = (0, 0);
        }
        match &mut n.kind {
            NodeKind::Seq(items) => stack.extend(items.iter_mut()),
            NodeKind::Map(entries) => {
                for (k, v) in entries.iter_mut() {
                    stack.push(k);
                    stack.push(v);
                }
            }
            _ => {}
        }
    }
}

fn parse_halves<'a>(
    text: &'a str,
    (cut, indent): (usize, usize),
    limits: &Limits,
) -> Option<Node<'a>> {
    let (head, tail) = text.split_at(cut);
    let lines = u32::try_from(head.bytes().filter(|&b| b == b'\n').count()).ok()?;
    // The tail's locations are moved to where they are in the whole text on its own thread.
    let tail_parse = || {
        let (mut rest, counts) = parse_whole(tail, limits)?;
        shift(&mut rest, lines, cut);
        Some((rest, counts))
    };
    let (second, first) = std::thread::scope(|s| {
        let second = s.spawn(tail_parse);
        let first = parse_whole(head, limits);
        (
            second
                .join()
                .unwrap_or_else(|p| std::panic::resume_unwind(p)),
            first,
        )
    });
    let ((mut root, a), (rest, b)) = (first?, second?);
    let total = Counts {
        events: a.events + b.events,
        nodes: a.nodes + b.nodes,
        scalar_bytes: a.scalar_bytes + b.scalar_bytes,
        depth: a.depth.max(b.depth + 2),
    };
    if total.events > limits.max_events
        || total.nodes > limits.max_nodes
        || total.scalar_bytes > limits.max_total_scalar_bytes
        || total.depth > limits.max_depth
    {
        return None;
    }
    // The tail starts with `-` at the cut's indentation, so its root is a block sequence,
    // and any line less indented after its items would have failed its parse.
    let NodeKind::Seq(mut tail_items) = rest.kind else {
        return None;
    };
    // The head must be a map whose last value is a block sequence at that indentation,
    // which the tail's items then continue: at the cut, every deeper block of the head's
    // last item is closed by the less indented `-`, and an unclosed flow collection or
    // quoted scalar would have failed the head's parse. The sequence starts on a line of its
    // own (after its key's), so that line's indentation is the sequence's.
    let items = last_block_seq(&mut root, head, indent, b" \n")?;
    items.append(&mut tail_items);
    Some(root)
}

/// The items of the block sequence that is `root`'s last map value, when `head` starts
/// that sequence on a line of its own at `indent`: a `-` there followed by one of `after`.
pub(super) fn last_block_seq<'r, 'a>(
    root: &'r mut Node<'a>,
    head: &str,
    indent: usize,
    after: &[u8],
) -> Option<&'r mut Vec<Node<'a>>> {
    let NodeKind::Map(entries) = &mut root.kind else {
        return None;
    };
    let (_, last) = entries.last_mut()?;
    let line_start = head[..last.loc.offset.min(head.len())]
        .rfind('\n')
        .map_or(0, |i| i + 1);
    let line = &head.as_bytes()[line_start..];
    if line.iter().take_while(|&&b| b == b' ').count() != indent
        || line.get(indent) != Some(&b'-')
        || !line.get(indent + 1).is_some_and(|b| after.contains(b))
    {
        return None;
    }
    match &mut last.kind {
        NodeKind::Seq(items) => Some(items),
        _ => None,
    }
}

pub(super) fn parse_whole<'a>(text: &'a str, limits: &Limits) -> Option<(Node<'a>, Counts)> {
    let mut parser = Parser::new_from_str_with_options(text, limits.parser_options());
    let mut stack: Vec<Frame<'a>> = Vec::new();
    // Children of the open collections, moved into an exactly sized `Vec` when their
    // collection ends (no growing `Vec` per collection).
    let mut items: Vec<Node<'a>> = Vec::new();
    let mut entries: Vec<(Node<'a>, Node<'a>)> = Vec::new();
    let mut root: Option<Node<'a>> = None;
    let (mut events, mut nodes, mut scalar_bytes, mut documents) = (0usize, 0usize, 0usize, 0usize);
    let mut max_depth = 0usize;
    while let Some(item) = parser.next_event() {
        let (ev, span) = item.ok()?;
        events += 1;
        if events > limits.max_events {
            return None;
        }
        let done = match ev {
            Event::StreamStart | Event::StreamEnd | Event::DocumentEnd => continue,
            Event::DocumentStart(explicit, version) => {
                documents += 1;
                if documents > 1 || explicit || version.is_some() {
                    return None;
                }
                continue;
            }
            Event::Scalar(value, style, anchor, tag) => {
                if anchor != 0 || tag.is_some() {
                    return None;
                }
                nodes += 1;
                scalar_bytes = scalar_bytes.saturating_add(value.len());
                if nodes > limits.max_nodes || scalar_bytes > limits.max_total_scalar_bytes {
                    return None;
                }
                Node {
                    kind: scalar_kind(value, style)?,
                    loc: loc_of(&span),
                }
            }
            Event::SequenceStart(_, anchor, ref tag) | Event::MappingStart(_, anchor, ref tag) => {
                if anchor != 0 || tag.is_some() {
                    return None;
                }
                nodes += 1;
                if nodes > limits.max_nodes || stack.len() + 1 > limits.max_depth {
                    return None;
                }
                let loc = loc_of(&span);
                max_depth = max_depth.max(stack.len() + 1);
                stack.push(if matches!(ev, Event::SequenceStart(..)) {
                    Frame::Seq(loc, items.len())
                } else {
                    Frame::Map(loc, entries.len(), None)
                });
                continue;
            }
            Event::SequenceEnd => match stack.pop()? {
                Frame::Seq(loc, start) => Node {
                    kind: NodeKind::Seq(items.drain(start..).collect()),
                    loc,
                },
                Frame::Map(..) => return None,
            },
            Event::MappingEnd => match stack.pop()? {
                Frame::Map(loc, start, None) if keys_ok(&entries[start..]) => Node {
                    kind: NodeKind::Map(entries.drain(start..).collect()),
                    loc,
                },
                _ => return None,
            },
            _ => return None,
        };
        match stack.last_mut() {
            None => {
                if root.is_some() {
                    return None;
                }
                root = Some(done);
            }
            Some(Frame::Seq(..)) => items.push(done),
            Some(Frame::Map(_, _, pending)) => match pending.take() {
                None => *pending = Some(done),
                Some(k) => entries.push((k, done)),
            },
        }
    }
    if !stack.is_empty() {
        return None;
    }
    Some((
        root?,
        Counts {
            events,
            nodes,
            scalar_bytes,
            depth: max_depth,
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::super::{parse_with_saphyr, tests::budget_for};
    use super::*;

    /// The fast path either gives up or builds exactly what `serde-saphyr` builds.
    pub(crate) fn agrees(text: &str) -> bool {
        let budget = budget_for(text);
        let fast = parse(text, &Limits::from_budget(&budget));
        let slow = parse_with_saphyr(text, budget);
        match (&fast, &slow) {
            (Some(f), Ok(s)) => assert_eq!(f, s, "{text:?}"),
            (Some(f), Err(e)) => {
                panic!("{text:?}: fast path accepts {f:?}, serde-saphyr says {e:?}")
            }
            (None, _) => {}
        }
        fast.is_some()
    }

    #[test]
    fn plain_scalars_are_typed_like_serde_saphyr() {
        let cases = [
            "a",
            "yes",
            "No",
            "ON",
            "y",
            "n",
            "true",
            "False",
            "null",
            "Null",
            "NULL",
            "~",
            "nul",
            "0",
            "1",
            "007",
            "010",
            "22",
            "4119",
            "18446744073709551615",
            "18446744073709551616",
            "9223372036854775807",
            "9223372036854775808",
            "-1",
            "+1",
            "-0",
            "+0",
            "-010",
            "0x1F",
            "0X1F",
            "0o17",
            "0O17",
            "0b101",
            "0B101",
            "1_000",
            "1__0",
            "_1",
            "1.5",
            "1.",
            ".5",
            "-.5",
            "+.5",
            "1e3",
            "1E3",
            "1e-3",
            "-1e+3",
            "20.0",
            "20.0.463",
            "10.0.0.1",
            "20.0.0-3445",
            "1-2",
            "1:30",
            "1 2",
            "inf",
            "-inf",
            "+inf",
            "nan",
            "NaN",
            "-nan",
            "infinity",
            "e5",
            "-e5",
            "-",
            "+",
            "--5",
            "-.",
            ".",
            "..",
            "...",
            ".x",
            "x.5",
            "0x",
            "0xg",
            "1e",
            "1e+",
            "5e-324",
            "1.7976931348623157e308",
            "1__000",
            "0_1",
            "-_1",
            "1.2.3",
            "-1.2.3",
            "+-1",
            "0.0",
            "-0.0",
            "1e400",
            ".inf",
            "-.inf",
            ".nan",
            "+.nan",
            "-.NaN",
            ".Inf",
            "'x'",
            "\"1\"",
            "x y",
            "a#b",
            "-x",
            "é",
            "1é",
            "0x_1",
            "0o",
            "1_",
            "+0x10",
            "-0b1",
        ];
        for c in cases {
            agrees(&format!("v: {c}\n"));
            agrees(&format!("- {c}\n"));
            agrees(&format!("v: [{c}, x]\n"));
            agrees(&format!("{{ v: {c} }}\n"));
        }
    }

    fn yaml_files(dir: &std::path::Path, out: &mut Vec<std::path::PathBuf>) {
        let Ok(rd) = std::fs::read_dir(dir) else {
            return;
        };
        for e in rd.flatten() {
            let p = e.path();
            let name = e.file_name();
            if p.is_dir() && name != "target" && name != ".git" {
                yaml_files(&p, out);
            } else if p.extension().is_some_and(|x| x == "yaml" || x == "yml") {
                out.push(p);
            }
        }
    }

    /// Every YAML file of the repository (examples, playbooks, test fixtures).
    #[test]
    fn repository_files_agree() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        let mut files = Vec::new();
        yaml_files(&root, &mut files);
        assert!(files.len() > 10, "found {} YAML files", files.len());
        let mut accepted = 0;
        for f in &files {
            let text = std::fs::read_to_string(f).expect("readable");
            if text.trim().is_empty() {
                continue;
            }
            if agrees(&text) {
                accepted += 1;
            }
        }
        eprintln!("fast path accepted {accepted} of {} files", files.len());
        // Nearly every real file takes the fast path (the bad ones give up).
        assert!(
            accepted * 10 >= files.len() * 8,
            "{accepted} of {}",
            files.len()
        );
    }

    /// An inventory-like text in one of several layouts.
    fn fleet(n: usize, layout: u32) -> String {
        let mut t = String::from(
            "# a fleet\nmanager: { name: dsm01, address: 10.0.0.5, version: \"20.0.463\" }\n",
        );
        if layout == 3 {
            t.push_str("hosts:\n");
        } else {
            t.push_str("relay_groups:\n  - { name: rg0 }\nhosts:\n");
        }
        for i in 0..n {
            let ind = if layout == 2 { "" } else { "  " };
            match (layout, i % 5) {
                (0 | 2 | 3, 0) => t.push_str(&format!(
                    "{ind}- {{ name: h{i}, address: 10.0.{}.{}, platform: linux, agent_version: \"20.0.0-{i}\", groups: [a, b] }}\n",
                    i / 250,
                    i % 250
                )),
                (0 | 2 | 3, 1) => t.push_str(&format!(
                    "{ind}- name: h{i}\n{ind}  port: {}\n{ind}  groups:\n{ind}  - g1\n{ind}  - g2\n{ind}  vars: {{ k: v{i} }}\n",
                    i % 65536
                )),
                (_, 2) => t.push_str(&format!(
                    "{ind}- name: h{i}\n{ind}  note: |\n{ind}    - not an item\n{ind}    text {i}\n"
                )),
                (_, 3) => t.push_str(&format!("{ind}# comment {i}\n{ind}- [x{i}, 1.5, yes, ~]\n")),
                _ => t.push_str(&format!("{ind}- \"quoted {i}\"\n{ind}- plain {i} text\n")),
            }
        }
        if layout == 1 {
            t.push_str("settings: { direct_download_when_relays_unavailable: true }\n");
        }
        t
    }

    fn check_split(text: &str, expect_split: bool) {
        let budget = budget_for(text);
        let limits = Limits::from_budget(&budget);
        let cut = cut_point(text);
        let halves = cut.and_then(|c| parse_halves(text, c, &limits));
        if text.len() > 1000 {
            assert_eq!(
                halves.is_some(),
                expect_split,
                "split of {:?}...",
                &text[..80]
            );
        }
        let whole = parse_whole(text, &limits).map(|(n, _)| n);
        let slow = parse_with_saphyr(text, budget).ok();
        assert!(whole.is_some() && slow.is_some());
        if let Some(h) = &halves {
            assert!(Some(h) == whole.as_ref(), "halves differ from the whole");
        }
        assert!(whole == slow, "fast and slow differ");
        assert!(parse_split(text, &limits, 0) == slow);
    }

    #[test]
    fn a_text_cut_in_two_parses_like_the_whole() {
        for n in [4, 5, 37, 400] {
            check_split(&fleet(n, 0), true);
            check_split(&fleet(n, 2), true);
            check_split(&fleet(n, 3), true);
            // Another top-level key after the list: the tail's parse fails, no split.
            check_split(&fleet(n, 1), false);
        }
        // A flow sequence cannot be cut.
        let flow: String = (0..200).map(|i| format!("  x{i},\n")).collect();
        let text = format!("hosts: [\n{flow}]\n");
        check_split(&text, false);
        // Nor a quoted scalar spanning the cut.
        let lines: String = (0..200).map(|i| format!("  - x{i}\n")).collect();
        check_split(&format!("hosts:\n  - \"a\n{lines}\"\n"), false);
    }

    /// Random edits of inventory-like texts in several layouts: whichever path reads them
    /// (split, whole, by events, by lines), the fast paths never disagree with `serde-saphyr`
    /// and never panic.
    #[test]
    fn mutated_texts_parse_like_serde_saphyr() {
        let noise = [
            " ", ":", ",", "{", "}", "[", "]", "\"", "\\", "#", "-", ".", "é", "\t", "0", "x", "'",
            "&a ", "*a", "!!str ", "? ", "|", ">", "%", "@", "~", "\n", "\n  ", "\n- ", "---\n",
            "\r", "\u{feff}", "1e999", "<<: ",
        ];
        let mut rng: rand::rngs::ChaCha8Rng =
            rand::SeedableRng::seed_from_u64(0x853c_49e6_748f_ea9b);
        let mut next = move || rand::RngExt::random::<u64>(&mut rng);
        let mut accepted = 0;
        let rounds = 400;
        for round in 0..rounds {
            let mut text = fleet(40, (round % 4) as u32);
            for _ in 0..1 + next() % 3 {
                let at = (next() % text.len() as u64) as usize;
                let what = noise[(next() % noise.len() as u64) as usize];
                if !text.is_char_boundary(at) {
                    continue;
                }
                if next() % 2 == 0 {
                    text.insert_str(at, what);
                } else if text.is_char_boundary(at + 1) {
                    text.replace_range(at..at + 1, what);
                }
            }
            let budget = budget_for(&text);
            let limits = Limits::from_budget(&budget);
            let slow = parse_with_saphyr(&text, budget).ok();
            let fast = [
                parse_split(&text, &limits, 0),
                parse_whole(&text, &limits).map(|(n, _)| n),
            ];
            for f in fast.iter().flatten() {
                accepted += 1;
                assert!(Some(f) == slow.as_ref(), "fast and slow differ on {text:?}");
            }
        }
        assert!(accepted > rounds / 4, "{accepted}");
    }
}
