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
/// to the capture (all but a marker's length, kept back in case the marker is split
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

