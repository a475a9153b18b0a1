//! Every command block of README.md, so the README cannot drift from the program. The
//! convention is written in the README itself:
//! - a ```sh block is run as written by `sh -e` in a fresh directory holding copies of
//!   `examples/` and `playbooks/`, with the `medic` under test first on PATH; it must exit 0;
//! - a block after `<!-- readme-test: synopsis -->` is usage with placeholders: each
//!   `medic SUBCOMMAND` must exist and accept every option the line names;
//! - a block after `<!-- readme-test: skip: REASON -->` is not run; the reason is printed.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::util::repo_root;

#[derive(Debug)]
enum Kind {
    Run,
    Synopsis,
    Skip(String),
}

#[derive(Debug)]
struct Block {
    line: usize,
    kind: Kind,
    text: String,
}

fn blocks(readme: &str) -> Vec<Block> {
    let lines: Vec<&str> = readme.lines().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let fence = lines[i].trim();
        let shell = ["```sh", "```bash", "```shell", "```console"].contains(&fence);
        if !fence.starts_with("```") {
            i += 1;
            continue;
        }
        let start = i;
        let mut text = String::new();
        i += 1;
        while i < lines.len() && lines[i].trim() != "```" {
            text.push_str(lines[i]);
            text.push('\n');
            i += 1;
        }
        i += 1;
        if !shell {
            continue;
        }
        let marker = start
            .checked_sub(1)
            .map(|p| lines[p].trim())
            .and_then(|l| l.strip_prefix("<!-- readme-test:"))
            .and_then(|l| l.strip_suffix("-->"))
            .map(str::trim);
        let kind = match marker {
            None => Kind::Run,
            Some("synopsis") => Kind::Synopsis,
            Some(m) => match m.strip_prefix("skip:") {
                Some(reason) if !reason.trim().is_empty() => Kind::Skip(reason.trim().to_owned()),
                _ => panic!(
                    "README.md:{}: unknown readme-test marker `{m}` (use `synopsis` or `skip: REASON`)",
                    start
                ),
            },
        };
        out.push(Block {
            line: start + 1,
            kind,
            text,
        });
    }
    out
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("create a directory");
    for e in std::fs::read_dir(from).expect("read a directory") {
        let e = e.expect("a directory entry");
        let target = to.join(e.file_name());
        if e.file_type().expect("a file type").is_dir() {
            copy_dir(&e.path(), &target);
        } else {
            std::fs::copy(e.path(), &target).expect("copy a file");
        }
    }
}

fn medic() -> PathBuf {
    assert_cmd::cargo::cargo_bin("medic")
}

fn readme() -> String {
    std::fs::read_to_string(repo_root().join("README.md")).expect("read README.md")
}

#[test]
fn readme_blocks_run_as_written() {
    let all = blocks(&readme());
    let runnable: Vec<&Block> = all.iter().filter(|b| matches!(b.kind, Kind::Run)).collect();
    assert!(
        runnable.len() >= 2,
        "the README should have runnable blocks: {all:?}"
    );
    for b in &all {
        if let Kind::Skip(reason) = &b.kind {
            println!("README.md:{}: block skipped: {reason}", b.line);
        }
    }
    let bin_dir = medic().parent().expect("the binary's dir").to_path_buf();
    let path = format!(
        "{}:{}",
        bin_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    for b in runnable {
        let dir = tempfile::tempdir().expect("a temporary directory");
        copy_dir(&repo_root().join("examples"), &dir.path().join("examples"));
        copy_dir(
            &repo_root().join("playbooks"),
            &dir.path().join("playbooks"),
        );
        let started = std::time::Instant::now();
        let (code, stdout, stderr) = run_block(&b.text, dir.path(), &path);
        println!(
            "README.md:{}: block ran in {:.1} s",
            b.line,
            started.elapsed().as_secs_f64()
        );
        assert!(
            code == Some(0) && !stderr.contains("panicked"),
            "README.md:{}: the block failed ({code:?}; None: killed after {} s):\n{}\n--- stdout:\n{stdout}\n--- stderr:\n{stderr}",
            b.line,
            BLOCK_DEADLINE.as_secs(),
            b.text,
        );
    }
}

const BLOCK_DEADLINE: Duration = Duration::from_secs(300);

/// Runs a block with `sh -e` in its own process group, output to files (a command left
/// running, such as a run waiting for an approval, must not keep a pipe open), and kills
/// the whole group at the deadline or when the block ends. `None`: killed.
fn run_block(text: &str, dir: &std::path::Path, path: &str) -> (Option<i32>, String, String) {
    use std::os::unix::process::CommandExt;
    let out_path = dir.join(".readme-block.stdout");
    let err_path = dir.join(".readme-block.stderr");
    let mut child = std::process::Command::new("sh")
        .args(["-e", "-c", text])
        .current_dir(dir)
        .env("PATH", path)
        .env("NO_COLOR", "1")
        .env_remove("RUST_LOG")
        .stdin(std::process::Stdio::null())
        .stdout(std::fs::File::create(&out_path).expect("stdout file"))
        .stderr(std::fs::File::create(&err_path).expect("stderr file"))
        .process_group(0)
        .spawn()
        .expect("run sh");
    let group = child.id() as i32;
    let deadline = std::time::Instant::now() + BLOCK_DEADLINE;
    let code = loop {
        if let Some(status) = child.try_wait().expect("wait for sh") {
            break status.code();
        }
        if std::time::Instant::now() >= deadline {
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    // The block's own process group, which this test created (no unsafe code here).
    let _ = std::process::Command::new("kill")
        .args(["-KILL", "--", &format!("-{group}")])
        .stderr(std::process::Stdio::null())
        .status();
    let _ = child.wait();
    let read = |p: &std::path::Path| {
        String::from_utf8_lossy(&std::fs::read(p).unwrap_or_default()).into_owned()
    };
    (code, read(&out_path), read(&err_path))
}

/// The `medic` command lines of a synopsis block: continuation lines (a trailing `\` or
/// an indented line) joined, comments cut.
fn commands(text: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let mut continued = false;
    for raw in text.lines() {
        let line = raw.split(" #").next().unwrap_or("").trim_end();
        let body = line.trim_start();
        if body.is_empty() || body.starts_with('#') {
            continued = false;
            continue;
        }
        let joined = body.trim_end_matches('\\').to_owned();
        if (continued || raw.starts_with(' ')) && !body.starts_with("medic ") {
            if let Some(last) = out.last_mut() {
                last.push(' ');
                last.push_str(&joined);
            }
        } else {
            out.push(joined);
        }
        continued = line.ends_with('\\');
    }
    out.into_iter()
        .filter(|c| c.starts_with("medic "))
        .collect()
}

/// The options a command line names (`--flag`, `-i`), without brackets or values.
fn options(cmd: &str) -> Vec<String> {
    cmd.split_whitespace()
        .map(|w| w.trim_start_matches(['[', '(']))
        .filter(|w| w.starts_with('-') && w.len() > 1)
        .map(|w| {
            w.split(['=', ']', ')', '|'])
                .next()
                .unwrap_or(w)
                .trim_end_matches("...")
                .to_owned()
        })
        .filter(|w| (w.len() > 1 && w.as_bytes()[1].is_ascii_alphabetic()) || w.starts_with("--"))
        .collect()
}

#[test]
fn readme_synopses_name_only_real_subcommands_and_options() {
    let all = blocks(&readme());
    let synopses: Vec<&Block> = all
        .iter()
        .filter(|b| matches!(b.kind, Kind::Synopsis))
        .collect();
    assert!(!synopses.is_empty(), "the README has usage synopses");
    let mut helps: HashMap<String, String> = HashMap::new();
    let mut checked = 0;
    for b in synopses {
        for cmd in commands(&b.text) {
            let words: Vec<&str> = cmd.split_whitespace().collect();
            let mut sub = vec![words[1]];
            if words[1] == "inventory" || words[1] == "journal" {
                sub.push(words[2]);
            }
            let key = sub.join(" ");
            let help = helps.entry(key.clone()).or_insert_with(|| {
                let out = std::process::Command::new(medic())
                    .args(&sub)
                    .arg("--help")
                    .output()
                    .expect("run medic --help");
                assert!(
                    out.status.success(),
                    "README.md:{}: `medic {key}` is not a subcommand: {}",
                    b.line,
                    String::from_utf8_lossy(&out.stderr)
                );
                String::from_utf8_lossy(&out.stdout).into_owned()
            });
            for opt in options(&cmd) {
                let known = help.match_indices(opt.as_str()).any(|(i, _)| {
                    let next = help[i + opt.len()..].chars().next();
                    let prev = help[..i].chars().next_back();
                    !next.is_some_and(|c| c.is_ascii_alphanumeric() || c == '-')
                        && !prev.is_some_and(|c| c.is_ascii_alphanumeric() || c == '-')
                });
                assert!(
                    known,
                    "README.md:{}: `medic {key}` has no option `{opt}` (in `{cmd}`)",
                    b.line
                );
                checked += 1;
            }
        }
    }
    assert!(checked > 10, "only {checked} options were checked");
}

#[test]
fn synopsis_lines_are_read_as_commands_and_options() {
    let text = "# a comment\nmedic apply -i INV [--set K=V]... \\\n    [--window START/END]\n            [--yes] [--format text|json]\nmedic status --journal FILE   # while it runs\n";
    let cmds = commands(text);
    assert_eq!(cmds.len(), 2, "{cmds:?}");
    assert_eq!(
        options(&cmds[0]),
        ["-i", "--set", "--window", "--yes", "--format"]
    );
    assert_eq!(options(&cmds[1]), ["--journal"]);
}
