//! The only module that knows YAML (with its submodules `events` and `lines`).
//!
//! The text is parsed into a [`Node`] tree in which every value keeps its location. Typed
//! config structs are then deserialized from that tree (with `deny_unknown_fields`) one list
//! item at a time, so a mistake in one host does not hide the mistakes in the next: every
//! problem of a file is reported in one go. Should the YAML crate change, only this module
//! changes.
//!
//! `serde-saphyr` is the reference: it builds the tree through serde, enforces the budgets
//! (aliases, depth, size) and words every error. Because that costs seconds on a
//! 100,000-host inventory, two faster paths come first, and each gives up (answers `None`)
//! whenever it is not sure to build the very tree `serde-saphyr` would build:
//!
//! - `lines`: a big final run of one-line flow items (`  - { name: a, ... }`), the shape
//!   of generated inventories, read by hand in a small subset of YAML;
//! - `events`: any document, from the events of `granit-parser` (the parser `serde-saphyr`
//!   is built on), big ones in two halves on two threads.
//!
//! Anything the fast paths do not accept (a syntax error, an anchor, a tag, a duplicate key,
//! a budget close to its limit...) is parsed again by `serde-saphyr`, so errors, their
//! messages and their locations are exactly those of `serde-saphyr`.

use std::borrow::Cow;
use std::fmt;

use serde::Deserialize;
use serde::de::{
    self, DeserializeSeed, Error as _, IntoDeserializer, MapAccess, SeqAccess, Visitor,
};
use serde_saphyr::Spanned;

mod events;
mod lines;

/// Where a value sits in its file: 1-based line and column, byte offset and length.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Loc {
    pub line: u32,
    pub col: u32,
    pub offset: usize,
    pub len: usize,
}

impl Loc {
    fn from_saphyr(l: &serde_saphyr::Location) -> Loc {
        let span = l.span();
        Loc {
            line: l.line().min(u64::from(u32::MAX)) as u32,
            col: l.column().min(u64::from(u32::MAX)) as u32,
            offset: span.byte_offset().unwrap_or(0) as usize,
            len: span.byte_len().unwrap_or(0) as usize,
        }
    }
}

/// A value of the tree. Strings borrow from the parsed text where they can.
#[derive(Clone, Debug, PartialEq)]
pub enum NodeKind<'a> {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(Cow<'a, str>),
    Seq(Vec<Node<'a>>),
    Map(Vec<(Node<'a>, Node<'a>)>),
}

#[derive(Clone, Debug, PartialEq)]
pub struct Node<'a> {
    pub kind: NodeKind<'a>,
    pub loc: Loc,
}

impl<'a> Node<'a> {
    /// The same tree, owning all its strings.
    pub fn into_owned(self) -> Node<'static> {
        let kind = match self.kind {
            NodeKind::Null => NodeKind::Null,
            NodeKind::Bool(b) => NodeKind::Bool(b),
            NodeKind::Int(i) => NodeKind::Int(i),
            NodeKind::Float(f) => NodeKind::Float(f),
            NodeKind::Str(s) => NodeKind::Str(Cow::Owned(s.into_owned())),
            NodeKind::Seq(items) => {
                NodeKind::Seq(items.into_iter().map(Node::into_owned).collect())
            }
            NodeKind::Map(entries) => NodeKind::Map(
                entries
                    .into_iter()
                    .map(|(k, v)| (k.into_owned(), v.into_owned()))
                    .collect(),
            ),
        };
        Node {
            kind,
            loc: self.loc,
        }
    }

    pub fn kind_name(&self) -> &'static str {
        match self.kind {
            NodeKind::Null => "null",
            NodeKind::Bool(_) => "a boolean",
            NodeKind::Int(_) => "an integer",
            NodeKind::Float(_) => "a number",
            NodeKind::Str(_) => "a string",
            NodeKind::Seq(_) => "a list",
            NodeKind::Map(_) => "a map",
        }
    }

    /// The text of a scalar as a person wrote it (numbers re-rendered).
    pub fn scalar_text(&self) -> Option<String> {
        match &self.kind {
            NodeKind::Bool(b) => Some(b.to_string()),
            NodeKind::Int(i) => Some(i.to_string()),
            NodeKind::Float(f) => Some(f.to_string()),
            NodeKind::Str(s) => Some(s.to_string()),
            _ => None,
        }
    }

    pub fn get(&self, key: &str) -> Option<&Node<'a>> {
        match &self.kind {
            NodeKind::Map(entries) => entries
                .iter()
                .find(|(k, _)| matches!(&k.kind, NodeKind::Str(s) if s == key))
                .map(|(_, v)| v),
            _ => None,
        }
    }
}

struct KindVisitor;

impl<'de> Visitor<'de> for KindVisitor {
    type Value = NodeKind<'static>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any YAML value")
    }
    fn visit_unit<E>(self) -> Result<NodeKind<'static>, E> {
        Ok(NodeKind::Null)
    }
    fn visit_none<E>(self) -> Result<NodeKind<'static>, E> {
        Ok(NodeKind::Null)
    }
    fn visit_some<D: de::Deserializer<'de>>(self, d: D) -> Result<NodeKind<'static>, D::Error> {
        d.deserialize_any(KindVisitor)
    }
    fn visit_bool<E>(self, v: bool) -> Result<NodeKind<'static>, E> {
        Ok(NodeKind::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<NodeKind<'static>, E> {
        Ok(NodeKind::Int(v))
    }
    fn visit_u64<E>(self, v: u64) -> Result<NodeKind<'static>, E> {
        Ok(i64::try_from(v)
            .map(NodeKind::Int)
            .unwrap_or(NodeKind::Float(v as f64)))
    }
    fn visit_f64<E>(self, v: f64) -> Result<NodeKind<'static>, E> {
        Ok(NodeKind::Float(v))
    }
    fn visit_str<E>(self, v: &str) -> Result<NodeKind<'static>, E> {
        Ok(NodeKind::Str(Cow::Owned(v.to_owned())))
    }
    fn visit_string<E>(self, v: String) -> Result<NodeKind<'static>, E> {
        Ok(NodeKind::Str(Cow::Owned(v)))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<NodeKind<'static>, A::Error> {
        let mut out = Vec::new();
        while let Some(n) = seq.next_element::<Node<'static>>()? {
            out.push(n);
        }
        Ok(NodeKind::Seq(out))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<NodeKind<'static>, A::Error> {
        let mut out = Vec::new();
        while let Some((k, v)) = map.next_entry::<Node<'static>, Node<'static>>()? {
            out.push((k, v));
        }
        Ok(NodeKind::Map(out))
    }
}

impl<'de> Deserialize<'de> for NodeKindWrap {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(KindVisitor).map(NodeKindWrap)
    }
}

struct NodeKindWrap(NodeKind<'static>);

impl<'de> Deserialize<'de> for Node<'static> {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let sp = Spanned::<NodeKindWrap>::deserialize(d)?;
        Ok(Node {
            kind: sp.value.0,
            loc: Loc::from_saphyr(&sp.referenced),
        })
    }
}

/// A YAML syntax (or structure) error with its location.
#[derive(Clone, Debug)]
pub struct SyntaxError {
    pub message: String,
    pub loc: Option<Loc>,
}

impl SyntaxError {
    /// The problem a loader reports for a file that is not YAML; `doc` describes the file's
    /// format (e.g. `docs/inventory.md`).
    pub(crate) fn problem(
        &self,
        file: &crate::diag::SourceFile,
        doc: &str,
    ) -> crate::diag::Problem {
        crate::diag::Problem::new(
            file,
            self.loc,
            "medic::yaml::syntax",
            format!("invalid YAML: {}", self.message),
        )
        .help(format!("fix the YAML syntax at this position; the {doc}"))
    }
}

/// Parses a whole document. Duplicate keys, aliases past a budget and other abuse are
/// refused by the parser.
pub fn parse(text: &str) -> Result<Node<'_>, SyntaxError> {
    if text.trim().is_empty() {
        return Err(SyntaxError {
            message: "the file is empty".to_owned(),
            loc: None,
        });
    }
    // Budgets grow with the file, so a 100,000-host inventory loads, while alias and depth
    // limits (the billion-laughs defences) stay at the crate's defaults.
    let mut budget = serde_saphyr::Budget::default();
    budget.max_nodes = budget.max_nodes.max(text.len() / 4);
    budget.max_events = budget.max_events.max(text.len() / 2);
    budget.max_total_scalar_bytes = budget.max_total_scalar_bytes.max(text.len());
    if let Some(node) = events::parse(text, &events::Limits::from_budget(&budget)) {
        return Ok(node);
    }
    parse_with_saphyr(text, budget)
}

/// The reference path: `serde-saphyr` builds the tree through serde and words every error.
fn parse_with_saphyr(
    text: &str,
    budget: serde_saphyr::Budget,
) -> Result<Node<'static>, SyntaxError> {
    let mut options = serde_saphyr::Options::default();
    options.budget = Some(budget);
    serde_saphyr::from_str_with_options::<Node<'static>>(text, options).map_err(|e| {
        let loc = e.location().map(|l| {
            let mut loc = Loc::from_saphyr(&l);
            // Syntax errors come with a line and column but no byte offset, and the
            // snippet is drawn at the offset.
            if loc.offset == 0 && (loc.line, loc.col) > (1, 1) {
                loc.offset = offset_of(text, loc.line, loc.col);
            }
            loc
        });
        let message = first_line(&e.to_string());
        SyntaxError { message, loc }
    })
}

/// The byte offset of 1-based `line` and `col` (in characters), clamped to the text.
fn offset_of(text: &str, line: u32, col: u32) -> usize {
    let mut start = 0;
    for _ in 1..line {
        match text[start..].find('\n') {
            Some(i) => start += i + 1,
            None => return text.len(),
        }
    }
    let this = text[start..].split('\n').next().unwrap_or("");
    start
        + this
            .char_indices()
            .nth(col.saturating_sub(1) as usize)
            .map_or(this.len(), |(i, _)| i)
}

fn first_line(s: &str) -> String {
    let line = s.lines().next().unwrap_or(s).trim();
    // serde-saphyr prefixes its messages with the location, which we print ourselves.
    let stripped = match line.strip_prefix("error: ") {
        Some(rest) => rest,
        None => line,
    };
    let stripped = match stripped.find(": ") {
        Some(i) if stripped[..i].starts_with("line ") => &stripped[i + 2..],
        _ => stripped,
    };
    plain(stripped)
}

/// A library's message in the words of the file formats: serde names medic's own Rust
/// types (`expected struct RawManager`) and serde-saphyr advises its own options
/// (`set DuplicateKeyPolicy in Options`), neither of which the person editing the file
/// can do anything with.
fn plain(message: &str) -> String {
    if let Some(rest) = message.strip_prefix("duplicate mapping key: ") {
        let key = rest.split(", set ").next().unwrap_or(rest).trim();
        return format!("duplicate key `{key}`: a key may appear only once in a mapping");
    }
    let mut out = String::with_capacity(message.len());
    let mut rest = message;
    while let Some(i) = rest.find("Raw") {
        let (before, after) = rest.split_at(i);
        let name_len = after[3..]
            .find(|c: char| !c.is_ascii_alphanumeric())
            .map_or(after.len(), |n| n + 3);
        let kind = if before.ends_with("struct ") {
            Some(("struct ", "a mapping"))
        } else if before.ends_with("enum ") {
            Some(("enum ", "one of the documented forms"))
        } else {
            None
        };
        match kind {
            Some((word, plain)) if name_len > 3 => {
                out.push_str(&before[..before.len() - word.len()]);
                out.push_str(plain);
            }
            _ => {
                out.push_str(before);
                out.push_str(&after[..name_len.max(3)]);
            }
        }
        rest = &after[name_len.max(3)..];
    }
    out.push_str(rest);
    plain_types(&out)
}

/// serde names Rust types (`expected i64`); a person reads "a number", "true or false".
fn plain_types(message: &str) -> String {
    let Some(i) = message.rfind("expected ") else {
        return message.to_owned();
    };
    let (head, tail) = message.split_at(i + "expected ".len());
    let word_len = tail
        .find(|c: char| !c.is_ascii_alphanumeric())
        .unwrap_or(tail.len());
    let (word, rest) = tail.split_at(word_len);
    let plain = match word {
        "i8" | "i16" | "i32" | "i64" | "i128" | "u8" | "u16" | "u32" | "u64" | "u128" | "isize"
        | "usize" => "a whole number",
        "f32" | "f64" => "a number",
        "bool" => "true or false",
        "a" if rest.starts_with(" boolean") => {
            return format!("{head}true or false{}", &rest[" boolean".len()..]);
        }
        _ => return message.to_owned(),
    };
    format!("{head}{plain}{rest}")
}

// ---------------------------------------------------------------------------------------
// Deserializing typed structs from a `Node`, keeping the location of whatever went wrong.
// ---------------------------------------------------------------------------------------

/// An error raised while deserializing from a node: where, and what.
#[derive(Clone, Debug)]
pub struct NodeError {
    pub message: String,
    pub loc: Loc,
    /// Set while unwinding so that the innermost location wins.
    located: bool,
}

impl fmt::Display for NodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for NodeError {}

impl de::Error for NodeError {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        NodeError {
            message: plain(&msg.to_string()),
            loc: Loc::default(),
            located: false,
        }
    }

    fn unknown_field(field: &str, expected: &'static [&'static str]) -> Self {
        let msg = if expected.is_empty() {
            format!("unknown key `{field}`: this map takes no keys")
        } else {
            format!("unknown key `{field}`: expected one of {}", list(expected))
        };
        NodeError {
            message: msg,
            loc: Loc::default(),
            located: false,
        }
    }

    fn unknown_variant(variant: &str, expected: &'static [&'static str]) -> Self {
        NodeError {
            message: format!(
                "unknown value `{variant}`: expected one of {}",
                list(expected)
            ),
            loc: Loc::default(),
            located: false,
        }
    }

    fn missing_field(field: &'static str) -> Self {
        NodeError {
            message: format!("missing key `{field}`"),
            loc: Loc::default(),
            located: false,
        }
    }
}

fn list(xs: &[&str]) -> String {
    xs.iter()
        .map(|x| format!("`{x}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

impl NodeError {
    fn at(mut self, loc: Loc) -> Self {
        if !self.located {
            self.loc = loc;
            self.located = true;
        }
        self
    }
}

/// Deserializes `T` from `node`.
pub fn from_node<T: de::DeserializeOwned>(node: &Node<'_>) -> Result<T, NodeError> {
    from_node_owned(node.clone())
}

/// Deserializes `T` from `node`, moving its strings into `T` instead of copying them.
pub fn from_node_owned<T: de::DeserializeOwned>(node: Node<'_>) -> Result<T, NodeError> {
    let loc = node.loc;
    T::deserialize(NodeDe(node)).map_err(|e| e.at(loc))
}

struct NodeDe<'a>(Node<'a>);

impl<'a> de::Deserializer<'a> for NodeDe<'a> {
    type Error = NodeError;

    fn deserialize_any<V: Visitor<'a>>(self, v: V) -> Result<V::Value, NodeError> {
        let Node { kind, loc } = self.0;
        let r = match kind {
            NodeKind::Null => v.visit_unit(),
            NodeKind::Bool(b) => v.visit_bool(b),
            NodeKind::Int(i) => v.visit_i64(i),
            NodeKind::Float(f) => v.visit_f64(f),
            NodeKind::Str(Cow::Borrowed(s)) => v.visit_borrowed_str(s),
            NodeKind::Str(Cow::Owned(s)) => v.visit_string(s),
            NodeKind::Seq(items) => v.visit_seq(SeqDe {
                items: items.into_iter(),
            }),
            NodeKind::Map(entries) => v.visit_map(MapDe {
                entries: entries.into_iter(),
                value: None,
                key_loc: loc,
            }),
        };
        r.map_err(|e| e.at(loc))
    }

    fn deserialize_str<V: Visitor<'a>>(self, v: V) -> Result<V::Value, NodeError> {
        // A string field given `22` or `20.0` gets the text, so versions and names written
        // without quotes still load; the validator decides whether the text is right.
        match &self.0.kind {
            NodeKind::Int(_) | NodeKind::Float(_) | NodeKind::Bool(_) => {
                let t = self.0.scalar_text().unwrap_or_default();
                v.visit_string(t).map_err(|e: NodeError| e.at(self.0.loc))
            }
            _ => self.deserialize_any(v),
        }
    }

    fn deserialize_string<V: Visitor<'a>>(self, v: V) -> Result<V::Value, NodeError> {
        self.deserialize_str(v)
    }

    fn deserialize_option<V: Visitor<'a>>(self, v: V) -> Result<V::Value, NodeError> {
        match self.0.kind {
            NodeKind::Null => v.visit_none(),
            _ => v.visit_some(self),
        }
    }

    fn deserialize_newtype_struct<V: Visitor<'a>>(
        self,
        name: &'static str,
        v: V,
    ) -> Result<V::Value, NodeError> {
        if name == RAW_MARKER {
            RAW_SLOT.with(|slot| *slot.borrow_mut() = Some(self.0.into_owned()));
            return v.visit_unit();
        }
        if name == AT_MARKER {
            let loc = self.0.loc;
            return v.visit_seq(AtSeq {
                node: Some(self.0),
                loc,
                step: 0,
            });
        }
        v.visit_newtype_struct(self)
    }

    fn deserialize_enum<V: Visitor<'a>>(
        self,
        _name: &'static str,
        _variants: &'static [&'static str],
        v: V,
    ) -> Result<V::Value, NodeError> {
        let Node { kind, loc } = self.0;
        match kind {
            NodeKind::Str(s) => v
                .visit_enum(s.as_ref().into_deserializer())
                .map_err(|e: de::value::Error| NodeError::custom(e).at(loc)),
            NodeKind::Map(entries) if entries.len() == 1 => {
                let Some((key, value)) = entries.into_iter().next() else {
                    return Err(NodeError::custom("internal: empty map").at(loc));
                };
                v.visit_enum(EnumDe { key, value }).map_err(|e| e.at(loc))
            }
            kind => Err(NodeError::custom(format!(
                "expected a name or a map with exactly one key, found {}",
                Node { kind, loc }.kind_name()
            ))
            .at(loc)),
        }
    }

    serde::forward_to_deserialize_any! {
        <W: Visitor<'a>>
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char
        bytes byte_buf unit unit_struct seq tuple
        tuple_struct map struct identifier ignored_any
    }
}

struct SeqDe<'a> {
    items: std::vec::IntoIter<Node<'a>>,
}

impl<'a> SeqAccess<'a> for SeqDe<'a> {
    type Error = NodeError;
    fn next_element_seed<T: DeserializeSeed<'a>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, NodeError> {
        match self.items.next() {
            Some(n) => {
                let loc = n.loc;
                seed.deserialize(NodeDe(n)).map(Some).map_err(|e| e.at(loc))
            }
            None => Ok(None),
        }
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.items.len())
    }
}

struct MapDe<'a> {
    entries: std::vec::IntoIter<(Node<'a>, Node<'a>)>,
    value: Option<Node<'a>>,
    key_loc: Loc,
}

impl<'a> MapAccess<'a> for MapDe<'a> {
    type Error = NodeError;
    fn next_key_seed<K: DeserializeSeed<'a>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, NodeError> {
        match self.entries.next() {
            Some((k, v)) => {
                self.value = Some(v);
                let loc = k.loc;
                self.key_loc = loc;
                // An unknown key is reported at the key itself.
                seed.deserialize(NodeDe(k)).map(Some).map_err(|e| e.at(loc))
            }
            None => Ok(None),
        }
    }
    fn next_value_seed<V: DeserializeSeed<'a>>(&mut self, seed: V) -> Result<V::Value, NodeError> {
        let n = self
            .value
            .take()
            .ok_or_else(|| NodeError::custom("value without a key").at(self.key_loc))?;
        let loc = n.loc;
        seed.deserialize(NodeDe(n)).map_err(|e| e.at(loc))
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.entries.len())
    }
}

struct EnumDe<'a> {
    key: Node<'a>,
    value: Node<'a>,
}

impl<'a> de::EnumAccess<'a> for EnumDe<'a> {
    type Error = NodeError;
    type Variant = VariantDe<'a>;
    fn variant_seed<V: DeserializeSeed<'a>>(
        self,
        seed: V,
    ) -> Result<(V::Value, VariantDe<'a>), NodeError> {
        let loc = self.key.loc;
        let v = seed.deserialize(NodeDe(self.key)).map_err(|e| e.at(loc))?;
        Ok((v, VariantDe(self.value)))
    }
}

struct VariantDe<'a>(Node<'a>);

impl<'a> de::VariantAccess<'a> for VariantDe<'a> {
    type Error = NodeError;
    fn unit_variant(self) -> Result<(), NodeError> {
        match self.0.kind {
            NodeKind::Null => Ok(()),
            _ => Err(NodeError::custom("this value takes no argument").at(self.0.loc)),
        }
    }
    fn newtype_variant_seed<T: DeserializeSeed<'a>>(self, seed: T) -> Result<T::Value, NodeError> {
        let loc = self.0.loc;
        seed.deserialize(NodeDe(self.0)).map_err(|e| e.at(loc))
    }
    fn tuple_variant<V: Visitor<'a>>(self, _len: usize, v: V) -> Result<V::Value, NodeError> {
        de::Deserializer::deserialize_seq(NodeDe(self.0), v)
    }
    fn struct_variant<V: Visitor<'a>>(
        self,
        _fields: &'static [&'static str],
        v: V,
    ) -> Result<V::Value, NodeError> {
        de::Deserializer::deserialize_map(NodeDe(self.0), v)
    }
}

// ---------------------------------------------------------------------------------------
// `At<T>`: a value with its location, for the semantic checks that run after loading.
// ---------------------------------------------------------------------------------------

const AT_MARKER: &str = "__medic_at";

/// A deserialized value and where it was written.
#[derive(Clone, Debug, PartialEq)]
pub struct At<T> {
    pub value: T,
    pub loc: Loc,
}

impl<T> std::ops::Deref for At<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.value
    }
}

struct AtSeq<'a> {
    node: Option<Node<'a>>,
    loc: Loc,
    step: u8,
}

impl<'a> SeqAccess<'a> for AtSeq<'a> {
    type Error = NodeError;
    fn next_element_seed<T: DeserializeSeed<'a>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, NodeError> {
        self.step += 1;
        match (self.step, self.node.take()) {
            (1, Some(n)) => seed.deserialize(NodeDe(n)).map(Some),
            (2, _) => {
                let l = self.loc;
                let parts = [
                    u64::from(l.line),
                    u64::from(l.col),
                    l.offset as u64,
                    l.len as u64,
                ];
                seed.deserialize(de::value::SeqDeserializer::<_, NodeError>::new(
                    parts.into_iter(),
                ))
                .map(Some)
            }
            _ => Ok(None),
        }
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for At<T> {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct AtVisitor<T>(std::marker::PhantomData<T>);
        impl<'de, T: Deserialize<'de>> Visitor<'de> for AtVisitor<T> {
            type Value = At<T>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a located value")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<At<T>, A::Error> {
                let value: T = seq
                    .next_element()?
                    .ok_or_else(|| de::Error::custom("internal: located value without a value"))?;
                let [line, col, offset, len]: [u64; 4] = seq.next_element()?.ok_or_else(|| {
                    de::Error::custom("internal: located value without a location")
                })?;
                let loc = Loc {
                    line: line as u32,
                    col: col as u32,
                    offset: offset as usize,
                    len: len as usize,
                };
                Ok(At { value, loc })
            }
        }
        d.deserialize_newtype_struct(AT_MARKER, AtVisitor(std::marker::PhantomData))
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    #[test]
    fn library_words_become_format_words() {
        assert_eq!(
            plain(
                "duplicate mapping key: manager, set DuplicateKeyPolicy in Options if acceptable"
            ),
            "duplicate key `manager`: a key may appear only once in a mapping"
        );
        assert_eq!(
            plain("invalid type: integer `5`, expected struct RawManager"),
            "invalid type: integer `5`, expected a mapping"
        );
        assert_eq!(
            plain("expected enum RawCond or struct RawX, got Rawness"),
            "expected one of the documented forms or a mapping, got Rawness"
        );
        assert_eq!(plain("no Raw here"), "no Raw here");
        assert_eq!(
            plain("invalid type: string \"x\", expected i64"),
            "invalid type: string \"x\", expected a whole number"
        );
        assert_eq!(
            plain("invalid type: string \"x\", expected a boolean"),
            "invalid type: string \"x\", expected true or false"
        );
    }

    /// The budget `parse` gives a text.
    pub(crate) fn budget_for(text: &str) -> serde_saphyr::Budget {
        let mut budget = serde_saphyr::Budget::default();
        budget.max_nodes = budget.max_nodes.max(text.len() / 4);
        budget.max_events = budget.max_events.max(text.len() / 2);
        budget.max_total_scalar_bytes = budget.max_total_scalar_bytes.max(text.len());
        budget
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct H {
        name: At<String>,
        port: Option<u16>,
        tags: Option<Vec<At<String>>>,
    }

    #[test]
    fn locations_survive() {
        let text = "hosts:\n  - name: a\n    port: 22\n  - { name: b, tags: [x, y] }\n";
        let root = parse(text).expect("parses");
        let hosts = root.get("hosts").expect("has hosts");
        let NodeKind::Seq(items) = &hosts.kind else {
            panic!("seq")
        };
        let a: H = from_node(&items[0]).expect("a");
        assert_eq!((a.name.loc.line, a.name.loc.col), (2, 11));
        assert_eq!(a.port, Some(22));
        let b: H = from_node(&items[1]).expect("b");
        let tags = b.tags.expect("tags");
        assert_eq!((tags[1].loc.line, tags[1].loc.col), (4, 26));
        assert_eq!(
            &text[tags[1].loc.offset..tags[1].loc.offset + tags[1].loc.len],
            "y"
        );
    }

    #[test]
    fn unknown_key_points_at_the_key() {
        let text = "- name: a\n  prot: 22\n";
        let root = parse(text).expect("parses");
        let NodeKind::Seq(items) = &root.kind else {
            panic!("seq")
        };
        let e = from_node::<H>(&items[0]).expect_err("unknown key");
        assert_eq!((e.loc.line, e.loc.col), (2, 3), "{e:?}");
        assert!(e.message.contains("unknown key `prot`"), "{}", e.message);
    }

    #[test]
    fn type_errors_point_at_the_value() {
        let text = "name: a\nport: lots\n";
        let e = from_node::<H>(&parse(text).expect("parses")).expect_err("bad port");
        assert_eq!((e.loc.line, e.loc.col), (2, 7), "{e:?}");
    }

    #[test]
    fn syntax_errors_have_a_location() {
        let e = parse("a: [1, 2\nb: c\n").expect_err("syntax");
        assert!(e.loc.is_some(), "{e:?}");
        let e = parse("a: 1\na: 2\n").expect_err("duplicate key");
        assert!(e.message.contains("uplicate"), "{e:?}");
    }
}

// ---------------------------------------------------------------------------------------
// `Raw`: a sub-tree kept as a node, for values whose type depends on another field.
// ---------------------------------------------------------------------------------------

const RAW_MARKER: &str = "__medic_raw";

thread_local! {
    // Hands a node from `NodeDe` to `Raw`'s visitor; serde has no other way to pass a
    // non-serde value through a derived struct.
    static RAW_SLOT: std::cell::RefCell<Option<Node<'static>>> = const { std::cell::RefCell::new(None) };
}

/// A value kept as its YAML node (only deserializable through [`from_node`]).
#[derive(Clone, Debug, PartialEq)]
pub struct Raw(pub Node<'static>);

impl<'de> Deserialize<'de> for Raw {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct RawVisitor;
        impl<'de> Visitor<'de> for RawVisitor {
            type Value = Raw;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a YAML value")
            }
            fn visit_unit<E: de::Error>(self) -> Result<Raw, E> {
                RAW_SLOT
                    .with(|slot| slot.borrow_mut().take())
                    .map(Raw)
                    .ok_or_else(|| E::custom("internal: raw value read outside the node loader"))
            }
        }
        d.deserialize_newtype_struct(RAW_MARKER, RawVisitor)
    }
}
