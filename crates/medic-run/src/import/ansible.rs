//! `medic inventory import --ansible PATH`: reads an Ansible inventory (a file, or a
//! directory of them as Ansible reads one) with its `group_vars/` and `host_vars/`, and
//! merges it into the Manager's import (`medic_config::ansible`).

use std::path::{Path, PathBuf};

use medic_config::ansible::{AnsibleInventory, AnsibleSources, merge, read_ansible};
use medic_config::{SourceFile, write_inventory};

use crate::{Error as Failure, bad};

/// Ansible's `INVENTORY_IGNORE_EXTS` default: files a directory source skips.
const IGNORED_EXTS: [&str; 12] = [
    ".pyc", ".pyo", ".swp", ".bak", "~", ".rpm", ".md", ".txt", ".rst", ".orig", ".cfg", ".retry",
];
/// What a `group_vars/` or `host_vars/` file may be called (besides no extension).
const VARS_EXTS: [&str; 3] = ["yml", "yaml", "json"];

fn read_text(path: &Path) -> Result<SourceFile, Failure> {
    let name = path.display().to_string();
    let bytes = std::fs::read(path).map_err(|e| {
        bad(
            &name,
            format!("cannot read the Ansible inventory: {e}"),
            "pass an inventory file or a directory of them to --ansible",
        )
    })?;
    let text = String::from_utf8(bytes).map_err(|_| {
        bad(
            &name,
            "the file is not UTF-8 text",
            "pass Ansible's text inventory (INI, YAML or the JSON of `ansible-inventory --list`)",
        )
    })?;
    Ok(SourceFile::new(name, text))
}

fn sorted_entries(dir: &Path) -> Result<Vec<PathBuf>, Failure> {
    let rd = std::fs::read_dir(dir).map_err(|e| {
        bad(
            &dir.display().to_string(),
            format!("cannot read the directory: {e}"),
            "pass an inventory file or a directory of them to --ansible",
        )
    })?;
    let mut v: Vec<PathBuf> = rd.filter_map(|e| e.ok().map(|e| e.path())).collect();
    v.sort();
    Ok(v)
}

fn file_name(p: &Path) -> String {
    p.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// A directory source as Ansible walks it: sorted, recursively, skipping hidden files,
/// `group_vars`, `host_vars`, `vars_plugins` and the ignored extensions.
fn inventory_files(dir: &Path, out: &mut Vec<SourceFile>) -> Result<(), Failure> {
    for p in sorted_entries(dir)? {
        let n = file_name(&p);
        if n.starts_with('.')
            || matches!(n.as_str(), "group_vars" | "host_vars" | "vars_plugins")
            || IGNORED_EXTS.iter().any(|e| n.ends_with(e))
        {
            continue;
        }
        if p.is_dir() {
            inventory_files(&p, out)?;
        } else {
            out.push(read_text(&p)?);
        }
    }
    Ok(())
}

/// `group_vars/NAME[.yml|.yaml|.json]` and `group_vars/NAME/...` (every file inside).
fn vars_files(dir: &Path, out: &mut Vec<(String, SourceFile)>) -> Result<(), Failure> {
    if !dir.is_dir() {
        return Ok(());
    }
    fn inside(owner: &str, dir: &Path, out: &mut Vec<(String, SourceFile)>) -> Result<(), Failure> {
        for p in sorted_entries(dir)? {
            let n = file_name(&p);
            if n.starts_with('.') {
                continue;
            }
            if p.is_dir() {
                inside(owner, &p, out)?;
            } else if p
                .extension()
                .is_none_or(|e| VARS_EXTS.contains(&&*e.to_string_lossy()))
            {
                out.push((owner.to_owned(), read_text(&p)?));
            }
        }
        Ok(())
    }
    for p in sorted_entries(dir)? {
        let n = file_name(&p);
        if n.starts_with('.') {
            continue;
        }
        if p.is_dir() {
            inside(&n, &p, out)?;
            continue;
        }
        let (stem, ext) = match n.rsplit_once('.') {
            Some((s, e)) if VARS_EXTS.contains(&e) => (s.to_owned(), true),
            _ => (n.clone(), false),
        };
        if ext || !n.contains('.') {
            out.push((stem, read_text(&p)?));
        }
    }
    Ok(())
}

/// Reads `--ansible PATH`: every problem of every file at once (exit 2).
pub(super) fn read(path: &Path) -> Result<AnsibleInventory, Failure> {
    let mut src = AnsibleSources::default();
    let base = if path.is_dir() {
        inventory_files(path, &mut src.inventories)?;
        if src.inventories.is_empty() {
            return Err(bad(
                &path.display().to_string(),
                "the directory holds no inventory file",
                "pass an inventory file or a directory of them to --ansible",
            ));
        }
        path.to_path_buf()
    } else {
        src.inventories.push(read_text(path)?);
        path.parent().unwrap_or(Path::new(".")).to_path_buf()
    };
    vars_files(&base.join("group_vars"), &mut src.group_vars)?;
    vars_files(&base.join("host_vars"), &mut src.host_vars)?;
    read_ansible(&src).map_err(Failure::BadInput)
}

/// What the merge did, for the operator: a summary line and a note per decision.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MergeReport {
    pub summary: String,
    pub notes: Vec<String>,
}

/// The Manager's import with the Ansible inventory merged in, as inventory YAML; the
/// merge's summary and notes are written at the top of the text (after the Manager's own)
/// and returned for the caller to show.
pub(super) fn merged(
    imported: &medic_drivers::dsm::Imported,
    ans: &AnsibleInventory,
    source: &Path,
) -> super::Output {
    let m = merge(&imported.inventory, ans);
    let (matched, ans_only, dsm_only) = m.counts;
    let summary = format!(
        "Ansible inventory {}: {} hosts; {matched} matched a computer of the Manager, {ans_only} left out, {dsm_only} computer(s) not in it",
        source.display(),
        ans.hosts.len()
    );
    // The Manager's own notes (what its import left out or renamed) stay on top.
    let mut comments = imported.comments.clone();
    comments.push(format!("connection details and groups from the {summary}"));
    comments.extend(m.notes.iter().map(|n| format!("note: {n}")));
    super::Output {
        text: write_inventory(&m.inventory, &comments),
        ansible: Some(MergeReport {
            summary,
            notes: m.notes,
        }),
    }
}
