//! The fastest path of [`super::parse`], for the shape big inventories take: a block sequence
//! whose items are one-line flow mappings, such as
//!
//! ```yaml
//!   - { name: web-01, address: 10.0.1.21, platform: linux, groups: [web, canary] }
//! ```
//!
//! Such a line is read by hand when it is written in a deliberately small subset of YAML:
//! ASCII only; flow mappings and flow sequences; keys and values that are plain scalars made of
//! `[A-Za-z0-9_./-]` (not starting with `-`, `.` or `/`) or double-quoted scalars without
//! escapes; `key: value` with a space after the colon; no comments, tabs, anchors, tags,
//! empty values or trailing commas. Anything else, anywhere in the run of lines, and the whole
//! text goes back to the event-level path (which in turn leaves every doubt to
//! `serde-saphyr`). The lines before the run, and the run's first line, are parsed by
//! `granit-parser`, which checks that the run continues a block sequence that is the last
//! value of the document's top-level map; values are typed exactly as the event-level path
//! types them, and locations are the ones `serde-saphyr` reports.

use std::borrow::Cow;

use super::events::{Counts, Limits, keys_ok, last_block_seq, parse_whole, plain_kind};
use super::{Loc, Node, NodeKind};

/// Below this share of the text, the run is not worth it.
const MIN_RUN_SHARE: usize = 2;

/// Parses `text` when most of it is a final run of one-line flow items; `None` otherwise.
pub(super) fn parse<'a>(text: &'a str, limits: &Limits) -> Option<Node<'a>> {
    if text.contains('\r') {
        return None;
    }
    let (run_start, indent) = final_run(text)?;
    // The head keeps the run's first line: its parse proves where the run belongs.
    let first_end = run_start
        + text[run_start..]
            .find('\n')
            .map_or(text.len() - run_start, |i| i + 1);
    if first_end >= text.len() || (text.len() - first_end) * MIN_RUN_SHARE < text.len() {
        return None;
    }
    let (head, rest) = text.split_at(first_end);
    // The run's first line is the head's last; the rest starts on the next one.
    let head_lines = u32::try_from(head.bytes().filter(|&b| b == b'\n').count()).ok()?;
    let first_line = head_lines + 1;
    // The rest is read in two halves, on two threads, cut at a line start.
    let mid = rest.len() / 2;
    let cut = mid
        + rest.as_bytes()[mid..]
            .iter()
            .position(|&c| c == b'\n')
            .map_or(rest.len() - mid, |i| i + 1);
    let (a, b) = rest.split_at(cut);
    let b_first_line =
        first_line + u32::try_from(a.bytes().filter(|&c| c == b'\n').count()).ok()?;
    let ((head_tree, head_counts), items_a, items_b) = {
        let (items_b, (head, items_a)) = std::thread::scope(|s| {
            let items_b =
                s.spawn(|| read_items(b, first_end + cut, b_first_line, indent, limits.max_depth));
            let head = parse_whole(head, limits);
            let items_a = read_items(a, first_end, first_line, indent, limits.max_depth);
            (
                items_b
                    .join()
                    .unwrap_or_else(|p| std::panic::resume_unwind(p)),
                (head, items_a),
            )
        });
        (head?, items_a?, items_b?)
    };
    let mut root = head_tree;
    let total = Counts {
        events: head_counts.events + items_a.1.events + items_b.1.events,
        nodes: head_counts.nodes + items_a.1.nodes + items_b.1.nodes,
        scalar_bytes: head_counts.scalar_bytes + items_a.1.scalar_bytes + items_b.1.scalar_bytes,
        depth: head_counts
            .depth
            .max(items_a.1.depth + 2)
            .max(items_b.1.depth + 2),
    };
    if total.events > limits.max_events
        || total.nodes > limits.max_nodes
        || total.scalar_bytes > limits.max_total_scalar_bytes
        || total.depth > limits.max_depth
    {
        return None;
    }
    // The head's root must be a map whose last value is the block sequence the run's first
    // line is an item of (the run's first line is the head's last line, and the sequence
    // starts on a line of its own at the run's indentation).
    let items = last_block_seq(&mut root, head, indent, b" ")?;
    // Its last item is the run's first line, read by the parser.
    if items.last().map(|n| n.loc.line) != Some(head_lines) {
        return None;
    }
    let (mut more_a, mut more_b) = (items_a.0, items_b.0);
    items.reserve(more_a.len() + more_b.len());
    items.append(&mut more_a);
    items.append(&mut more_b);
    Some(root)
}

/// The start of the final run of lines that look like one-line flow items at one
/// indentation (`<indent>- {...}`), and that indentation.
fn final_run(text: &str) -> Option<(usize, usize)> {
    let bytes = text.as_bytes();
    let mut end = text.len() - usize::from(bytes.last() == Some(&b'\n'));
    let mut run: Option<(usize, usize)> = None;
    loop {
        let start = text[..end].rfind('\n').map_or(0, |i| i + 1);
        let line = &bytes[start..end];
        let n = line.iter().take_while(|&&c| c == b' ').count();
        let looks = line.get(n) == Some(&b'-')
            && line.get(n + 1) == Some(&b' ')
            && line.last() == Some(&b'}')
            && run.is_none_or(|(_, i)| i == n);
        if !looks {
            break;
        }
        run = Some((start, n));
        if start == 0 {
            break;
        }
        end = start - 1;
    }
    run
}

/// Reads every line of `text` (which starts a line, at byte `offset` and line `line` of the
/// whole text) as an item; `None` at the first line outside the subset.
fn read_items(
    text: &str,
    offset: usize,
    line: u32,
    indent: usize,
    max_depth: usize,
) -> Option<(Vec<Node<'_>>, Counts)> {
    let mut out = Vec::with_capacity(text.len() / 80 + 1);
    let mut r = Reader {
        text: text.as_bytes(),
        src: text,
        pos: 0,
        line_start: 0,
        line,
        offset,
        counts: Counts::default(),
        max_depth,
        entries: Vec::new(),
        items: Vec::new(),
    };
    while r.pos < r.text.len() {
        let item = r.item_line(indent)?;
        out.push(item);
        r.line += 1;
    }
    Some((out, r.counts))
}

struct Reader<'a> {
    text: &'a [u8],
    src: &'a str,
    pos: usize,
    line_start: usize,
    line: u32,
    /// Of `text` in the whole text.
    offset: usize,
    counts: Counts,
    /// Nesting past this (counted from the item) is left to the other paths, and bounds the
    /// recursion.
    max_depth: usize,
    /// Scratch stacks for the children of open collections.
    entries: Vec<(Node<'a>, Node<'a>)>,
    items: Vec<Node<'a>>,
}

impl<'a> Reader<'a> {
    fn peek(&self) -> Option<u8> {
        self.text.get(self.pos).copied()
    }

    fn spaces(&mut self) -> usize {
        let n = self.text[self.pos..]
            .iter()
            .take_while(|&&c| c == b' ')
            .count();
        self.pos += n;
        n
    }

    fn loc(&self, start: usize, len: usize) -> Loc {
        let offset = self.offset + start;
        // Past 4 GiB, `serde-saphyr` has no byte offsets.
        let (offset, len) = if offset > u32::MAX as usize {
            (0, 0)
        } else {
            (offset, len)
        };
        Loc {
            line: self.line,
            col: (start - self.line_start + 1) as u32,
            offset,
            len,
        }
    }

    fn node(&mut self) {
        self.counts.nodes += 1;
        self.counts.events += 1;
    }

    /// `<indent>- { ... }\n` (or the end of the text).
    fn item_line(&mut self, indent: usize) -> Option<Node<'a>> {
        self.line_start = self.pos;
        let end = self.text[self.pos..]
            .iter()
            .position(|&c| c == b'\n')
            .map_or(self.text.len(), |i| self.pos + i);
        if !self.text[self.pos..end].is_ascii() {
            return None;
        }
        if self.spaces() != indent || self.peek() != Some(b'-') {
            return None;
        }
        self.pos += 1;
        if self.spaces() == 0 || self.peek() != Some(b'{') {
            return None;
        }
        let item = self.map(1)?;
        self.spaces();
        if self.pos != end {
            return None;
        }
        self.pos = (end + 1).min(self.text.len());
        Some(item)
    }

    /// Steps over the `{` or `[` that opens a collection at `depth` and counts it; `None`
    /// past the depth budget (the slow path decides then).
    fn open(&mut self, depth: usize) -> Option<Loc> {
        if depth > self.max_depth {
            return None;
        }
        let loc = self.loc(self.pos, 1);
        self.pos += 1;
        self.node();
        self.counts.events += 1;
        self.counts.depth = self.counts.depth.max(depth);
        Some(loc)
    }

    /// A flow mapping at `{`; `depth` counts from the item.
    fn map(&mut self, depth: usize) -> Option<Node<'a>> {
        let loc = self.open(depth)?;
        let from = self.entries.len();
        self.spaces();
        if self.peek() == Some(b'}') {
            self.pos += 1;
        } else {
            loop {
                let key = self.scalar()?;
                if self.peek() != Some(b':') {
                    return None;
                }
                self.pos += 1;
                if self.spaces() == 0 {
                    return None;
                }
                let value = self.value(depth)?;
                self.entries.push((key, value));
                self.spaces();
                match self.peek() {
                    Some(b',') => {
                        self.pos += 1;
                        self.spaces();
                        if matches!(self.peek(), Some(b'}' | b',')) {
                            return None;
                        }
                    }
                    Some(b'}') => {
                        self.pos += 1;
                        break;
                    }
                    _ => return None,
                }
            }
        }
        if !keys_ok(&self.entries[from..]) {
            return None;
        }
        Some(Node {
            kind: NodeKind::Map(self.entries.drain(from..).collect()),
            loc,
        })
    }

    /// A flow sequence at `[`.
    fn seq(&mut self, depth: usize) -> Option<Node<'a>> {
        let loc = self.open(depth)?;
        let from = self.items.len();
        self.spaces();
        if self.peek() == Some(b']') {
            self.pos += 1;
        } else {
            loop {
                let v = self.value(depth)?;
                self.items.push(v);
                self.spaces();
                match self.peek() {
                    Some(b',') => {
                        self.pos += 1;
                        self.spaces();
                        if matches!(self.peek(), Some(b']' | b',')) {
                            return None;
                        }
                    }
                    Some(b']') => {
                        self.pos += 1;
                        break;
                    }
                    _ => return None,
                }
            }
        }
        Some(Node {
            kind: NodeKind::Seq(self.items.drain(from..).collect()),
            loc,
        })
    }

    fn value(&mut self, depth: usize) -> Option<Node<'a>> {
        match self.peek()? {
            b'{' => self.map(depth + 1),
            b'[' => self.seq(depth + 1),
            _ => self.scalar(),
        }
    }

    /// A plain scalar of `[A-Za-z0-9_./-]` starting with `[A-Za-z0-9_]`, or a double-quoted
    /// scalar of printable ASCII without `\`.
    fn scalar(&mut self) -> Option<Node<'a>> {
        let start = self.pos;
        let first = self.peek()?;
        if first == b'"' {
            let len = self.text[start + 1..]
                .iter()
                .position(|&c| c == b'"' || c == b'\\' || !(0x20..0x7f).contains(&c))?;
            if self.text[start + 1 + len] != b'"' {
                return None;
            }
            self.pos = start + len + 2;
            let value = &self.src[start + 1..start + 1 + len];
            self.node();
            self.counts.scalar_bytes += value.len();
            return Some(Node {
                kind: NodeKind::Str(Cow::Borrowed(value)),
                loc: self.loc(start, len + 2),
            });
        }
        if !(first.is_ascii_alphanumeric() || first == b'_') {
            return None;
        }
        let len = self.text[start..]
            .iter()
            .take_while(|&&c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'.' | b'/' | b'-'))
            .count();
        // What follows must end the scalar in flow context without doubt.
        if !matches!(
            self.text.get(start + len),
            Some(b' ' | b',' | b'}' | b']' | b':')
        ) {
            return None;
        }
        self.pos = start + len;
        let value = &self.src[start..start + len];
        self.node();
        self.counts.scalar_bytes += value.len();
        Some(Node {
            kind: plain_kind(Cow::Borrowed(value))?,
            loc: self.loc(start, len),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::super::{parse_with_saphyr, tests::budget_for};
    use super::*;

    /// A seeded generator: the same documents on every run.
    struct Rng(rand::rngs::ChaCha8Rng);

    impl Rng {
        fn new(seed: u64) -> Rng {
            Rng(rand::SeedableRng::seed_from_u64(seed))
        }
        fn next(&mut self) -> u64 {
            rand::RngExt::random(&mut self.0)
        }
        fn pick<'s>(&mut self, xs: &[&'s str]) -> &'s str {
            xs[(self.next() % xs.len() as u64) as usize]
        }
        fn below(&mut self, n: u64) -> u64 {
            self.next() % n
        }
    }

    const WORDS: &[&str] = &[
        "web-01",
        "relay-000001",
        "linux",
        "windows",
        "rg0001",
        "a",
        "x_y",
        "a.b",
        "a/b",
        "10.0.0.1",
        "20.0.463",
        "20.0",
        "22",
        "0",
        "007",
        "010",
        "1e3",
        "1.5",
        "0x1F",
        "0o17",
        "0b1",
        "1_000",
        "yes",
        "No",
        "true",
        "False",
        "on",
        "OFF",
        "y",
        "n",
        "null",
        "Null",
        "NULL",
        "nan",
        "inf",
        "18446744073709551616",
        "9223372036854775808",
        "1.",
        "5e-1",
        "e5",
        "b-",
        "c.",
        "_",
        "99999999999999999999e999",
    ];
    const QUOTED: &[&str] = &[
        "\"20.0.0-5995\"",
        "\"x\"",
        "\"\"",
        "\"a b\"",
        "\"# not a comment\"",
        "\"{[,]}\"",
        "\"null\"",
        "\"22\"",
        "\"it's\"",
        "\"a: b\"",
    ];
    const KEYS: &[&str] = &[
        "name",
        "address",
        "platform",
        "agent_version",
        "relay",
        "relay_group",
        "groups",
        "vars",
        "port",
        "\"quoted\"",
        "k",
        "certs",
        "os",
        "1",
        "true",
        "null",
        "<<",
    ];

    fn value(r: &mut Rng, depth: u32) -> String {
        match r.below(if depth > 2 { 6 } else { 9 }) {
            0..=3 => r.pick(WORDS).to_owned(),
            4 | 5 => r.pick(QUOTED).to_owned(),
            6 => {
                let n = r.below(4);
                let items: Vec<String> = (0..n).map(|_| value(r, depth + 1)).collect();
                format!("[{}]", items.join(r.pick(&[", ", ",", " , "])))
            }
            _ => map(r, depth + 1),
        }
    }

    fn map(r: &mut Rng, depth: u32) -> String {
        let n = r.below(if depth == 0 { 8 } else { 3 });
        let mut keys: Vec<&str> = Vec::new();
        for _ in 0..n {
            // Mostly distinct string keys; now and then a duplicate or a key of another type.
            let k = if r.below(40) == 0 {
                r.pick(KEYS)
            } else {
                let k = r.pick(&KEYS[..12]);
                if keys.contains(&k) {
                    continue;
                }
                k
            };
            keys.push(k);
        }
        let entries: Vec<String> = keys
            .iter()
            .map(|k| format!("{k}:{}{}", r.pick(&[" ", "  "]), value(r, depth)))
            .collect();
        let sp = r.pick(&[" ", "", "  "]);
        format!("{{{sp}{}{sp}}}", entries.join(r.pick(&[", ", ",", " , "])))
    }

    /// An inventory-like text whose hosts are one-line flow items.
    fn doc(r: &mut Rng, items: &[String], indent: usize) -> String {
        let mut t = String::from("# fleet\nmanager: { name: dsm01, version: \"20.0.463\" }\n");
        if r.below(2) == 0 {
            t.push_str("relay_groups:\n  - { name: rg0 }\n");
        }
        t.push_str("hosts:\n");
        for it in items {
            t.push_str(&format!("{}- {it}\n", " ".repeat(indent)));
        }
        t
    }

    /// Whenever the line reader accepts a text, `serde-saphyr` builds the very same tree.
    fn agrees(text: &str) -> bool {
        let budget = budget_for(text);
        let fast = parse(text, &Limits::from_budget(&budget));
        if let Some(f) = &fast {
            match parse_with_saphyr(text, budget) {
                Ok(s) => assert!(*f == s, "trees differ for {text}"),
                Err(e) => panic!("lines accept, serde-saphyr says {e:?}: {text}"),
            }
        }
        fast.is_some()
    }

    #[test]
    fn generated_items_read_like_serde_saphyr() {
        let mut r = Rng::new(0x9e37_79b9_7f4a_7c15);
        let mut accepted = 0;
        for round in 0..300 {
            let n = 2 + r.below(12) as usize;
            let items: Vec<String> = (0..n).map(|_| map(&mut r, 0)).collect();
            let indent = [0, 2, 4][round % 3];
            if agrees(&doc(&mut r, &items, indent)) {
                accepted += 1;
            }
        }
        eprintln!("generated: {accepted} of 300 read by hand");
        // Most documents have some line outside the subset; enough are read by hand.
        assert!(accepted > 30, "{accepted}");
    }

    #[test]
    fn mutated_items_read_like_serde_saphyr() {
        let mut r = Rng::new(0x2545_f491_4f6c_dd1d);
        let noise = [
            " ", ":", ",", "{", "}", "[", "]", "\"", "\\", "#", "-", ".", "é", "\t", "0", "x", "'",
            "&a ", "*a", "!!str ", "? ", "|", ">", "%", "@", "`", "~", "\n", "\n  ", "\n- ",
        ];
        let mut accepted = 0;
        for _ in 0..1500 {
            let items: Vec<String> = (0..6)
                .map(|_| {
                    format!(
                        "{{ name: h{}, address: 10.0.0.{}, agent_version: \"20.0.0-1\", groups: [a, b], vars: {{ k: v }} }}",
                        r.below(1000),
                        r.below(250)
                    )
                })
                .collect();
            let mut text = doc(&mut r, &items, 2);
            // Mutate a byte or two in the items.
            let start = text.find("hosts:\n").unwrap_or(0) + 7;
            for _ in 0..1 + r.below(2) {
                let at = start + r.below((text.len() - start) as u64) as usize;
                if text.is_char_boundary(at) {
                    let what = noise[r.below(noise.len() as u64) as usize];
                    if r.below(2) == 0 {
                        text.insert_str(at, what);
                    } else if at < text.len() && text.is_char_boundary(at + 1) {
                        text.replace_range(at..at + 1, what);
                    }
                }
            }
            if agrees(&text) {
                accepted += 1;
            }
        }
        eprintln!("mutated: {accepted} of 1500 read by hand");
        assert!(accepted > 50, "{accepted}");
    }

    #[test]
    fn the_shape_of_a_big_inventory_is_read_by_hand() {
        let mut items = Vec::new();
        for i in 0..500 {
            items.push(format!(
                "{{ name: agent-{i:06}, address: 10.0.{}.{}, platform: linux, agent_version: \"20.0.0-5995\", relay_group: rg0000, groups: [rg0000], vars: {{ certs: present }} }}",
                i / 250,
                i % 250
            ));
        }
        let mut r = Rng::new(7);
        for indent in [0, 2] {
            let text = doc(&mut r, &items, indent);
            assert!(agrees(&text), "not read by hand");
        }
        // Not at the end of the document: left to the other paths.
        let text = format!("{}settings: {{}}\n", doc(&mut r, &items, 2));
        assert!(!agrees(&text));
    }

    #[test]
    fn deep_nesting_is_left_to_the_parser() {
        let deep = format!("{}{}", "{ a: ".repeat(100_000), "}".repeat(100_000));
        let items: Vec<String> = (0..50).map(|_| "{ a: b }".to_owned()).collect();
        let mut r = Rng::new(3);
        let mut text = doc(&mut r, &items, 2);
        text.push_str(&format!("  - {deep}\n"));
        let budget = budget_for(&text);
        assert!(parse(&text, &Limits::from_budget(&budget)).is_none());
    }
}
