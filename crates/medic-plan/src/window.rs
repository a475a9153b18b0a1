//! Change windows: `START/END` in RFC 3339 with an offset.

use jiff::Timestamp;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Window {
    pub start: Timestamp,
    pub end: Timestamp,
}

#[derive(Debug, thiserror::Error)]
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
        let start = parse_ts(a).ok_or_else(|| WindowError::Time {
            which: "start",
            text: a.to_owned(),
        })?;
        let end = parse_ts(b).ok_or_else(|| WindowError::Time {
            which: "end",
            text: b.to_owned(),
        })?;
        if end <= start {
            return Err(WindowError::Reversed {
                start: a.to_owned(),
                end: b.to_owned(),
            });
        }
        Ok(Window { start, end })
    }

    pub fn length_s(&self) -> u64 {
        (self.end.as_second() - self.start.as_second()).max(0) as u64
    }
}

fn parse_ts(s: &str) -> Option<Timestamp> {
    let s = s.trim();
    if let Ok(t) = s.parse::<Timestamp>() {
        return Some(t);
    }
    // RFC 3339 wants seconds; operators write `22:00+09:00`, so add them.
    let (head, tail) = s.split_at(s.rfind(['+', '-', 'Z']).filter(|&i| i > 10)?);
    if head.matches(':').count() == 1 {
        return format!("{head}:00{tail}").parse::<Timestamp>().ok();
    }
    None
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
}
