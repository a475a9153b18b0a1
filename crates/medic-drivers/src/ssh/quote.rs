//! Quoting for the two remote shells medic talks to. Every value that reaches a remote
//! shell goes through here: a build number, a directory or a bundle name typed by an
//! operator must arrive at the remote program as one literal argument, whatever it holds
//! (`$(...)`, quotes, `;`, newlines).
//!
//! - Linux: POSIX single quotes. Inside `'...'` nothing is special except `'` itself, which
//!   is written `'\''`. A NUL byte cannot be carried by any shell and is refused.
//! - Windows: the script is a PowerShell script whose values are PowerShell single-quoted
//!   strings (`'` doubled; PowerShell also treats the typographic quotes U+2018..U+201B as
//!   single quotes, so they are doubled too), and the whole script is sent as
//!   `-EncodedCommand` (base64 of UTF-16LE), so `cmd.exe`, the default shell of Windows
//!   OpenSSH, never parses any of it.

use base64::Engine as _;

/// A value that no shell can carry.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("an argument contains a NUL byte, which no remote shell can carry")]
pub struct NulInArgument;

/// One POSIX-shell word that the shell turns back into exactly `s`.
pub fn sh_quote(s: &str) -> Result<String, NulInArgument> {
    if s.contains('\0') {
        return Err(NulInArgument);
    }
    let mut out = String::with_capacity(s.len() + 2);
    out.push('\'');
    for c in s.chars() {
        if c == '\'' {
            out.push_str("'\\''");
        } else {
            out.push(c);
        }
    }
    out.push('\'');
    Ok(out)
}

/// A POSIX command line whose words are exactly `words`.
pub fn sh_join<S: AsRef<str>>(words: &[S]) -> Result<String, NulInArgument> {
    let quoted: Result<Vec<String>, _> = words.iter().map(|w| sh_quote(w.as_ref())).collect();
    Ok(quoted?.join(" "))
}

/// Shell builtins with no program of the same name: a script starting with one needs a
/// shell.
const SHELL_ONLY: &[&str] = &[
    "alias", "bg", "break", "cd", "command", "continue", "eval", "exec", "exit", "export", "fc",
    "fg", "getopts", "hash", "jobs", "read", "readonly", "return", "set", "shift", "times", "trap",
    "type", "ulimit", "umask", "unalias", "unset", "wait",
];

/// The words of `script` when it is one simple command of plain words and whole-word
/// positional parameters (`dsa upgrade "$1"`), with `args` put in place of `"$N"`; `None`
/// when only a shell can run it (quotes, expansions, operators, globs, assignments,
/// builtins, an unset `$N`). Such a command is run without `sh -c`, which saves a process
/// per command on the host and runs exactly what the shell would have run.
pub fn simple_command<'a>(script: &'a str, args: &[&'a str]) -> Option<Vec<&'a str>> {
    let plain = |w: &str| {
        !w.is_empty()
            && w.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"_./:@%+,-".contains(&b))
    };
    let mut words = Vec::new();
    for (i, w) in script
        .split([' ', '\t'])
        .filter(|w| !w.is_empty())
        .enumerate()
    {
        let param = w
            .strip_prefix("\"$")
            .and_then(|r| r.strip_suffix('"'))
            .and_then(|n| n.parse::<usize>().ok())
            .filter(|n| (1..=9).contains(n));
        match param {
            Some(n) if i > 0 => words.push(*args.get(n - 1)?),
            Some(_) => return None,
            None if plain(w) => words.push(w),
            None => return None,
        }
    }
    match words.first() {
        Some(first) if !SHELL_ONLY.contains(first) && !first.starts_with('-') => Some(words),
        _ => None,
    }
}

/// A PowerShell single-quoted string literal whose value is exactly `s`.
pub fn ps_quote(s: &str) -> Result<String, NulInArgument> {
    if s.contains('\0') {
        return Err(NulInArgument);
    }
    let mut out = String::with_capacity(s.len() + 2);
    out.push('\'');
    for c in s.chars() {
        if matches!(c, '\'' | '\u{2018}' | '\u{2019}' | '\u{201A}' | '\u{201B}') {
            out.push(c);
        }
        out.push(c);
    }
    out.push('\'');
    Ok(out)
}

/// The `powershell.exe` command line that runs `script` without any shell parsing it.
pub fn powershell_command(script: &str) -> String {
    let utf16: Vec<u8> = script.encode_utf16().flat_map(u16::to_le_bytes).collect();
    let encoded = base64::engine::general_purpose::STANDARD.encode(utf16);
    format!(
        "powershell.exe -NoProfile -NonInteractive -ExecutionPolicy Bypass -EncodedCommand {encoded}"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn simple_commands_skip_the_shell_and_the_rest_keep_it() {
        let args = ["20.0.1.690", "a b; $(rm -rf /)"];
        assert_eq!(
            simple_command("dsa upgrade \"$1\"", &args),
            Some(vec!["dsa", "upgrade", "20.0.1.690"])
        );
        // A hostile value stays one word: it is never parsed.
        assert_eq!(
            simple_command("/opt/ds_agent/dsa_control -m \"$2\"", &args),
            Some(vec!["/opt/ds_agent/dsa_control", "-m", "a b; $(rm -rf /)"])
        );
        assert_eq!(
            simple_command("  dsa\tversion ", &[]),
            Some(vec!["dsa", "version"])
        );
        for needs_a_shell in [
            "dsa version | head -1",
            "dsa upgrade $1",
            "dsa upgrade '$1'",
            "dsa upgrade \"$3\"",
            "cd /tmp",
            "exit 3",
            "X=1 dsa version",
            "dsa *",
            "~/bin/dsa",
            "dsa version # note",
            "dsa version; dsa status",
            "dsa version\ndsa status",
            "\"$1\" version",
            "",
        ] {
            assert_eq!(
                simple_command(needs_a_shell, &args),
                None,
                "{needs_a_shell}"
            );
        }
    }

    #[test]
    fn sh_quote_keeps_everything_literal() {
        assert_eq!(sh_quote("plain").expect("test value"), "'plain'");
        assert_eq!(sh_quote("").expect("test value"), "''");
        assert_eq!(sh_quote("it's").expect("test value"), "'it'\\''s'");
        assert_eq!(
            sh_quote("$(touch x); `y`\n").expect("test value"),
            "'$(touch x); `y`\n'"
        );
        assert_eq!(sh_quote("a\0b"), Err(NulInArgument));
        assert_eq!(sh_join(&["a b", "c"]).expect("test value"), "'a b' 'c'");
    }

    #[test]
    fn sh_quote_round_trips_through_a_real_shell() {
        let hostile = [
            "$(touch /nonexistent/pwned)",
            "a'b\"c",
            "x; echo injected",
            "line1\nline2",
            "`id`",
            "*",
            "-n",
            "\\",
            "'",
            "",
        ];
        for s in hostile {
            let line = format!("printf '%s' {}", sh_quote(s).expect("test value"));
            let out = std::process::Command::new("/bin/sh")
                .arg("-c")
                .arg(&line)
                .output()
                .expect("test value");
            assert_eq!(
                String::from_utf8(out.stdout).expect("test value"),
                s,
                "{line}"
            );
        }
    }

    #[test]
    fn ps_quote_doubles_every_single_quote_form() {
        assert_eq!(ps_quote("a'b").expect("test value"), "'a''b'");
        assert_eq!(
            ps_quote("\u{2019}").expect("test value"),
            "'\u{2019}\u{2019}'"
        );
        assert_eq!(
            ps_quote("$env:PATH; \"x\"").expect("test value"),
            "'$env:PATH; \"x\"'"
        );
        assert_eq!(ps_quote("a\0"), Err(NulInArgument));
    }

    #[test]
    fn powershell_command_is_utf16le_base64() {
        let line = powershell_command("'é'");
        let b64 = line.rsplit(' ').next().expect("test value");
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(b64)
            .expect("test value");
        assert_eq!(bytes, vec![0x27, 0, 0xE9, 0, 0x27, 0]);
        assert!(!line.contains('\''));
    }
}
