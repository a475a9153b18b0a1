//! The `local` driver: a playbook's own shell commands run on the controller (the machine
//! medic runs on), under the same rules as the ssh driver's generic `command` action: the
//! script is literal `sh` code (the loader refuses templates in it), values reach it only as
//! positional parameters (`arg1`, `arg2`... as `"$1"`, `"$2"`...), and it runs under
//! `timeout -k 10 SECS`, which signals the script's whole process group at the deadline.
//! No shell ever parses a value: the words go to `execve` as they are.

use std::process::Stdio;
use std::time::Duration;

use medic_exec::{ActionFuture, ActionReply, ActionRequest, ActionStatus, Driver};
use medic_model::Value;
use tokio::io::AsyncReadExt as _;

/// Most of a stream kept for the facts and messages; the rest is read and dropped, so a
/// chatty command neither blocks on a full pipe nor fills the controller's memory.
const KEEP: usize = 64 * 1024;

/// Time past the deadline for `timeout -k 10` to kill what ignored its first signal.
const GRACE: Duration = Duration::from_secs(15);

#[derive(Clone, Debug)]
pub struct LocalConfig {
    /// Deadline of a `command` action (as the ssh driver's default).
    pub command_timeout: Duration,
    /// Deadline of a `command-probe` check.
    pub probe_timeout: Duration,
}

impl Default for LocalConfig {
    fn default() -> Self {
        LocalConfig {
            command_timeout: Duration::from_secs(3600),
            probe_timeout: Duration::from_secs(120),
        }
    }
}

pub struct LocalDriver {
    cfg: LocalConfig,
}

impl LocalDriver {
    pub fn new(cfg: LocalConfig) -> Self {
        LocalDriver { cfg }
    }

    async fn shell(&self, req: &ActionRequest, key: &str, timeout: Duration) -> ActionReply {
        let refused = |m: String| ActionReply {
            status: ActionStatus::Refused(m),
            facts: Default::default(),
        };
        let Some(script) = req.args.get(key) else {
            return refused(format!("`{}` needs `args.{key}`", req.action));
        };
        if req.args.get("sudo").is_some_and(|v| v == "true") {
            return refused(format!(
                "`{}`: the local driver does not run commands with sudo on the controller; run medic as the user the command needs",
                req.action
            ));
        }
        let positional: Vec<&str> = (1..)
            .map_while(|i| req.args.get(&format!("arg{i}")).map(String::as_str))
            .collect();
        let secs = timeout.as_secs().max(1).to_string();
        let mut cmd = tokio::process::Command::new("timeout");
        cmd.args(["-k", "10", &secs, "sh", "-c", script, "medic-command"])
            .args(&positional)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let mut child = match cmd.spawn() {
            Ok(c) => c,
            Err(e) => return refused(format!("cannot start `sh` on the controller: {e}")),
        };
        let (Some(mut out), Some(mut err)) = (child.stdout.take(), child.stderr.take()) else {
            return refused("cannot read the command's output".to_owned());
        };
        let run = async {
            let (o, e) = tokio::join!(read_capped(&mut out), read_capped(&mut err));
            let status = child.wait().await;
            (o, e, status)
        };
        let (stdout, stderr, status) = match tokio::time::timeout(timeout + GRACE, run).await {
            Ok(r) => r,
            // The child is killed when dropped; `timeout` has already signalled its group.
            Err(_) => {
                return ActionReply::failed(format!(
                    "{key} on the controller did not end within {}s",
                    timeout.as_secs()
                ));
            }
        };
        let code = match status {
            Ok(s) => s.code().map_or(-1, i64::from),
            Err(e) => return ActionReply::failed(format!("{key} on the controller: {e}")),
        };
        let mut reply = if code == 0 {
            ActionReply::ok()
        } else {
            let what = match code {
                // timeout(1)'s own codes: the deadline passed (124), or it had to kill (137).
                124 | 137 => format!("timed out after {}s", timeout.as_secs()),
                c => format!("exit code {c}"),
            };
            ActionReply::failed(format!(
                "{key} on the controller ended with {what}: {}",
                crate::ssh::last_lines(&stdout, &stderr)
            ))
        };
        reply.facts.insert("exit".to_owned(), Value::Int(code));
        reply
            .facts
            .insert("output".to_owned(), Value::Str(stdout.trim().to_owned()));
        reply
    }
}

/// Reads a whole stream, keeping its first [`KEEP`] bytes as text.
async fn read_capped<R: tokio::io::AsyncRead + Unpin>(r: &mut R) -> String {
    let mut kept = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        match r.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                let room = KEEP.saturating_sub(kept.len());
                kept.extend_from_slice(&buf[..n.min(room)]);
            }
        }
    }
    String::from_utf8_lossy(&kept).into_owned()
}

impl Driver for LocalDriver {
    fn run(&self, req: ActionRequest) -> ActionFuture<'_> {
        Box::pin(async move {
            match req.action.as_str() {
                "command" => self.shell(&req, "command", self.cfg.command_timeout).await,
                "command-probe" => {
                    self.shell(&req, "check_command", self.cfg.probe_timeout)
                        .await
                }
                "noop" => ActionReply::ok(),
                other => ActionReply {
                    status: ActionStatus::Refused(format!(
                        "the local driver runs `command` (and the `command-probe` check), not `{other}`"
                    )),
                    facts: Default::default(),
                },
            }
        })
    }

    fn idempotent(&self, action: &str) -> bool {
        crate::actions::idempotent(crate::actions::LOCAL_ACTIONS, action)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    fn request(action: &str, args: &[(&str, &str)]) -> ActionRequest {
        ActionRequest {
            step: format!("p/{action}"),
            host: None,
            action: action.to_owned(),
            args: args
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect::<BTreeMap<_, _>>(),
            attempt: 1,
            after_ms: None,
            fence: None,
        }
    }

    /// A value with shell metacharacters arrives as one word, never as code.
    #[tokio::test]
    async fn values_are_positional_words_not_code() {
        let d = LocalDriver::new(LocalConfig::default());
        let evil = "x; echo pwned $(id) `id` '\"";
        let r = d
            .run(request(
                "command",
                &[("command", "printf '%s|%s' \"$1\" \"$#\""), ("arg1", evil)],
            ))
            .await;
        assert_eq!(r.status, ActionStatus::Ok);
        assert_eq!(
            r.facts.get("output"),
            Some(&Value::Str(format!("{evil}|1")))
        );
    }

    #[tokio::test]
    async fn a_failing_command_fails_with_its_exit_code_and_words() {
        let d = LocalDriver::new(LocalConfig::default());
        let r = d
            .run(request(
                "command",
                &[("command", "echo broken >&2; exit 3")],
            ))
            .await;
        match &r.status {
            ActionStatus::Failed(m) => {
                assert!(m.contains("exit code 3") && m.contains("broken"), "{m}");
            }
            s => panic!("expected a failure, got {s:?}"),
        }
        assert_eq!(r.facts.get("exit"), Some(&Value::Int(3)));
    }

    #[tokio::test]
    async fn a_hung_command_is_killed_at_its_deadline() {
        let d = LocalDriver::new(LocalConfig {
            command_timeout: Duration::from_secs(1),
            probe_timeout: Duration::from_secs(1),
        });
        let t = std::time::Instant::now();
        let r = d.run(request("command", &[("command", "sleep 30")])).await;
        assert!(t.elapsed() < Duration::from_secs(10), "{:?}", t.elapsed());
        match &r.status {
            ActionStatus::Failed(m) => assert!(m.contains("timed out after 1s"), "{m}"),
            s => panic!("expected a timeout, got {s:?}"),
        }
    }

    #[tokio::test]
    async fn other_actions_and_sudo_are_refused() {
        let d = LocalDriver::new(LocalConfig::default());
        let r = d.run(request("agent-upgrade", &[])).await;
        assert!(matches!(r.status, ActionStatus::Refused(_)), "{r:?}");
        let r = d
            .run(request("command", &[("command", "true"), ("sudo", "true")]))
            .await;
        assert!(matches!(r.status, ActionStatus::Refused(_)), "{r:?}");
        assert!(d.idempotent("command-probe") && !d.idempotent("command"));
    }
}
