//! Docs that run: every shell block in README.md and docs/*.md is exercised.
//!
//! - ```` ```sh ````: run as shown with bash (`set -euo pipefail`), in a sandbox holding a copy of
//!   `examples/`, `deploy/` and `policies/`, with this workspace's binaries first on PATH and a
//!   throwaway HOME. The blocks of one document run in order, in one sandbox.
//! - ```` ```sh cluster ```` (needs a cluster) and ```` ```sh check ```` (names your own files):
//!   run the same way, but with `kubectl`, `helm`, `kind`, `k3d`, `docker`, `cargo`, `git` and `jq` stubbed
//!   and the sealgate binaries only checking their arguments (`SEALGATE_CHECK_ARGS=1`), so a
//!   renamed flag or subcommand fails here. `tests/kind.sh` runs the cluster flow for real.
//! - ```` ```sh ci ````: every command line must start a line of `.ci/run`, which CI runs.
//! - ```` ```yaml ````: must parse; `sealgate` commands in it (workflow steps) are argument-checked.

use sealgate_testkit::process::{bin_dir, repo};
use std::path::{Path, PathBuf};
use std::process::Command;

struct Block {
    info: String,
    body: String,
    line: usize,
}

fn blocks(md: &str) -> Vec<Block> {
    let mut out = Vec::new();
    let mut current: Option<Block> = None;
    for (i, line) in md.lines().enumerate() {
        match (&mut current, line.strip_prefix("```")) {
            (None, Some(info)) => {
                current = Some(Block {
                    info: info.trim().to_string(),
                    body: String::new(),
                    line: i + 1,
                })
            }
            (Some(_), Some("")) => out.push(current.take().unwrap()),
            (Some(b), _) => {
                b.body.push_str(line);
                b.body.push('\n');
            }
            (None, None) => {}
        }
    }
    out
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

const STUBS: &str = "kubectl() { :; }; helm() { :; }; kind() { :; }; k3d() { :; }; docker() { :; }; \
cargo() { :; }; git() { :; }; jq() { cat > /dev/null; }\n";

fn run(sandbox: &Path, script: &str, check_only: bool) -> std::process::Output {
    let path = format!(
        "{}:{}",
        bin_dir().display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let mut cmd = Command::new("bash");
    cmd.args(["-euo", "pipefail", "-c", script])
        .current_dir(sandbox)
        .env("PATH", path)
        .env("HOME", sandbox.join("home"))
        .env("XDG_CONFIG_HOME", sandbox.join("home/.config"))
        .env("RUST_BACKTRACE", "0");
    for (k, _) in std::env::vars() {
        if k.starts_with("SEALGATE_") || k == "KUBECONFIG" {
            cmd.env_remove(k);
        }
    }
    if check_only {
        cmd.env("SEALGATE_CHECK_ARGS", "1");
    }
    cmd.output().unwrap()
}

fn documents() -> Vec<PathBuf> {
    let mut docs: Vec<PathBuf> = std::fs::read_dir(repo().join("docs"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "md"))
        .collect();
    docs.sort();
    docs.insert(0, repo().join("README.md"));
    docs
}

#[test]
fn every_command_in_the_docs_runs() {
    let ci = std::fs::read_to_string(repo().join(".ci/run")).unwrap();
    let ci_lines: Vec<&str> = ci.lines().map(str::trim).collect();
    let mut counts = std::collections::BTreeMap::<String, usize>::new();
    let mut failures = Vec::new();
    for doc in documents() {
        let name = doc
            .strip_prefix(repo())
            .unwrap_or(&doc)
            .display()
            .to_string();
        let text = std::fs::read_to_string(&doc).unwrap();
        let sandbox = tempfile::tempdir().unwrap();
        for dir in ["examples", "deploy", "policies"] {
            copy_dir(&repo().join(dir), &sandbox.path().join(dir));
        }
        std::fs::create_dir_all(sandbox.path().join("home/.config")).unwrap();
        for b in blocks(&text) {
            let at = format!("{name}:{}", b.line);
            let outcome = match b.info.as_str() {
                "sh" => Some(run(sandbox.path(), &b.body, false)),
                "sh cluster" | "sh check" => {
                    Some(run(sandbox.path(), &format!("{STUBS}{}", b.body), true))
                }
                "sh ci" => {
                    for line in b.body.lines().map(str::trim).filter(|l| !l.is_empty()) {
                        // CI may add flags or a redirection after the command.
                        if !ci_lines.iter().any(|l| l.starts_with(line)) {
                            failures.push(format!("{at}: `{line}` is not a line of .ci/run"));
                        }
                    }
                    None
                }
                "yaml" => {
                    if let Err(e) =
                        sealgate_core::manifest::parse(b.body.as_bytes(), &Default::default())
                    {
                        failures.push(format!("{at}: the YAML does not parse: {e}"));
                    }
                    // Workflow steps (`run: sealgate …`) and GitLab script lines (`- sealgate …`).
                    let commands: String = b
                        .body
                        .lines()
                        .filter_map(|l| {
                            let l = l.trim_start();
                            let cmd = l.strip_prefix("run: ").or_else(|| l.strip_prefix("- "))?;
                            cmd.starts_with("sealgate ").then(|| format!("{cmd}\n"))
                        })
                        .collect();
                    (!commands.is_empty())
                        .then(|| run(sandbox.path(), &format!("{STUBS}{commands}"), true))
                }
                other => {
                    assert!(
                        !other.starts_with("sh"),
                        "{at}: unknown block kind {other:?}"
                    );
                    None
                }
            };
            *counts.entry(b.info.clone()).or_default() += 1;
            if let Some(out) = outcome
                && !out.status.success()
            {
                failures.push(format!(
                    "{at}: ```{} block failed ({})\n--- block\n{}--- stdout\n{}--- stderr\n{}",
                    b.info,
                    out.status,
                    b.body,
                    String::from_utf8_lossy(&out.stdout),
                    String::from_utf8_lossy(&out.stderr)
                ));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
    // The harness must have seen each kind of block, or it is checking nothing.
    for kind in ["sh", "sh cluster", "sh check", "sh ci", "yaml"] {
        assert!(
            counts.get(kind).copied().unwrap_or(0) > 0,
            "no ```{kind} block: {counts:?}"
        );
    }
}

/// The pre-commit hooks at the root run real sealgate commands.
#[test]
fn pre_commit_hooks_name_valid_commands() {
    let text = std::fs::read(repo().join(".pre-commit-hooks.yaml")).unwrap();
    let hooks = &sealgate_core::manifest::parse(&text, &Default::default()).unwrap()[0].value;
    let hooks = hooks.as_array().expect("a list of hooks");
    assert!(hooks.len() >= 2);
    let sandbox = tempfile::tempdir().unwrap();
    for h in hooks {
        let entry = h["entry"].as_str().unwrap();
        let command = &entry[entry.find("sealgate ").expect("runs sealgate")..];
        let out = run(sandbox.path(), &format!("{command} file.yaml\n"), true);
        assert!(
            out.status.success(),
            "{}: {}",
            h["id"],
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[test]
fn argument_checking_catches_a_renamed_flag() {
    let sandbox = tempfile::tempdir().unwrap();
    let out = run(sandbox.path(), "sealgate seal --no-such-flag\n", true);
    assert!(!out.status.success());
    let out = run(
        sandbox.path(),
        &format!("{STUBS}kubectl get secret -o yaml > k.yaml\nsealgate keys import k.yaml\n"),
        true,
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
