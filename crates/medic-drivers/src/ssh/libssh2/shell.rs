//! The shared shell's pure parts: the script, request lines and the framing of output.

use super::*;

/// The connection's long-lived POSIX `sh`: it reads one request line at a time (a token
/// and a command line), runs the command in a subshell with stdin from /dev/null, then
/// writes `\n<token> <exit code>\n` to stdout and `\n<token>\n` to stderr. Everything
/// before those markers is the command's output. Newlines of a command line (inside single
/// quotes, as [`crate::ssh::quote::sh_join`] writes them) travel as `'"$nl"'`.
pub(super) const SHARED_SHELL: &str = r#"nl='
'
while IFS= read -r medic_req; do
  medic_tok=${medic_req%% *}
  ( eval "${medic_req#* }" ) </dev/null
  medic_rc=$?
  printf '\n%s %s\n' "$medic_tok" "$medic_rc"
  printf '\n%s\n' "$medic_tok" >&2
done
"#;

pub(super) struct SharedShell {
    pub(super) channel: ssh2::Channel,
    /// Random per connection, so no output can end a command early by chance.
    pub(super) tag: u64,
    pub(super) seq: u64,
}

/// `line` as one request line of the shared shell, or `None` when it cannot be one (a
/// newline outside single quotes, double quotes around one).
pub(super) fn request_line(line: &str) -> Option<String> {
    if !line.contains('\n') {
        return Some(line.to_owned());
    }
    let mut out = String::with_capacity(line.len() + 16);
    let mut quoted = false;
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            '\'' => {
                quoted = !quoted;
                out.push(c);
            }
            '\n' if quoted => out.push_str("'\"$nl\"'"),
            '\n' | '"' if !quoted => return None,
            '\\' if !quoted => {
                out.push(c);
                match chars.next() {
                    Some('\n') | None => return None,
                    Some(n) => out.push(n),
                }
            }
            _ => out.push(c),
        }
    }
    (!quoted).then_some(out)
}

/// Cuts one command's output out of a shared-shell stream: the bytes before `marker` go
/// to the capture (all but a marker's length less one, kept back in case the marker is split
/// across reads), what follows the marker is the trailer.
pub(super) struct Framer {
    pub(super) marker: Vec<u8>,
    pub(super) pending: Vec<u8>,
    pub(super) trailer: Option<Vec<u8>>,
}

impl Framer {
    pub(super) fn new(marker: Vec<u8>) -> Self {
        Framer {
            marker,
            pending: Vec::new(),
            trailer: None,
        }
    }

    pub(super) fn push(&mut self, data: &[u8], capture: &mut Captured) {
        if let Some(t) = self.trailer.as_mut() {
            t.extend_from_slice(data);
            return;
        }
        self.pending.extend_from_slice(data);
        let m = self.marker.len();
        if let Some(at) = self
            .pending
            .windows(m)
            .position(|w| w == self.marker.as_slice())
        {
            capture.push(&self.pending[..at]);
            self.trailer = Some(self.pending[at + m..].to_vec());
            self.pending = Vec::new();
        } else if self.pending.len() >= m {
            let n = self.pending.len() - (m - 1);
            capture.push(&self.pending[..n]);
            self.pending.drain(..n);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io::{BufRead as _, BufReader, Write as _};
    use std::process::{Command, Stdio};

    use super::*;

    #[test]
    fn request_lines_keep_quoted_newlines_and_refuse_the_rest() {
        assert_eq!(request_line("echo hi").as_deref(), Some("echo hi"));
        assert_eq!(
            request_line("printf '%s' 'a\nb'").as_deref(),
            Some("printf '%s' 'a'\"$nl\"'b'")
        );
        for bad in [
            "echo a\necho b",
            "echo \"a\nb\"",
            "echo a\\\nb",
            "echo 'a\nb",
            "echo 'a\n' b\\",
        ] {
            assert_eq!(request_line(bad), None, "{bad:?}");
        }
        // An escaped quote outside quotes does not open a quoted part.
        assert_eq!(request_line("echo \\'\n'"), None);
    }

    fn framed(marker: &str, chunks: &[&[u8]]) -> (Vec<u8>, Option<Vec<u8>>) {
        let mut f = Framer::new(marker.as_bytes().to_vec());
        let mut cap = Captured::new(1 << 16);
        for c in chunks {
            f.push(c, &mut cap);
        }
        (cap.text().into_bytes(), f.trailer)
    }

    #[test]
    fn the_framer_cuts_at_the_marker_even_split_across_reads() {
        let whole: &[u8] = b"out\nput\n\nTOK 0\n";
        let (out, trailer) = framed("\nTOK ", &[whole]);
        assert_eq!(
            (out.as_slice(), trailer.as_deref()),
            (&b"out\nput\n"[..], Some(&b"0\n"[..]))
        );
        // Every split point, and one byte at a time.
        for at in 0..whole.len() {
            let (out, trailer) = framed("\nTOK ", &[&whole[..at], &whole[at..]]);
            assert_eq!(out, b"out\nput\n", "split at {at}");
            assert_eq!(trailer.as_deref(), Some(&b"0\n"[..]), "split at {at}");
        }
        let bytes: Vec<&[u8]> = whole.chunks(1).collect();
        assert_eq!(framed("\nTOK ", &bytes).1.as_deref(), Some(&b"0\n"[..]));
        // No marker yet: all but the bytes that may begin one is output, no trailer.
        let (out, trailer) = framed("\nTOK ", &[b"a long line of output\n\nTO"]);
        assert_eq!(out, b"a long line of output");
        assert!(trailer.is_none());
        // What comes after the marker stays trailer, even another marker.
        let (_, trailer) = framed("\nTOK ", &[b"x\nTOK 1\n", b"\nTOK 2\n"]);
        assert_eq!(trailer.as_deref(), Some(&b"1\n\nTOK 2\n"[..]));
    }

    /// The script itself, run by the local `sh`: a command's output, then its marker with
    /// the exit code; a quoted newline travels through `$nl`; stdin is not the request
    /// stream.
    #[test]
    fn the_shared_shell_script_frames_each_command() {
        let mut sh = Command::new("sh")
            .args(["-c", SHARED_SHELL])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("sh runs");
        let mut stdin = sh.stdin.take().expect("stdin");
        let line = request_line("printf '%s' 'a\nb'; cat; exit 3").expect("a request line");
        writeln!(stdin, "T1 {line}").expect("write");
        writeln!(stdin, "T2 true").expect("write");
        drop(stdin);
        let mut out = String::new();
        for l in BufReader::new(sh.stdout.take().expect("stdout")).lines() {
            out.push_str(&l.expect("utf-8"));
            out.push('\n');
        }
        assert!(sh.wait().expect("sh ends").success());
        assert_eq!(out, "a\nb\nT1 3\n\nT2 0\n");
    }
}
