//! The real `pre-commit` (PyPI) running this repository's `.pre-commit-hooks.yaml` on a GitOps
//! repository with a Helm chart, an ignored vendor folder, a SealedSecret and the cluster's
//! certificate, as a user's `.pre-commit-config.yaml` would (issue 24, item 11).
//!
//! pre-commit names every changed file on the command line, so the hooks must skip what a
//! directory walk skips (a chart's Go templates, `.sealgateignore`d files), or they fail on any
//! repository with a chart.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use sealgate_testkit::process::{bin_dir, repo};

/// pre-commit: `SEALGATE_PRE_COMMIT`, else on PATH, else the venv `.ci/run` installs it into.
fn pre_commit() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("SEALGATE_PRE_COMMIT") {
        return Some(PathBuf::from(p));
    }
    let venv = std::env::var_os("HOME")
        .map(|h| Path::new(&h).join(".cache/sealgate/venv/bin/pre-commit"))
        .filter(|p| p.is_file());
    let on_path = Command::new("pre-commit")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
        .then(|| PathBuf::from("pre-commit"));
    on_path.or(venv)
}

fn run(cmd: &mut Command) -> Output {
    cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"))
}

fn ok(cmd: &mut Command) -> String {
    let out = sealgate_testkit::process::succeeded(format!("{cmd:?}"), cmd.output());
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn git(dir: &Path) -> Command {
    let mut c = Command::new("git");
    c.current_dir(dir)
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .args(["-c", "user.name=t", "-c", "user.email=t@example.com"])
        .args([
            "-c",
            "init.defaultBranch=main",
            "-c",
            "commit.gpgsign=false",
        ]);
    c
}

fn write(root: &Path, name: &str, text: &str) {
    let p = root.join(name);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, text).unwrap();
}

const CHART_TEMPLATE: &str = "apiVersion: apps/v1
kind: Deployment
metadata:
  name: {{ .Release.Name }}
spec:
  {{- if .Values.replicas }}
  replicas: {{ .Values.replicas }}
  {{- end }}
";

#[test]
fn the_hooks_run_under_pre_commit_on_a_repository_with_a_chart() {
    let Some(pre_commit) = pre_commit() else {
        sealgate_testkit::peer::missing(
            "pre-commit is not installed: pip install pre-commit==4.7.0 (or set SEALGATE_PRE_COMMIT)",
        );
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let path = format!(
        "{}:{}",
        bin_dir().display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let keys = tmp.path().join("keys");
    let sealgate = |dir: &Path| {
        let mut c = Command::new(bin_dir().join("sealgate"));
        c.current_dir(dir).env("SEALGATE_KEYS_DIR", &keys);
        c
    };

    // The hooks repository: this checkout's .pre-commit-hooks.yaml, committed (pre-commit
    // clones a repository at a revision).
    let hooks = tmp.path().join("hooks");
    std::fs::create_dir_all(&hooks).unwrap();
    std::fs::copy(
        repo().join(".pre-commit-hooks.yaml"),
        hooks.join(".pre-commit-hooks.yaml"),
    )
    .unwrap();
    ok(git(&hooks).arg("init").arg("-q"));
    ok(git(&hooks).args(["add", "."]));
    ok(git(&hooks).args(["commit", "-qm", "hooks"]));
    let rev = ok(git(&hooks).args(["rev-parse", "HEAD"]))
        .trim()
        .to_string();

    // The GitOps repository.
    let gitops = tmp.path().join("gitops");
    std::fs::create_dir_all(&gitops).unwrap();
    ok(sealgate(&gitops).args(["keys", "init", "--key-size", "2048"]));
    let cert = ok(sealgate(&gitops).arg("cert"));
    write(&gitops, "clusters/prod/cert.pem", &cert);
    write(
        &gitops,
        "secret.yaml",
        "apiVersion: v1\nkind: Secret\nmetadata: {name: db, namespace: shop}\nstringData: {password: hunter2}\n",
    );
    ok(sealgate(&gitops).args([
        "seal",
        "-f",
        "secret.yaml",
        "-w",
        "apps/shop/db.sealed.yaml",
    ]));
    std::fs::remove_file(gitops.join("secret.yaml")).unwrap();
    write(
        &gitops,
        "apps/shop/config.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: shop, namespace: shop}\ndata: {LEVEL: info}\n",
    );
    write(
        &gitops,
        "charts/web/Chart.yaml",
        "apiVersion: v2\nname: web\nversion: 0.1.0\n",
    );
    write(&gitops, "charts/web/values.yaml", "replicas: 2\n");
    write(
        &gitops,
        "charts/web/templates/deployment.yaml",
        CHART_TEMPLATE,
    );
    write(&gitops, ".sealgateignore", "vendor/\n");
    write(&gitops, "vendor/upstream.yaml", "kind: [unclosed\n");
    write(
        &gitops,
        ".pre-commit-config.yaml",
        &format!(
            "repos:\n  - repo: {}\n    rev: {rev}\n    hooks:\n      - id: sealgate-lint\n      - id: sealgate-validate\n        args: [--cert, clusters/prod/cert.pem]\n",
            hooks.display()
        ),
    );
    ok(git(&gitops).arg("init").arg("-q"));
    ok(git(&gitops).args(["add", "."]));

    let run_hooks = || {
        run(Command::new(&pre_commit)
            .current_dir(&gitops)
            .env("PATH", &path)
            .env("PRE_COMMIT_HOME", tmp.path().join("pre-commit-home"))
            .env("SEALGATE_KEYS_DIR", tmp.path().join("no-store"))
            .env("GIT_CONFIG_GLOBAL", "/dev/null")
            .args(["run", "--all-files", "--color", "never"]))
    };
    let out = run_hooks();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "the hooks failed:\n{text}");
    assert!(
        text.contains("sealgate lint") && text.contains("sealgate validate"),
        "{text}"
    );
    assert!(!text.contains("Skipped"), "a hook did not run:\n{text}");

    // The hooks do check: a plain Secret fails the lint hook, naming the policy.
    write(
        &gitops,
        "apps/shop/leak.yaml",
        "apiVersion: v1\nkind: Secret\nmetadata: {name: leak, namespace: shop}\nstringData: {token: abc}\n",
    );
    ok(git(&gitops).args(["add", "."]));
    let out = run_hooks();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(!out.status.success(), "a plain Secret passed:\n{text}");
    assert!(
        text.contains("apps/shop/leak.yaml:4: deny   SealgateNoPlaintextSecrets"),
        "{text}"
    );
}
