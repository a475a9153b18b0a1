//! Commands printed for the operator to copy.

use std::borrow::Cow;

/// One word of a command line printed for the operator to copy: as is when the shell reads
/// it back unchanged, else single-quoted. Control characters are escaped first, so a path
/// cannot steer the terminal.
pub fn shell_word(s: &str) -> Cow<'_, str> {
    let s = medic_plan::render::escape_text(s);
    if !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_./=:@+,%".contains(&b))
    {
        return s;
    }
    Cow::Owned(format!("'{}'", s.replace('\'', r"'\''")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_are_quoted_only_when_needed() {
        assert_eq!(
            shell_word(".medic/runs/x/journal.sqlite"),
            ".medic/runs/x/journal.sqlite"
        );
        assert_eq!(shell_word("my runs/j.sqlite"), "'my runs/j.sqlite'");
        assert_eq!(shell_word("it's"), r"'it'\''s'");
        assert_eq!(shell_word(""), "''");
    }
}
