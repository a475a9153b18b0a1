//! Ansible host patterns: `name`, `name:PORT`, `[v6]:PORT` and ranges `web[01:20]`,
//! `db-[a:c]`, `x[1:9:2]`, expanded as Ansible's `parse_address` and
//! `expand_hostname_range` do (zero-padded bounds keep their width).

/// A host pattern's hosts and port, or what is wrong with it.
pub(crate) fn expand(pattern: &str) -> Result<(Vec<String>, Option<u16>), String> {
    let (name, port) = split_port(pattern)?;
    if name.is_empty() {
        return Err(format!("`{pattern}` names no host"));
    }
    let mut out = Vec::new();
    expand_ranges(name, &mut out)?;
    Ok((out, port))
}

/// `host:22` gives the port; a bare IPv6 address (several colons) has none.
fn split_port(p: &str) -> Result<(&str, Option<u16>), String> {
    let bad_port = |s: &str| format!("`{p}`: the port `{s}` is not a number from 1 to 65535");
    if let Some(rest) = p.strip_prefix('[')
        && let Some(close) = rest.find(']')
        && rest[..close].matches(':').count() > 1
        && !rest[..close].contains('[')
    {
        // `[fe80::1]:2222`, an IPv6 address in brackets.
        let host = &rest[..close];
        return match rest[close + 1..].strip_prefix(':') {
            Some(port) => Ok((host, Some(parse_port(port).ok_or_else(|| bad_port(port))?))),
            None if rest[close + 1..].is_empty() => Ok((host, None)),
            None => Err(format!("`{p}` is not a host pattern")),
        };
    }
    // Colons inside `[a:b]` ranges do not count.
    let mut depth = 0i32;
    let mut colons = Vec::new();
    for (i, c) in p.char_indices() {
        match c {
            '[' => depth += 1,
            ']' => depth -= 1,
            ':' if depth == 0 => colons.push(i),
            _ => {}
        }
    }
    match colons.as_slice() {
        [] => Ok((p, None)),
        [i] => {
            let port = &p[i + 1..];
            if port.is_empty() {
                return Err(format!(
                    "`{p}` ends in `:`, which Ansible reserves for a port"
                ));
            }
            Ok((
                &p[..*i],
                Some(parse_port(port).ok_or_else(|| bad_port(port))?),
            ))
        }
        // A bare IPv6 address.
        _ => Ok((p, None)),
    }
}

fn parse_port(s: &str) -> Option<u16> {
    s.parse::<u16>().ok().filter(|p| *p > 0)
}

/// Expands the first `[BEG:END(:STEP)]` range, then the rest recursively.
fn expand_ranges(name: &str, out: &mut Vec<String>) -> Result<(), String> {
    let Some(open) = name.find('[') else {
        out.push(name.to_owned());
        return Ok(());
    };
    let Some(close_rel) = name[open..].find(']') else {
        return Err(format!("`{name}`: `[` without a closing `]`"));
    };
    let close = open + close_rel;
    let inner = &name[open + 1..close];
    if !inner.contains(':') {
        return Err(format!(
            "`{name}`: a range is written [BEGIN:END] or [BEGIN:END:STEP]"
        ));
    }
    let (head, tail) = (&name[..open], &name[close + 1..]);
    let parts: Vec<&str> = inner.split(':').collect();
    let (beg, end, step) = match parts.as_slice() {
        [b, e] => (*b, *e, "1"),
        [b, e, s] => (*b, *e, *s),
        _ => return Err(format!("`{name}`: a range has at most three parts")),
    };
    let beg = if beg.is_empty() { "0" } else { beg };
    if end.is_empty() {
        return Err(format!("`{name}`: the range has no end"));
    }
    let step: usize = step
        .parse()
        .ok()
        .filter(|s| *s > 0)
        .ok_or_else(|| format!("`{name}`: the step `{step}` is not a positive number"))?;
    let letter = |s: &str| {
        let b = s.as_bytes();
        (b.len() == 1 && b[0].is_ascii_alphabetic()).then_some(b[0])
    };
    let items: Vec<String> = if let (Some(b), Some(e)) = (letter(beg), letter(end)) {
        // Ansible indexes `string.ascii_letters`: a-z then A-Z.
        const LETTERS: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ";
        let (ib, ie) = (
            LETTERS.iter().position(|c| *c == b),
            LETTERS.iter().position(|c| *c == e),
        );
        match (ib, ie) {
            (Some(ib), Some(ie)) if ib <= ie => LETTERS[ib..=ie]
                .iter()
                .step_by(step)
                .map(|c| (*c as char).to_string())
                .collect(),
            _ => return Err(format!("`{name}`: the range's beginning is after its end")),
        }
    } else {
        let (Ok(b), Ok(e)) = (beg.parse::<u64>(), end.parse::<u64>()) else {
            return Err(format!(
                "`{name}`: a range goes from a number to a number or a letter to a letter"
            ));
        };
        if b > e {
            return Err(format!("`{name}`: the range's beginning is after its end"));
        }
        if (e - b) / step as u64 > 100_000 {
            return Err(format!("`{name}`: the range names more than 100,000 hosts"));
        }
        let width = if beg.len() > 1 && beg.starts_with('0') {
            if beg.len() != end.len() {
                return Err(format!(
                    "`{name}`: a zero-padded range needs a beginning and an end of the same width"
                ));
            }
            beg.len()
        } else {
            0
        };
        (b..=e)
            .step_by(step)
            .map(|n| format!("{n:0width$}"))
            .collect()
    };
    for i in items {
        expand_ranges(&format!("{head}{i}{tail}"), out)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_expand_as_ansible_does() {
        let e = |p: &str| expand(p).expect("a pattern");
        assert_eq!(e("web"), (vec!["web".to_owned()], None));
        assert_eq!(e("web:2222"), (vec!["web".to_owned()], Some(2222)));
        assert_eq!(e("fe80::1"), (vec!["fe80::1".to_owned()], None));
        assert_eq!(e("[fe80::1]:22"), (vec!["fe80::1".to_owned()], Some(22)));
        assert_eq!(
            e("web[08:10].x:23").0,
            vec!["web08.x", "web09.x", "web10.x"]
        );
        assert_eq!(e("db-[a:c]").0, vec!["db-a", "db-b", "db-c"]);
        assert_eq!(e("n[1:5:2]").0, vec!["n1", "n3", "n5"]);
        assert_eq!(e("r[1:2]-[a:b]").0, vec!["r1-a", "r1-b", "r2-a", "r2-b"]);
        for bad in [
            "web:",
            "web:0",
            "web:x",
            "w[1:]",
            "w[3:1]",
            "w[01:100]",
            "w[1:2",
            "w[a:3]",
        ] {
            assert!(expand(bad).is_err(), "{bad}");
        }
    }
}
