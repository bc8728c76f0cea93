//! Which files a directory walk lints: YAML and JSON, minus chart templates and ignored or hidden
//! paths.

use std::path::{Path, PathBuf};

use anyhow::{Result, bail};

/// Manifests under `paths`: files named explicitly, and *.yaml/*.yml/*.json found in directories.
pub fn discover(paths: &[PathBuf]) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for p in paths {
        if p.as_os_str() == "-" {
            // Standard input, e.g. `helm template . | sealgate lint -`.
            out.push(p.clone());
            continue;
        }
        if !p.exists() {
            bail!("{}: no such file or directory", p.display());
        }
        if p.is_file() {
            // Named files get the walk's rules too: pre-commit names every changed file, and a
            // chart's templates or an ignored file must not fail the hook.
            match skipped_because(p) {
                Some(why) => eprintln!(
                    "note: skipped {} ({why}; pipe it to `-` to check it anyway)",
                    p.display()
                ),
                None => out.push(p.clone()),
            }
            continue;
        }
        let walker = ignore::WalkBuilder::new(p)
            .hidden(true)
            .git_ignore(true)
            .require_git(false)
            .add_custom_ignore_filename(".sealgateignore")
            .filter_entry(|e| !is_chart_templates(e.path()))
            .build();
        for entry in walker {
            let entry = entry?;
            let path = entry.path();
            if entry.file_type().is_some_and(|t| t.is_file())
                && matches!(
                    path.extension().and_then(|e| e.to_str()),
                    Some("yaml" | "yml" | "json")
                )
            {
                out.push(path.to_path_buf());
            }
        }
    }
    out.sort();
    out.dedup();
    Ok(out)
}

/// Why a named file is one a directory walk would skip, if it is: hidden (in a relative path), in a
/// Helm chart's `templates/`, or matched by a `.sealgateignore` or `.gitignore` in its directory
/// or one above it (up to the repository root, the directory with `.git`).
fn skipped_because(file: &Path) -> Option<String> {
    // Only the path as named from the current directory (pre-commit names files from the
    // repository root): an absolute path may well pass through /tmp/.tmpXYZ.
    let hidden = file.is_relative()
        && file.components().any(|c| match c {
            std::path::Component::Normal(n) => n.to_str().is_some_and(|n| n.starts_with('.')),
            _ => false,
        });
    if hidden {
        return Some("a hidden file or directory".into());
    }
    let abs = std::path::absolute(file).ok()?;
    let mut dir = abs.parent();
    let mut decided = false;
    let mut reason = None;
    while let Some(d) = dir {
        if is_chart_templates(d) {
            return Some(format!(
                "a Helm chart's templates, not manifests: lint `helm template {}`'s output instead",
                d.parent().unwrap_or(d).display()
            ));
        }
        // The deepest ignore file with a rule for the file decides, as in git.
        for name in [".sealgateignore", ".gitignore"] {
            let rules = d.join(name);
            if decided || !rules.is_file() {
                continue;
            }
            let mut b = ignore::gitignore::GitignoreBuilder::new(d);
            if b.add(&rules).is_some() {
                continue;
            }
            let Ok(gi) = b.build() else { continue };
            match gi.matched_path_or_any_parents(&abs, false) {
                ignore::Match::Ignore(_) => {
                    decided = true;
                    reason = Some(format!("matched by {}", rules.display()));
                }
                ignore::Match::Whitelist(_) => decided = true,
                ignore::Match::None => {}
            }
        }
        if d.join(".git").exists() {
            break;
        }
        dir = d.parent();
    }
    reason
}

/// A Helm chart's `templates/` holds Go templates, not manifests.
fn is_chart_templates(p: &Path) -> bool {
    p.file_name().is_some_and(|n| n == "templates")
        && p.parent().is_some_and(|d| d.join("Chart.yaml").is_file())
}
