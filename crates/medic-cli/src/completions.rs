//! `medic completions SHELL` and `medic man`: generated from the clap types of `args.rs`,
//! so they can never drift from `--help`.

use clap::CommandFactory;
use clap_mangen::Man;

use crate::args::{Cli, CompletionShell, CompletionsArgs};
use crate::{Failure, exit_codes, write_out};

pub(crate) fn completions(a: &CompletionsArgs) -> Result<u8, Failure> {
    let shell = match a.shell {
        CompletionShell::Bash => clap_complete::Shell::Bash,
        CompletionShell::Zsh => clap_complete::Shell::Zsh,
        CompletionShell::Fish => clap_complete::Shell::Fish,
    };
    let mut cmd = Cli::command();
    let mut out = Vec::new();
    clap_complete::generate(shell, &mut cmd, "medic", &mut out);
    write_out(None, &utf8(out)?)?;
    Ok(exit_codes::OK)
}

/// One page for the whole tool: `medic man > medic.1` is all there is to install, so each
/// subcommand gets a subsection here instead of a `medic-apply(1)` page of its own.
pub(crate) fn man() -> Result<u8, Failure> {
    // Without it the page would document a `help` subcommand that only repeats --help.
    let mut cmd = Cli::command().disable_help_subcommand(true);
    cmd.build();
    let page = Man::new(cmd.clone()).title("MEDIC").manual("medic manual");
    let mut out = Vec::new();
    let io = |e: std::io::Error| Failure::Internal(format!("cannot render the manual page: {e}"));
    page.render_title(&mut out).map_err(io)?;
    page.render_name_section(&mut out).map_err(io)?;
    page.render_synopsis_section(&mut out).map_err(io)?;
    page.render_description_section(&mut out).map_err(io)?;
    page.render_options_section(&mut out).map_err(io)?;
    out.extend_from_slice(b".SH COMMANDS\n");
    for sub in cmd.get_subcommands() {
        command_section(sub, &mut out).map_err(io)?;
    }
    out.extend_from_slice(EXIT_STATUS.as_bytes());
    page.render_version_section(&mut out).map_err(io)?;
    write_out(None, &utf8(out)?)?;
    Ok(exit_codes::OK)
}

/// A subcommand's subsection (and those of its own subcommands): its synopsis, description,
/// options and closing notes, the sections clap_mangen renders for a page of its own
/// without their `.SH` headings, which would otherwise end the COMMANDS section.
fn command_section(cmd: &clap::Command, out: &mut Vec<u8>) -> std::io::Result<()> {
    let name = cmd.get_bin_name().unwrap_or_else(|| cmd.get_name());
    let page = Man::new(cmd.clone());
    out.extend_from_slice(format!(".SS \"{}\"\n", name.replace('"', "")).as_bytes());
    let body = |render: &dyn Fn(&mut Vec<u8>) -> std::io::Result<()>| {
        let mut part = Vec::new();
        render(&mut part)?;
        let text = String::from_utf8_lossy(&part).into_owned();
        let lines: Vec<&str> = text.lines().filter(|l| !l.starts_with(".SH ")).collect();
        std::io::Result::Ok(lines.join("\n") + "\n")
    };
    out.extend_from_slice(body(&|w| page.render_synopsis_section(w))?.as_bytes());
    out.extend_from_slice(b".PP\n");
    out.extend_from_slice(body(&|w| page.render_description_section(w))?.as_bytes());
    if cmd.get_arguments().any(|a| !a.is_hide_set()) {
        out.extend_from_slice(b".PP\n\\fIOptions:\\fR\n");
        out.extend_from_slice(body(&|w| page.render_options_section(w))?.as_bytes());
    }
    if cmd.get_after_help().is_some() || cmd.get_after_long_help().is_some() {
        // Written as laid out in --help (indented tables), so not refilled.
        out.extend_from_slice(b".PP\n.nf\n");
        out.extend_from_slice(body(&|w| page.render_extra_section(w))?.as_bytes());
        out.extend_from_slice(b".fi\n");
    }
    for sub in cmd.get_subcommands() {
        command_section(sub, out)?;
    }
    Ok(())
}

/// The exit codes of `exit_codes.rs`, as the README lists them.
const EXIT_STATUS: &str = "\
.SH \"EXIT STATUS\"
.TP
0
Success: everything ran and was verified (preflight: the plan can run).
.TP
1
The run finished with failed steps (preflight: at least one finding).
.TP
2
Bad input: nothing was run (also a real run refused by its pre-flight checks).
.TP
3
Stopped (window closed, budget exceeded, cancelled) and resumable with \\fBmedic resume\\fR.
.TP
4
An internal or IO error, e.g. a journal that cannot be written.
";

fn utf8(out: Vec<u8>) -> Result<String, Failure> {
    String::from_utf8(out).map_err(|e| Failure::Internal(format!("generated text: {e}")))
}
