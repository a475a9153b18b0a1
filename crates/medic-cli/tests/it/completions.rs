//! `medic completions SHELL` and `medic man`: the scripts parse in their real shells and
//! complete what `--help` lists; the manual page is roff that `man` renders, naming every
//! subcommand and every option.

use std::path::Path;
use std::process::Command;

use crate::util::TestEnv;

/// Every subcommand path (`["inventory", "import"]`), read from the `Commands:` sections of
/// `--help`, so a new subcommand is covered without touching this test.
fn subcommand_paths(env: &TestEnv) -> Vec<Vec<String>> {
    let mut all = Vec::new();
    let mut todo = vec![Vec::<String>::new()];
    while let Some(path) = todo.pop() {
        let mut args = path.clone();
        args.push("--help".to_owned());
        let r = env.run(&args);
        r.assert_code(0);
        for sub in commands_section(&r.stdout) {
            let mut p = path.clone();
            p.push(sub);
            all.push(p.clone());
            todo.push(p);
        }
    }
    assert!(all.len() >= 10, "too few subcommands found: {all:?}");
    all
}

fn commands_section(help: &str) -> Vec<String> {
    help.lines()
        .skip_while(|l| l.trim_end() != "Commands:")
        .skip(1)
        .take_while(|l| l.is_empty() || l.starts_with(' '))
        .filter(|l| l.len() - l.trim_start().len() == 2)
        .filter_map(|l| l.split_whitespace().next())
        .filter(|c| *c != "help")
        .map(str::to_owned)
        .collect()
}

/// The long options (`--journal`) of one subcommand's `--help`.
fn long_options(env: &TestEnv, path: &[String]) -> Vec<String> {
    let mut args = path.to_vec();
    args.push("--help".to_owned());
    let r = env.run(&args);
    r.assert_code(0);
    r.stdout
        .lines()
        // An option's own line is indented by two; deeper lines are descriptions.
        .filter(|l| l.starts_with("  -") && !l.starts_with("   "))
        .filter_map(|l| {
            let l = l.trim_start();
            let l = match l.split_once(", ") {
                Some((short, long)) if short.len() == 2 => long,
                _ => l,
            };
            l.strip_prefix("--")
        })
        .filter_map(|l| l.split([' ', '\t', '[', '<']).next())
        .filter(|o| !o.is_empty())
        .map(|o| format!("--{o}"))
        .collect()
}

fn have(tool: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .output()
        .is_ok_and(|o| o.status.success())
}

/// Runs `shell ARGS...` and returns (success, stdout, stderr).
fn shell(shell: &str, args: &[&str]) -> (bool, String, String) {
    let out = Command::new(shell)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("run {shell}: {e}"));
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn script(env: &TestEnv, sh: &str, file: &str) -> std::path::PathBuf {
    let r = env.run(["completions", sh]);
    r.assert_code(0);
    if !r.stderr.is_empty() {
        r.fail("completions wrote to standard error");
    }
    env.write(file, &r.stdout)
}

#[test]
fn completions_bash_parses_and_completes_every_subcommand() {
    let env = TestEnv::new();
    let file = script(&env, "bash", "medic.bash");
    let (ok, _, err) = shell("bash", &["-n", &file.display().to_string()]);
    assert!(ok, "bash -n refused the completion script: {err}");

    // What bash offers after `medic ` and after `medic inventory `, asked the way
    // bash-completion asks: the script's `_medic` function with COMP_WORDS set.
    let complete = |words: &str, cword: usize| {
        let prog = format!(
            "source {}; COMP_WORDS=({words}); COMP_CWORD={cword}; COMP_LINE=\"${{COMP_WORDS[*]}}\"; \
             COMP_POINT=${{#COMP_LINE}}; _medic medic \"${{COMP_WORDS[$COMP_CWORD]}}\" \
             \"${{COMP_WORDS[$COMP_CWORD-1]}}\"; printf '%s\\n' \"${{COMPREPLY[@]}}\"",
            file.display()
        );
        let (ok, out, err) = shell("bash", &["-c", &prog]);
        assert!(ok, "bash completion of `{words}` failed: {err}");
        out.lines().map(str::to_owned).collect::<Vec<_>>()
    };
    for path in subcommand_paths(&env) {
        let (last, parents) = path.split_last().expect("a path has a subcommand");
        let mut words = vec!["medic".to_owned()];
        words.extend(parents.iter().cloned());
        words.push("''".to_owned());
        let offered = complete(&words.join(" "), words.len() - 1);
        assert!(
            offered.contains(last),
            "bash does not complete `{}` after `{}`: {offered:?}",
            last,
            words[..words.len() - 1].join(" ")
        );
    }
    // An option's fixed values come from the same clap types.
    let formats = complete("medic plan --format ''", 3);
    for f in ["text", "json", "dot", "mermaid", "markdown"] {
        assert!(formats.contains(&f.to_owned()), "{formats:?}");
    }
    let shells = complete("medic completions ''", 2);
    for sh in ["bash", "zsh", "fish"] {
        assert!(shells.contains(&sh.to_owned()), "{shells:?}");
    }
}

#[test]
fn completions_zsh_and_fish_parse_in_their_shells() {
    let env = TestEnv::new();
    for (sh, file) in [("zsh", "_medic"), ("fish", "medic.fish")] {
        let path = script(&env, sh, file);
        let text = std::fs::read_to_string(&path).expect("read the script");
        for sub in ["apply", "resume", "status", "import", "completions", "man"] {
            assert!(text.contains(sub), "the {sh} script never names `{sub}`");
        }
        if !have(sh) {
            println!("skipped: {sh} is not installed, so its script was not parsed");
            continue;
        }
        let (ok, _, err) = shell(sh, &["-n", &path.display().to_string()]);
        assert!(ok, "{sh} -n refused the completion script: {err}");
    }
}

#[test]
fn completions_fish_completes_subcommands_and_values() {
    let env = TestEnv::new();
    let path = script(&env, "fish", "medic.fish");
    if !have("fish") {
        println!("skipped: fish is not installed, so its completions were not asked for");
        return;
    }
    let ask = |line: &str| {
        let prog = format!("source {}; complete -C '{line}'", path.display());
        let (ok, out, err) = shell("fish", &["-c", &prog]);
        assert!(ok, "fish completion of `{line}` failed: {err}");
        out.lines()
            .filter_map(|l| l.split('\t').next())
            .map(str::to_owned)
            .collect::<Vec<_>>()
    };
    // clap_complete's fish script completes option values but not a positional's values
    // (`medic completions <SHELL>`), so that one is asked of bash only.
    for (line, want) in [
        ("medic ", "validate"),
        ("medic ", "completions"),
        ("medic inventory ", "import"),
        ("medic status --format ", "json"),
    ] {
        let got = ask(line);
        assert!(got.iter().any(|g| g == want), "`{line}` offers {got:?}");
    }
}

#[test]
fn completions_for_an_unknown_shell_is_refused() {
    let env = TestEnv::new();
    let r = env.run(["completions", "tcsh"]);
    r.assert_code(2);
    let first = r.stderr.lines().next().unwrap_or_default();
    assert!(
        first.starts_with("error: invalid value 'tcsh'"),
        "first line: {first}\n{}",
        r.stderr
    );
    assert!(r.stderr.contains("bash, zsh, fish"), "{}", r.stderr);
    assert!(r.stdout.is_empty(), "{}", r.stdout);
}

#[test]
fn man_page_is_roff_naming_every_subcommand_and_option() {
    let env = TestEnv::new();
    let r = env.run(["man"]);
    r.assert_code(0);
    let roff = &r.stdout;
    let th = roff
        .lines()
        .find(|l| !l.starts_with(".ie") && !l.starts_with(".el"));
    assert!(
        th.is_some_and(|l| l.starts_with(".TH MEDIC 1")),
        "not a roff page: {th:?}"
    );
    for section in [
        ".SH NAME",
        ".SH SYNOPSIS",
        ".SH COMMANDS",
        ".SH \"EXIT STATUS\"",
    ] {
        assert!(roff.contains(section), "no `{section}`");
    }
    // roff writes a hyphen as `\-`.
    let plain = roff.replace("\\-", "-");
    for path in subcommand_paths(&env) {
        let name = format!(".SS \"medic {}\"", path.join(" "));
        assert!(plain.contains(&name), "no subsection {name}");
        for opt in long_options(&env, &path) {
            assert!(
                plain.contains(&format!("\\fB{opt}\\fR")),
                "`medic {}` option {opt} is not in the manual page",
                path.join(" ")
            );
        }
    }

    let page = env.write("medic.1", roff);
    render(&page, &env);
}

/// The page renders with the system's `man` (or groff), with no warning other than a line
/// groff cannot justify, and the rendering names every subcommand.
fn render(page: &Path, env: &TestEnv) {
    let (tool, args): (&str, Vec<String>) = if have("man") {
        ("man", vec!["-l".into(), page.display().to_string()])
    } else if have("groff") {
        (
            "groff",
            ["-man", "-Tutf8", "-ww"]
                .map(str::to_owned)
                .into_iter()
                .chain([page.display().to_string()])
                .collect(),
        )
    } else {
        println!("skipped: neither man nor groff is installed, so the page was not rendered");
        return;
    };
    let out = Command::new(tool)
        .args(&args)
        .env("MANPAGER", "cat")
        .env("PAGER", "cat")
        .env("MANWIDTH", "100")
        .output()
        .unwrap_or_else(|e| panic!("run {tool}: {e}"));
    let text = String::from_utf8_lossy(&out.stdout);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{tool} failed: {err}");
    let warnings: Vec<&str> = err
        .lines()
        .filter(|l| !l.contains("cannot adjust line"))
        .collect();
    assert!(warnings.is_empty(), "{tool} warned: {warnings:?}");
    assert!(text.contains("EXIT STATUS"), "{text}");
    for path in subcommand_paths(env) {
        let name = format!("medic {}", path.join(" "));
        assert!(
            text.contains(&name),
            "the rendered page never shows `{name}`"
        );
    }
}
