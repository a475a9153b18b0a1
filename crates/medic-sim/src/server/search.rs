//! The vendor's `searchFilter`: criteria (ANDed) over the fields of an object, `maxItems`,
//! results sorted by ID. One evaluator serves computers, computer groups and scheduled
//! tasks; each says what its fields are through [`Searchable`]. A criterion that does not
//! fit its field (a string test on a number, an unknown field) is a 400, as on a Manager,
//! rather than silently matching nothing.

use std::cmp::Ordering;

use serde::Deserialize;

/// The value of a field, typed as the vendor spec says it is "Searchable as".
pub(crate) enum FieldValue<'a> {
    Num(f64),
    /// `None` is JSON null (e.g. no agent fingerprint).
    Str(Option<&'a str>),
    Bool(bool),
    Choice(&'a str),
    /// Milliseconds since the epoch; `None` when unset.
    Date(Option<i64>),
}

pub(crate) trait Searchable {
    fn id(&self) -> i64;
    /// `None` when the object has no such searchable field.
    fn field(&self, name: &str) -> Option<FieldValue<'_>>;
}

#[derive(Debug, Default, Deserialize)]
pub(crate) struct SearchFilter {
    #[serde(rename = "maxItems")]
    max_items: Option<i64>,
    #[serde(rename = "searchCriteria", default)]
    search_criteria: Vec<Criterion>,
    // `sortByObjectID` is accepted and ignored: results are always sorted by ID.
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Criterion {
    field_name: Option<String>,
    boolean_test: Option<bool>,
    numeric_test: Option<String>,
    numeric_value: Option<f64>,
    string_test: Option<String>,
    string_value: Option<String>,
    string_wildcards: Option<bool>,
    choice_test: Option<String>,
    choice_value: Option<String>,
    first_date_value: Option<i64>,
    first_date_inclusive: Option<bool>,
    last_date_value: Option<i64>,
    last_date_inclusive: Option<bool>,
    null_test: Option<bool>,
    version_test: Option<String>,
    version_value: Option<String>,
    id_value: Option<i64>,
    id_test: Option<String>,
}

/// The default and largest useful `maxItems` of a Manager.
pub(crate) const DEFAULT_MAX_ITEMS: i64 = 5000;

#[derive(Clone, Copy, Debug)]
enum Op {
    Lt,
    Le,
    Eq,
    Ge,
    Gt,
    Ne,
}

impl Op {
    fn parse(s: Option<&str>) -> Result<Op, String> {
        Ok(match s.unwrap_or("equal") {
            "less-than" => Op::Lt,
            "less-than-or-equal" => Op::Le,
            "equal" => Op::Eq,
            "greater-than-or-equal" => Op::Ge,
            "greater-than" => Op::Gt,
            "not-equal" => Op::Ne,
            other => return Err(format!("Invalid search criteria: unknown test `{other}`.")),
        })
    }

    fn holds(self, o: Ordering) -> bool {
        match self {
            Op::Lt => o == Ordering::Less,
            Op::Le => o != Ordering::Greater,
            Op::Eq => o == Ordering::Equal,
            Op::Ge => o != Ordering::Less,
            Op::Gt => o == Ordering::Greater,
            Op::Ne => o != Ordering::Equal,
        }
    }
}

fn equality(s: Option<&str>) -> Result<bool, String> {
    match s.unwrap_or("equal") {
        "equal" => Ok(true),
        "not-equal" => Ok(false),
        other => Err(format!("Invalid search criteria: unknown test `{other}`.")),
    }
}

enum Test {
    Id(Op, i64),
    Num(String, Op, f64),
    Str {
        field: String,
        equal: bool,
        value: String,
        wildcards: bool,
    },
    Bool(String, bool),
    Choice(String, bool, String),
    Date {
        field: String,
        first: Option<(i64, bool)>,
        last: Option<(i64, bool)>,
    },
    Null(String, bool),
    Version(String, Op, String),
}

impl Criterion {
    fn compile(self) -> Result<Test, String> {
        if self.id_test.is_some() || self.id_value.is_some() {
            let v = self
                .id_value
                .ok_or("Invalid search criteria: idTest needs idValue.")?;
            return Ok(Test::Id(Op::parse(self.id_test.as_deref())?, v));
        }
        let field = self.field_name.ok_or(
            "Invalid search criteria: fieldName is required for every test except idTest.",
        )?;
        if let Some(v) = self.numeric_value {
            return Ok(Test::Num(
                field,
                Op::parse(self.numeric_test.as_deref())?,
                v,
            ));
        }
        if let Some(value) = self.string_value {
            return Ok(Test::Str {
                field,
                equal: equality(self.string_test.as_deref())?,
                value,
                wildcards: self.string_wildcards.unwrap_or(true),
            });
        }
        if let Some(v) = self.version_value {
            return Ok(Test::Version(
                field,
                Op::parse(self.version_test.as_deref())?,
                v,
            ));
        }
        if let Some(v) = self.choice_value {
            return Ok(Test::Choice(
                field,
                equality(self.choice_test.as_deref())?,
                v,
            ));
        }
        if self.first_date_value.is_some() || self.last_date_value.is_some() {
            return Ok(Test::Date {
                field,
                first: self
                    .first_date_value
                    .map(|v| (v, self.first_date_inclusive.unwrap_or(true))),
                last: self
                    .last_date_value
                    .map(|v| (v, self.last_date_inclusive.unwrap_or(true))),
            });
        }
        if let Some(n) = self.null_test {
            return Ok(Test::Null(field, n));
        }
        if let Some(b) = self.boolean_test {
            return Ok(Test::Bool(field, b));
        }
        Err(format!(
            "Invalid search criteria for field {field}: no test value (numericValue, stringValue, booleanTest, ...)."
        ))
    }
}

fn mismatch(field: &str, test: &str) -> String {
    format!("Invalid search criteria: field {field} is not searchable with {test}.")
}

impl Test {
    fn matches<T: Searchable>(&self, item: &T) -> Result<bool, String> {
        let get = |f: &str| {
            item.field(f)
                .ok_or_else(|| format!("Invalid search criteria: unknown field {f}."))
        };
        Ok(match self {
            Test::Id(op, v) => op.holds(item.id().cmp(v)),
            Test::Num(f, op, v) => match get(f)? {
                FieldValue::Num(x) => x.partial_cmp(v).is_some_and(|o| op.holds(o)),
                _ => return Err(mismatch(f, "numericTest")),
            },
            Test::Str {
                field,
                equal,
                value,
                wildcards,
            } => match get(field)? {
                FieldValue::Str(x) => {
                    let hit = x.is_some_and(|x| {
                        if *wildcards {
                            like(x, value)
                        } else {
                            x == value
                        }
                    });
                    hit == *equal
                }
                _ => return Err(mismatch(field, "stringTest")),
            },
            Test::Bool(f, b) => match get(f)? {
                FieldValue::Bool(x) => x == *b,
                _ => return Err(mismatch(f, "booleanTest")),
            },
            Test::Choice(f, equal, v) => match get(f)? {
                FieldValue::Choice(x) => (x == v) == *equal,
                _ => return Err(mismatch(f, "choiceTest")),
            },
            Test::Date { field, first, last } => match get(field)? {
                FieldValue::Date(x) => x.is_some_and(|x| {
                    first.is_none_or(|(v, inc)| if inc { x >= v } else { x > v })
                        && last.is_none_or(|(v, inc)| if inc { x <= v } else { x < v })
                }),
                _ => return Err(mismatch(field, "a date range")),
            },
            Test::Null(f, want_null) => match get(f)? {
                FieldValue::Str(x) => x.is_none() == *want_null,
                FieldValue::Date(x) => x.is_none() == *want_null,
                _ => !*want_null,
            },
            Test::Version(f, op, v) => match get(f)? {
                FieldValue::Str(Some(x)) => op.holds(cmp_versions(x, v)),
                FieldValue::Str(None) => false,
                _ => return Err(mismatch(f, "versionTest")),
            },
        })
    }
}

/// SQL `LIKE`: `%` any run of characters, `_` exactly one.
fn like(text: &str, pattern: &str) -> bool {
    let t: Vec<char> = text.chars().collect();
    let p: Vec<char> = pattern.chars().collect();
    // Classic two-pointer match with backtracking to the last `%`.
    let (mut ti, mut pi) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '_' || (p[pi] != '%' && p[pi] == t[ti])) {
            ti += 1;
            pi += 1;
        } else if pi < p.len() && p[pi] == '%' {
            star = Some((pi, ti));
            pi += 1;
        } else if let Some((sp, st)) = star {
            pi = sp + 1;
            ti = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|c| *c == '%')
}

/// Dotted (or dashed) numeric versions, missing parts as 0; non-numeric parts compare as text.
fn cmp_versions(a: &str, b: &str) -> Ordering {
    let split = |s: &str| -> Vec<String> { s.split(['.', '-']).map(str::to_owned).collect() };
    let (a, b) = (split(a), split(b));
    for i in 0..a.len().max(b.len()) {
        let x = a.get(i).map_or("0", String::as_str);
        let y = b.get(i).map_or("0", String::as_str);
        let o = match (x.parse::<u64>(), y.parse::<u64>()) {
            (Ok(x), Ok(y)) => x.cmp(&y),
            _ => x.cmp(y),
        };
        if o != Ordering::Equal {
            return o;
        }
    }
    Ordering::Equal
}

/// A search filter made ready to apply: its tests and its `maxItems`.
pub(crate) struct Compiled {
    tests: Vec<Test>,
    pub(crate) max: usize,
}

impl Compiled {
    /// `None`: no criteria, default `maxItems`.
    pub(crate) fn new(filter: Option<SearchFilter>) -> Result<Compiled, String> {
        let filter = filter.unwrap_or_default();
        let max = filter.max_items.unwrap_or(DEFAULT_MAX_ITEMS);
        let max = usize::try_from(max)
            .map_err(|_| "Invalid search filter: maxItems must not be negative.".to_owned())?;
        let tests = filter
            .search_criteria
            .into_iter()
            .map(Criterion::compile)
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Compiled { tests, max })
    }

    /// Whether `item` passes every test (ANDed, in order, the first failure deciding).
    pub(crate) fn keeps<T: Searchable>(&self, item: &T) -> Result<bool, String> {
        for t in &self.tests {
            if !t.matches(item)? {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// Evaluates every test on `item` for its errors only (a test that does not fit its
    /// field fails the same way on every item of a collection), so that a paged reader
    /// that looks at few items still answers a bad filter with a 400.
    pub(crate) fn check<T: Searchable>(&self, item: &T) -> Result<(), String> {
        for t in &self.tests {
            t.matches(item)?;
        }
        Ok(())
    }

    /// The IDs the `idTest` criteria allow, as an inclusive range (`lo > hi`: none).
    pub(crate) fn id_bounds(&self) -> (i64, i64) {
        let (mut lo, mut hi) = (i64::MIN, i64::MAX);
        for t in &self.tests {
            if let Test::Id(op, v) = *t {
                match op {
                    Op::Gt => lo = lo.max(v.saturating_add(1)),
                    Op::Ge => lo = lo.max(v),
                    Op::Lt => hi = hi.min(v.saturating_sub(1)),
                    Op::Le => hi = hi.min(v),
                    Op::Eq => {
                        lo = lo.max(v);
                        hi = hi.min(v);
                    }
                    Op::Ne => {}
                }
            }
        }
        (lo, hi)
    }
}

/// Applies `filter` (None: no criteria, default `maxItems`) to `items`: matching items sorted
/// by ID, at most `maxItems` of them.
pub(crate) fn run<T: Searchable>(
    items: Vec<T>,
    filter: Option<SearchFilter>,
) -> Result<Vec<T>, String> {
    let c = Compiled::new(filter)?;
    let mut out = Vec::new();
    for item in items {
        if c.keeps(&item)? {
            out.push(item);
        }
    }
    out.sort_by_key(Searchable::id);
    out.truncate(c.max);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn like_patterns() {
        assert!(like("MS-AD-SRV-01", "MS-AD-SRV-%"));
        assert!(like("web-01", "web-0_"));
        assert!(!like("web-011", "web-0_"));
        assert!(like("abc", "%"));
        assert!(like("", "%"));
        assert!(like("a%c", "a%c"));
        assert!(!like("abd", "a%c"));
        assert!(like("aXbXc", "%b%c"));
    }

    #[test]
    fn versions_compare_numerically() {
        assert_eq!(cmp_versions("20.0.1.690", "20.0.0.8000"), Ordering::Greater);
        assert_eq!(cmp_versions("20.0.1-690", "20.0.1.690"), Ordering::Equal);
        assert_eq!(cmp_versions("12.0", "12.0.0.0"), Ordering::Equal);
    }
}
