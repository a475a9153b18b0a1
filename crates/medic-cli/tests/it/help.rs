//! `--help` of every subcommand: each option and argument says what it is for.

use crate::util::TestEnv;

/// The subcommands listed in a help text's `Commands:` section (without `help`).
fn subcommands(help: &str) -> Vec<String> {
    section(help, "Commands:")
        .iter()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|c| *c != "help")
        .map(str::to_owned)
        .collect()
}

/// The lines of a section up to the next unindented line.
fn section<'a>(help: &'a str, title: &str) -> Vec<&'a str> {
    help.lines()
        .skip_while(|l| l.trim_end() != title)
        .skip(1)
        .take_while(|l| l.is_empty() || l.starts_with(' '))
        .filter(|l| !l.trim().is_empty() && l.len() - l.trim_start().len() <= 6)
        .collect()
}

/// The options and arguments of a help text that have no description.
fn undescribed(help: &str) -> Vec<String> {
    let lines: Vec<&str> = help.lines().collect();
    let mut missing = Vec::new();
    let mut in_section = false;
    for (i, line) in lines.iter().enumerate() {
        if !line.starts_with(' ') && !line.is_empty() {
            in_section = matches!(line.trim_end(), "Options:" | "Arguments:");
            continue;
        }
        let indent = line.len() - line.trim_start().len();
        let body = line.trim_start();
        let entry = in_section
            && indent <= 6
            && (body.starts_with('-') || body.starts_with('<') || body.starts_with('['));
        if !entry {
            continue;
        }
        // `  -i, --inventory <INV>  The fleet` (short help) or the next line, indented
        // deeper (long help).
        let same_line = body.split("  ").skip(1).any(|s| !s.trim().is_empty());
        let next_line = lines.get(i + 1).is_some_and(|n| {
            let ni = n.len() - n.trim_start().len();
            let nb = n.trim_start();
            !nb.is_empty() && ni > indent && !nb.starts_with(['-', '<', '['])
        });
        if !same_line && !next_line {
            missing.push(body.split("  ").next().unwrap_or(body).to_owned());
        }
    }
    missing
}

#[test]
fn every_option_of_every_subcommand_has_a_description() {
    let env = TestEnv::new();
    let top = env.run(["--help"]);
    top.assert_code(0);
    let mut todo: Vec<Vec<String>> = subcommands(&top.stdout)
        .into_iter()
        .map(|c| vec![c])
        .collect();
    assert!(todo.len() >= 8, "{}", top.stdout);
    let mut missing = Vec::new();
    let mut seen = 0;
    while let Some(path) = todo.pop() {
        let mut args = path.clone();
        args.push("--help".to_owned());
        let r = env.run(&args);
        r.assert_code(0);
        for sub in subcommands(&r.stdout) {
            let mut p = path.clone();
            p.push(sub);
            todo.push(p);
        }
        for short in ["-h"] {
            let mut a = path.clone();
            a.push(short.to_owned());
            let s = env.run(&a);
            s.assert_code(0);
            for m in undescribed(&s.stdout) {
                missing.push(format!("medic {} (-h): {m}", path.join(" ")));
            }
        }
        for m in undescribed(&r.stdout) {
            missing.push(format!("medic {}: {m}", path.join(" ")));
        }
        seen += 1;
    }
    assert!(seen >= 9, "only {seen} subcommands were walked");
    assert!(
        missing.is_empty(),
        "options without a description:\n{}",
        missing.join("\n")
    );
}

#[test]
fn the_sim_fault_help_says_what_times_means() {
    let env = TestEnv::new();
    let r = env.run(["apply", "--help"]);
    r.assert_code(0);
    let text = r.stdout.split_whitespace().collect::<Vec<_>>().join(" ");
    assert!(
        text.contains("fails its first TIMES attempts"),
        "{}",
        r.stdout
    );
}

#[test]
fn an_option_without_help_is_found() {
    let help = "Usage: x\n\nOptions:\n      --journal <FILE>\n\n      --yes\n          Approve every gate\n  -i, --inventory <INV>  The fleet\n\nArguments:\n  <GATE>\n";
    assert_eq!(undescribed(help), ["--journal <FILE>", "<GATE>"]);
}
