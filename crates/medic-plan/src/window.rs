//! Change windows: `START/END` in RFC 3339 with an offset.

use jiff::Timestamp;
use jiff::tz::Offset;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Window {
    pub start: Timestamp,
    pub end: Timestamp,
    /// The offsets the operator wrote, so that the window is shown in them (a change board
    /// in Tokyo approved 22:00+09:00, not 13:00Z).
    pub start_offset: Offset,
    pub end_offset: Offset,
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum WindowError {
    #[error("window `{0}` must be START/END, e.g. 2026-12-01T22:00+09:00/2026-12-02T04:00+09:00")]
    Shape(String),
    #[error(
        "window {which} `{text}` is not an RFC 3339 time with an offset (e.g. 2026-12-01T22:00+09:00)"
    )]
    Time { which: &'static str, text: String },
    #[error("window ends ({end}) before it starts ({start})")]
    Reversed { start: String, end: String },
}

impl Window {
    pub fn parse(s: &str) -> Result<Window, WindowError> {
        let (a, b) = s
            .split_once('/')
            .ok_or_else(|| WindowError::Shape(s.to_owned()))?;
        let (start, start_offset) = parse_ts(a).ok_or_else(|| WindowError::Time {
            which: "start",
            text: a.to_owned(),
        })?;
        let (end, end_offset) = parse_ts(b).ok_or_else(|| WindowError::Time {
            which: "end",
            text: b.to_owned(),
        })?;
        if end <= start {
            return Err(WindowError::Reversed {
                start: a.to_owned(),
                end: b.to_owned(),
            });
        }
        Ok(Window {
            start,
            end,
            start_offset,
            end_offset,
        })
    }

    /// The start as written: RFC 3339 in the offset it was given in.
    pub fn start_text(&self) -> String {
        show(self.start, self.start_offset)
    }

    /// The end as written: RFC 3339 in the offset it was given in.
    pub fn end_text(&self) -> String {
        show(self.end, self.end_offset)
    }

    /// `START/END`, in the offsets given; [`Window::parse`] reads it back.
    pub fn text(&self) -> String {
        format!("{}/{}", self.start_text(), self.end_text())
    }

    pub fn length_s(&self) -> u64 {
        (self.end.as_second() - self.start.as_second()).max(0) as u64
    }
}

fn show(t: Timestamp, offset: Offset) -> String {
    if offset == Offset::UTC {
        t.to_string()
    } else {
        t.display_with_offset(offset).to_string()
    }
}

/// A time with its offset (`Z` is UTC).
fn parse_ts(s: &str) -> Option<(Timestamp, Offset)> {
    let s = s.trim();
    if let Ok(t) = s.parse::<Timestamp>() {
        return Some((t, offset_of(s)?));
    }
    // RFC 3339 wants seconds; operators write `22:00+09:00`, so add them.
    let (head, tail) = s.split_at(s.rfind(['+', '-', 'Z', 'z']).filter(|&i| i > 10)?);
    if head.matches(':').count() == 1 {
        let full = format!("{head}:00{tail}");
        let t = full.parse::<Timestamp>().ok()?;
        return Some((t, offset_of(&full)?));
    }
    None
}

fn offset_of(s: &str) -> Option<Offset> {
    use jiff::fmt::temporal::{Pieces, PiecesOffset};
    match Pieces::parse(s).ok()?.offset()? {
        PiecesOffset::Zulu => Some(Offset::UTC),
        PiecesOffset::Numeric(n) => Some(n.offset()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_contract_example() {
        let w = Window::parse("2026-12-01T22:00+09:00/2026-12-02T04:00+09:00").expect("valid");
        assert_eq!(w.length_s(), 6 * 3600);
        assert!(
            Window::parse("2026-12-01T22:00/2026-12-02T04:00").is_err(),
            "offset is required"
        );
        assert!(Window::parse("2026-12-02T04:00+09:00/2026-12-01T22:00+09:00").is_err());
        assert!(Window::parse("tonight").is_err());
    }

    #[test]
    fn shows_the_offsets_it_was_given_in() {
        let w = Window::parse("2026-12-01T22:00+09:00/2026-12-02T04:00:30-05:00").expect("valid");
        assert_eq!(w.start_text(), "2026-12-01T22:00:00+09:00");
        assert_eq!(w.end_text(), "2026-12-02T04:00:30-05:00");
        assert_eq!(Window::parse(&w.text()).expect("reads back"), w);
        let z = Window::parse("2026-12-01T13:00Z/2026-12-01T19:00Z").expect("valid");
        assert_eq!(z.text(), "2026-12-01T13:00:00Z/2026-12-01T19:00:00Z");
    }
}
