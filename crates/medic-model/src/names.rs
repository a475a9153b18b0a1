//! Checks on names and addresses that end up in remote commands and file names: the
//! inventory's rules, which medic-config enforces on what it loads and the importers
//! (the Manager's, the Ansible merge) follow on what they write.

use std::net::IpAddr;

/// `[A-Za-z0-9._-]+`, the alphabet of host, group, phase and parameter names.
pub fn is_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// A name in [`is_name`]'s alphabet made from any text (trimmed; other characters become
/// `-`; nothing at all is `unnamed`), for what an import writes.
pub fn sanitize(s: &str) -> String {
    let t: String = s
        .trim()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '-'
            }
        })
        .collect();
    if t.is_empty() {
        "unnamed".to_owned()
    } else {
        t
    }
}

/// An IP address or a DNS name (RFC 1123 labels). Anything else, in particular anything with
/// a shell metacharacter, is refused.
pub fn is_address(s: &str) -> bool {
    if s.parse::<IpAddr>().is_ok() {
        return true;
    }
    let s = s.strip_suffix('.').unwrap_or(s);
    if s.is_empty() || s.len() > 253 {
        return false;
    }
    // An all-numeric dotted string that is not an IP (e.g. 10.0.0.300) is a typo, not a name.
    if s.split('.')
        .all(|l| !l.is_empty() && l.bytes().all(|b| b.is_ascii_digit()))
    {
        return false;
    }
    s.split('.').all(|label| {
        !label.is_empty()
            && label.len() <= 63
            && !label.starts_with('-')
            && !label.ends_with('-')
            && label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-')
    })
}

/// A login name: letters, digits, `.`, `_`, `-`, not starting with `-`.
pub fn is_user(s: &str) -> bool {
    is_name(s) && !s.starts_with('-') && s.len() <= 64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses() {
        for ok in [
            "10.0.0.5",
            "::1",
            "fe80::1",
            "relay-tky-1.example.com",
            "host",
            "a.b.c.",
        ] {
            assert!(is_address(ok), "{ok}");
        }
        for bad in [
            "10.0.0.300",
            "a;b",
            "$(id)",
            "a b",
            "-x.com",
            "x-.com",
            "",
            "a..b",
            "`x`",
            "a|b",
        ] {
            assert!(!is_address(bad), "{bad}");
        }
    }

    #[test]
    fn names() {
        assert!(is_name("web-01.tokyo_a"));
        assert!(!is_name("web 01"));
        assert!(!is_name("web/01"));
        assert!(!is_name(""));
        assert!(!is_user("-oProxyCommand=x"));
        assert_eq!(sanitize(" web 01/a "), "web-01-a");
        assert_eq!(sanitize("  "), "unnamed");
        assert!(is_name(&sanitize("$(id); x")));
    }
}
