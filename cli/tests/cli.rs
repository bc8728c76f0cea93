//! The real `sealgate` binary, end to end: exit codes, messages, files written or not.

use std::path::{Path, PathBuf};

use assert_cmd::Command;
use predicates::prelude::*;
use predicates::str::contains;
use sealgate_testkit::files::mode;
use sealgate_testkit::process::succeeded;

/// A throwaway key store and working directory.
struct Env {
    dir: tempfile::TempDir,
}

impl Env {
    fn new() -> Env {
        Env {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    fn keys(&self) -> PathBuf {
        self.dir.path().join("keys")
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn write(&self, name: &str, text: &str) -> PathBuf {
        let p = self.path(name);
        if let Some(dir) = p.parent() {
            std::fs::create_dir_all(dir).unwrap();
        }
        std::fs::write(&p, text).unwrap();
        p
    }

    /// `sealgate` with this env's key store.
    fn cmd(&self) -> Command {
        let mut c = Command::cargo_bin("sealgate").unwrap();
        c.env("SEALGATE_KEYS_DIR", self.keys())
            .env_remove("SEALGATE_CERT")
            .current_dir(self.dir.path());
        c
    }

    /// `sealgate seal FLAGS -f INPUT -w OUT`, which must succeed.
    fn seal(&self, flags: &[&str], input: &Path, out: impl AsRef<Path>) {
        self.cmd()
            .arg("seal")
            .args(flags)
            .arg("-f")
            .arg(input)
            .arg("-w")
            .arg(out.as_ref())
            .assert()
            .success();
    }

    fn init(&self) -> &Env {
        self.cmd()
            .args(["keys", "init", "--key-size", "2048"])
            .assert()
            .success();
        self
    }

    /// The key file of the store's newest key.
    fn newest_key_file(&self) -> PathBuf {
        let list = self
            .cmd()
            .args(["keys", "list", "-o", "json"])
            .output()
            .unwrap()
            .stdout;
        let keys: serde_json::Value = serde_json::from_slice(&list).unwrap();
        let short = &keys[0]["id"].as_str().unwrap()[..16];
        self.keys().join(format!("sealgate-key-{short}.yaml"))
    }
}

const SECRET: &str = "apiVersion: v1
kind: Secret
metadata:
  name: db
  namespace: shop
  labels: {app: shop}
  annotations:
    kubectl.kubernetes.io/last-applied-configuration: '{\"stringData\":{\"password\":\"hunter2-plaintext\"}}'
  uid: 0d9c-uid
  resourceVersion: \"42\"
type: Opaque
stringData:
  password: hunter2-plaintext
data:
  blob: AAEC/w==
";

fn stdout(out: &assert_cmd::assert::Assert) -> String {
    String::from_utf8(out.get_output().stdout.clone()).unwrap()
}

#[test]
fn keys_init_is_idempotent_and_private() {
    let env = Env::new();
    env.init();
    env.cmd()
        .args(["keys", "init"])
        .assert()
        .success()
        .stdout(contains("already has 1 key"));
    let files: Vec<_> = std::fs::read_dir(env.keys())
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(files.len(), 1);
    assert_eq!(mode(&files[0]), 0o600);
    let text = std::fs::read_to_string(&files[0]).unwrap();
    assert!(
        text.contains("sealgate.dev/sealing-key: active") && text.contains("kubernetes.io/tls"),
        "{text}"
    );

    env.cmd()
        .args(["keys", "rotate", "--key-size", "2048"])
        .assert()
        .success();
    let list = env
        .cmd()
        .args(["keys", "list", "-o", "json"])
        .assert()
        .success();
    let keys: serde_json::Value = serde_json::from_str(&stdout(&list)).unwrap();
    assert_eq!(keys.as_array().unwrap().len(), 2);
    assert_eq!(keys[0]["newest"], true);
    env.cmd()
        .args(["keys", "list"])
        .assert()
        .success()
        .stdout(contains("(newest: used for sealing)"));

    let pem = env.cmd().args(["keys", "export-public"]).assert().success();
    let pem = stdout(&pem);
    assert_eq!(pem.matches("BEGIN CERTIFICATE").count(), 1);
    assert!(!pem.contains("PRIVATE"));
    env.cmd()
        .args(["keys", "export-public", "--all"])
        .assert()
        .success()
        .stdout(contains("BEGIN CERTIFICATE").count(2));
    env.cmd()
        .args(["keys", "export-public", "--age"])
        .assert()
        .success()
        .stdout(contains("age1"));
    env.cmd()
        .args(["keys", "rotate", "--key-size", "1024"])
        .assert()
        .code(2)
        .stderr(contains("unsupported RSA key size"));
}

#[test]
fn seal_validate_unseal_round_trip_in_both_formats() {
    let env = Env::new();
    env.init();
    let input = env.write("secret.yaml", SECRET);
    for format in ["age", "kubeseal"] {
        let sealed = env.path(&format!("sealed-{format}.yaml"));
        env.cmd()
            .args(["seal", "--value-format", format, "-f"])
            .arg(&input)
            .arg("-w")
            .arg(&sealed)
            .assert()
            .success()
            .stdout("");
        let text = std::fs::read_to_string(&sealed).unwrap();
        assert!(
            !text.contains("hunter2"),
            "plaintext in the SealedSecret:\n{text}"
        );
        // Keys, not substrings: the base64 ciphertext may spell "uid" by chance.
        assert!(
            !text.contains("last-applied")
                && !text.contains("uid:")
                && !text.contains("resourceVersion:"),
            "{text}"
        );
        assert!(text.contains("sealgate.dev/scope: strict"), "{text}");

        env.cmd()
            .arg("validate")
            .arg(&sealed)
            .assert()
            .success()
            .stdout(contains("1 passed, 0 failed"));
        env.cmd()
            .args(["validate", "--decrypt"])
            .arg(&sealed)
            .assert()
            .success()
            .stdout(contains("decrypted"));

        let out = env
            .cmd()
            .args(["unseal", "-f"])
            .arg(&sealed)
            .assert()
            .success();
        let out = stdout(&out);
        assert!(out.contains("password: aHVudGVyMi1wbGFpbnRleHQ="), "{out}"); // base64("hunter2-plaintext")
        assert!(out.contains("blob: AAEC/w=="), "{out}");
        assert!(
            out.contains("app: shop") && out.contains("namespace: shop"),
            "{out}"
        );
    }
}

#[test]
fn stdin_to_stdout_json_and_multi_document() {
    let env = Env::new();
    env.init();
    let two = format!("{SECRET}---\n{}", SECRET.replace("name: db", "name: db2"));
    let out = env
        .cmd()
        .args(["seal", "-o", "json"])
        .write_stdin(two)
        .assert()
        .success();
    let out = stdout(&out);
    let docs: Vec<serde_json::Value> = serde_json::Deserializer::from_str(&out)
        .into_iter()
        .map(Result::unwrap)
        .collect();
    assert_eq!(docs.len(), 2);
    assert_eq!(docs[1]["metadata"]["name"], "db2");
    // A JSON stream is accepted as input too, and `-w x.json` picks JSON.
    env.write("sealed.json", &out);
    env.cmd()
        .args(["unseal", "-f", "sealed.json", "-w", "plain.json"])
        .assert()
        .success();
    let plain = std::fs::read_to_string(env.path("plain.json")).unwrap();
    assert!(plain.trim_start().starts_with('{'), "{plain}");
    assert_eq!(
        mode(env.path("plain.json")),
        0o600,
        "unsealed plaintext must be owner-only"
    );
}

/// Lists, as `kubectl get secrets -o yaml` and `kubectl get sealedsecrets -o yaml` print them:
/// `seal` seals each Secret of a `SecretList`, `validate` checks and `unseal` opens each
/// SealedSecret of a `v1 List`, each at its own line (a List was one unknown document before:
/// `validate` said "no SealedSecrets found").
#[test]
fn lists_are_their_items_for_seal_validate_and_unseal() {
    let env = Env::new();
    env.init();
    let indent = |doc: &str| {
        doc.lines()
            .enumerate()
            .map(|(i, l)| {
                if i == 0 {
                    format!("  - {l}\n")
                } else {
                    format!("    {l}\n")
                }
            })
            .collect::<String>()
    };
    let second = SECRET.replace("name: db", "name: db2");
    let secrets = format!(
        "apiVersion: v1\nkind: SecretList\nitems:\n{}{}",
        indent(SECRET),
        indent(&second)
    );
    let sealed = stdout(
        &env.cmd()
            .arg("seal")
            .write_stdin(secrets)
            .assert()
            .success(),
    );
    let docs: Vec<&str> = sealed.split("\n---\n").collect();
    assert_eq!(docs.len(), 2, "{sealed}");
    let list = format!(
        "apiVersion: v1\nkind: List\nmetadata: {{resourceVersion: \"\"}}\nitems:\n{}{}",
        indent(docs[0].trim_start_matches("---\n")),
        indent(docs[1])
    );
    env.write("backup.yaml", &list);
    let out = stdout(
        &env.cmd()
            .args(["validate", "backup.yaml"])
            .assert()
            .success(),
    );
    assert!(
        out.contains("ok    backup.yaml:5 (document 1, SealedSecret shop/db)")
            && out.contains("SealedSecret shop/db2")
            && out.ends_with("2 passed, 0 failed\n"),
        "{out}"
    );
    let plain = stdout(
        &env.cmd()
            .args(["unseal", "-f", "backup.yaml"])
            .assert()
            .success(),
    );
    assert_eq!(plain.matches("kind: Secret").count(), 2, "{plain}");
    assert!(plain.contains("name: db2"), "{plain}");
}

/// Every bad input: exit 2, a message naming the place, no output file, and no plaintext echoed.
#[test]
fn bad_input_is_a_clear_error_with_exit_2_and_no_output_file() {
    let env = Env::new();
    env.init();
    let bomb = "a: &a [x,x,x,x,x,x,x,x,x]\nb: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]\nc: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]\nd: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]\ne: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]\nf: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e]\ng: &g [*f,*f,*f,*f,*f,*f,*f,*f,*f]\n";
    let cases: &[(&str, &str, &str)] = &[
        (
            "configmap",
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x, namespace: y}\n",
            "expected a v1 Secret, found v1 ConfigMap",
        ),
        (
            "noname",
            "apiVersion: v1\nkind: Secret\nmetadata: {namespace: y}\nstringData: {a: hunter2}\n",
            "missing metadata.name",
        ),
        (
            "nons",
            "apiVersion: v1\nkind: Secret\nmetadata: {name: x}\nstringData: {a: hunter2}\n",
            "has no namespace",
        ),
        (
            "b64",
            "apiVersion: v1\nkind: Secret\nmetadata: {name: x, namespace: y}\ndata:\n  password: hunter2!!\n",
            "data.password: not valid base64",
        ),
        (
            "yaml",
            "apiVersion: v1\nkind: Secret\nmetadata: {name: x, namespace: y}\nstringData:\n  password: hunter2\n  other: [oops\n",
            "bad-yaml.yaml:6:",
        ),
        ("empty", "", "no Secrets found"),
        (
            "emptydata",
            "apiVersion: v1\nkind: Secret\nmetadata: {name: x, namespace: y}\n",
            "--allow-empty-data",
        ),
        ("bomb", bomb, "bad-bomb.yaml"),
        (
            "dup",
            "apiVersion: v1\nkind: Secret\nmetadata: {name: x, namespace: y}\nstringData:\n  password: hunter2\n  password: other\n",
            "bad-dup.yaml:",
        ),
    ];
    for (name, text, want) in cases {
        let f = env.write(&format!("bad-{name}.yaml"), text);
        let out = env.path(&format!("out-{name}.yaml"));
        let a = env
            .cmd()
            .args(["seal", "-f"])
            .arg(&f)
            .arg("-w")
            .arg(&out)
            .assert()
            .code(2)
            .stderr(contains(*want));
        let err = String::from_utf8_lossy(&a.get_output().stderr).to_string();
        assert!(
            !err.contains("hunter2"),
            "{name}: plaintext in the error: {err}"
        );
        assert!(!out.exists(), "{name}: an output file was written");
    }
    // Where: file, line, document, object.
    let f = env.write("two.yaml", &format!("{SECRET}---\napiVersion: v1\nkind: Secret\nmetadata: {{name: x, namespace: y}}\ndata: {{k: '%%%'}}\n"));
    env.cmd()
        .args(["seal", "-f"])
        .arg(&f)
        .assert()
        .code(2)
        .stderr(contains(
            "two.yaml:17 (document 2, Secret y/x): data.k: not valid base64",
        ));
    // A binary file and a missing file.
    std::fs::write(env.path("bin.yaml"), [0u8, 159, 146, 150, 0xff]).unwrap();
    env.cmd()
        .args(["seal", "-f", "bin.yaml"])
        .assert()
        .code(2)
        .stderr(contains("not UTF-8"));
    env.cmd()
        .args(["seal", "-f", "missing.yaml"])
        .assert()
        .code(2)
        .stderr(contains("cannot read missing.yaml"));
    // Usage errors are 2 as well.
    env.cmd()
        .args(["seal", "--scope", "galaxy"])
        .assert()
        .code(2);
}

#[test]
fn unseal_with_the_wrong_key_fails_with_exit_1_and_writes_nothing() {
    let a = Env::new();
    a.init();
    let b = Env::new();
    b.init();
    let input = a.write("secret.yaml", SECRET);
    a.seal(&[], &input, "sealed.yaml");
    let sealed = a.path("sealed.yaml");
    let out = b.path("out.yaml");
    b.cmd()
        .args(["unseal", "-f"])
        .arg(&sealed)
        .arg("-w")
        .arg(&out)
        .assert()
        .code(1)
        .stderr(contains("no sealing key could decrypt").and(contains("nothing was written")));
    assert!(!out.exists());
    b.cmd()
        .args(["unseal", "-f"])
        .arg(&sealed)
        .assert()
        .code(1)
        .stdout("");
    b.cmd()
        .args(["validate", "--decrypt"])
        .arg(&sealed)
        .assert()
        .code(1)
        .stdout(contains("0 passed, 1 failed"));
    // An empty key store is a usage problem, with the fix in the message: the keys that sealed
    // the values, never a new one (`keys init` was suggested before).
    let c = Env::new();
    c.cmd()
        .args(["unseal", "-f"])
        .arg(&sealed)
        .assert()
        .code(2)
        .stderr(contains("sealgate keys import").and(contains("keys init").not()));
}

#[test]
fn moved_sealed_secret_is_refused() {
    let env = Env::new();
    env.init();
    let input = env.write("secret.yaml", SECRET);
    let sealed = env
        .cmd()
        .args(["seal", "-f"])
        .arg(&input)
        .assert()
        .success();
    let moved = stdout(&sealed).replace("namespace: shop", "namespace: attacker");
    env.write("moved.yaml", &moved);
    env.cmd()
        .args(["unseal", "-f", "moved.yaml"])
        .assert()
        .code(1)
        .stderr(
            contains("sealed for item \"blob\" of shop/db (strict scope)")
                .and(contains("attacker/db"))
                // All or nothing: the first item that fails ends it.
                .and(contains("1 other item(s) not tried")),
        );
}

#[test]
fn validate_reports_each_object_and_fails_bad_ones() {
    let env = Env::new();
    env.init();
    let input = env.write("secret.yaml", SECRET);
    std::fs::create_dir_all(env.path("repo/apps/.git")).unwrap();
    env.seal(&[], &input, "repo/apps/good.yaml");
    let good = std::fs::read_to_string(env.path("repo/apps/good.yaml")).unwrap();
    let bad = good.replace(
        "sealgate.dev/scope: strict",
        "sealgate.dev/scope: galaxy-wide",
    );
    let mut lines: Vec<String> = good.lines().map(String::from).collect();
    let pw = lines
        .iter()
        .position(|l| l.trim_start().starts_with("password:"))
        .unwrap();
    lines[pw] = "    password: '!!!notbase64'".into();
    env.write(
        "repo/apps/bad.yaml",
        &format!("{bad}---\n{}\n", lines.join("\n")),
    );
    env.write(
        "repo/apps/deploy.yaml",
        "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: x}\n",
    );
    env.write("repo/apps/.git/ignored.yaml", "kind: [");
    // `validate DIR` walks as `lint DIR` does: .gitignore, .sealgateignore and a Helm chart's
    // templates/ (Go templates, not YAML) are skipped; any of these files would be a parse error.
    env.write("repo/.gitignore", "generated/\n");
    env.write("repo/generated/out.yaml", "kind: [");
    env.write("repo/.sealgateignore", "vendor/\n");
    env.write("repo/vendor/upstream.yaml", "kind: [");
    env.write(
        "repo/chart/Chart.yaml",
        "apiVersion: v2\nname: c\nversion: 0.1.0\n",
    );
    env.write(
        "repo/chart/templates/s.yaml",
        "{{ if .Values.x }}\nkind: [\n{{ end }}\n",
    );
    let a = env.cmd().args(["validate", "repo"]).assert().code(1);
    let out = stdout(&a);
    assert!(out.contains("1 passed, 2 failed"), "{out}");
    assert!(
        out.contains("sealgate.dev/scope") && out.contains("galaxy-wide"),
        "{out}"
    );
    assert!(
        out.contains("spec.encryptedData.password: not valid base64"),
        "{out}"
    );
    // A file that does not parse: reported, exit 2.
    env.write("broken.yaml", "kind: SealedSecret\nspec: [\n");
    env.cmd()
        .args(["validate", "broken.yaml"])
        .assert()
        .code(2)
        .stdout(contains("broken.yaml:"));
    // Another cluster's key size: caught with only the public certificate.
    let other = Env::new();
    other
        .cmd()
        .args(["keys", "init", "--key-size", "3072"])
        .assert()
        .success();
    let cert = other
        .cmd()
        .args(["keys", "export-public"])
        .assert()
        .success();
    env.write("other.pem", &stdout(&cert));
    env.seal(&["--value-format", "kubeseal"], &input, "ks.yaml");
    env.cmd()
        .args(["validate", "--cert", "other.pem", "ks.yaml"])
        .assert()
        .code(1)
        .stdout(contains("2048-bit RSA key"));
}

/// What `validate` proves in each mode (issue 24, item 8): with no key it does not pass unless
/// told to; with public keys it says that it checked fit, not the key; a value with extra
/// recipients fits any of them; `--decrypt` tells sealed-to-A from sealed-to-B.
#[test]
fn validate_says_what_it_proved() {
    let (a, b) = (Env::new(), Env::new());
    a.init();
    b.init();
    let input = a.write("secret.yaml", SECRET);
    let cert_b = stdout(&b.cmd().arg("cert").assert().success());
    a.write("b.pem", &cert_b);
    let b_age = stdout(&b.cmd().args(["cert", "--age"]).assert().success());
    a.write("b.age", &b_age);
    a.seal(&[], &input, "to-a.yaml");
    // No key anywhere: a structural check is not a pass.
    let no_store = a.path("no-store");
    a.cmd()
        .env("SEALGATE_KEYS_DIR", &no_store)
        .args(["validate", "to-a.yaml"])
        .assert()
        .code(1)
        .stdout(contains("not checked against any key"))
        .stderr(contains("--allow-unverified"));
    a.cmd()
        .env("SEALGATE_KEYS_DIR", &no_store)
        .args(["validate", "--allow-unverified", "to-a.yaml"])
        .assert()
        .success();
    // With the key-id annotation, a value for A is told apart from B's certificate.
    a.cmd()
        .args(["validate", "--cert", "b.pem", "to-a.yaml"])
        .assert()
        .code(1)
        .stdout(contains("none of the given public keys"));
    // Without it (kubeseal-made files have none), public keys cannot tell, and the output says
    // that it checked fit, not the key; decrypting with B's keys finds the truth.
    let text = std::fs::read_to_string(a.path("to-a.yaml")).unwrap();
    let bare: String = text
        .lines()
        .filter(|l| !l.contains("sealgate.dev/key-id"))
        .map(|l| format!("{l}\n"))
        .collect();
    a.write("bare.yaml", &bare);
    let ok = a
        .cmd()
        .args(["validate", "--cert", "b.pem", "bare.yaml"])
        .assert()
        .success();
    assert!(
        stdout(&ok).contains("fit the given keys"),
        "{}",
        stdout(&ok)
    );
    let err = String::from_utf8_lossy(&ok.get_output().stderr).to_string();
    assert!(
        err.contains("cannot prove which key") && err.contains("--decrypt"),
        "{err}"
    );
    assert!(!stdout(&ok).contains("sealed to"), "{}", stdout(&ok));
    b.cmd()
        .args(["validate", "--decrypt"])
        .arg(a.path("bare.yaml"))
        .assert()
        .code(1);
    // Sealed to A with B as an extra recipient: fits B (with a note), and B's key opens it.
    a.seal(&["-R", "b.age"], &input, "to-both.yaml");
    a.cmd()
        .args(["validate", "--cert", "b.pem", "to-both.yaml"])
        .assert()
        .success()
        .stdout(contains("note:").and(contains("2 recipients")));
    b.cmd()
        .args(["validate", "--decrypt"])
        .arg(a.path("to-both.yaml"))
        .assert()
        .success()
        .stdout(contains("decrypted"));
}

/// `reseal` edits only what changes (issue 24, item 12): the values and the key-id annotation,
/// even where a kubeseal-made file had none. Comments, quoting and other documents stay byte
/// for byte. `reseal -` is a filter from stdin to stdout.
#[test]
fn reseal_keeps_comments_and_other_documents() {
    let env = Env::new();
    env.init();
    let input = env.write("secret.yaml", SECRET);
    env.seal(&["--value-format", "kubeseal"], &input, "sealed.yaml");
    // Commented as a reviewer would, without the key-id annotation (as kubeseal writes it).
    let sealed = std::fs::read_to_string(env.path("sealed.yaml")).unwrap();
    let commented: String = sealed
        .lines()
        .filter(|l| !l.contains("sealgate.dev/key-id"))
        .map(|l| match l.trim_start() {
            t if t.starts_with("password:") => {
                format!("    # rotated quarterly\n{l} # owner: team shop\n")
            }
            t if t.starts_with("name: db") => format!("{l}   # do not rename\n"),
            _ => format!("{l}\n"),
        })
        .collect();
    let other = "# kept as written\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: keep}   # flow style\ndata:\n  a: 'b'\n";
    let file = format!("# header comment\n{commented}---\n{other}");
    env.write("repo.yaml", &file);
    env.cmd()
        .args(["keys", "rotate", "--key-size", "2048"])
        .assert()
        .success();
    env.cmd().args(["reseal", "repo.yaml"]).assert().success();
    let after = std::fs::read_to_string(env.path("repo.yaml")).unwrap();
    for kept in [
        "# header comment\n",
        "    # rotated quarterly\n",
        " # owner: team shop\n",
        "   # do not rename\n",
        &format!("---\n{other}"),
    ] {
        assert!(after.contains(kept), "lost {kept:?}:\n{after}");
    }
    assert!(after.ends_with(other), "{after}");
    assert!(after.contains("sealgate.dev/key-id: "), "{after}");
    // Only the values and the annotation differ: every line is kept but the items' values,
    // and the one added line is the annotation.
    let value_line = |l: &&str| {
        let t = l.trim_start();
        t.starts_with("password:") || t.starts_with("blob:")
    };
    let gone: Vec<&str> = file
        .lines()
        .filter(|l| !after.lines().any(|a| a == *l))
        .collect();
    let new: Vec<&str> = after
        .lines()
        .filter(|l| !file.lines().any(|a| a == *l))
        .collect();
    assert!(gone.iter().all(value_line) && gone.len() == 2, "{gone:#?}");
    assert_eq!(new.len(), 3, "{new:#?}");
    assert!(
        new.iter()
            .all(|l| value_line(l) || l.starts_with("    sealgate.dev/key-id: ")),
        "{new:#?}"
    );
    let newest = env.newest_key_file();
    env.cmd()
        .args(["unseal", "-f", "repo.yaml", "--private-key"])
        .arg(&newest)
        .assert()
        .success();
    // A filter: stdin to stdout, nothing written.
    env.cmd()
        .args(["keys", "rotate", "--key-size", "2048"])
        .assert()
        .success();
    let out = env
        .cmd()
        .args(["reseal", "-"])
        .write_stdin(after.clone())
        .assert()
        .success();
    let piped = stdout(&out);
    assert!(
        piped.contains("# rotated quarterly") && piped != after,
        "{piped}"
    );
    assert_eq!(
        std::fs::read_to_string(env.path("repo.yaml")).unwrap(),
        after
    );
    env.write("piped.yaml", &piped);
    env.cmd()
        .args(["unseal", "-f", "piped.yaml", "--private-key"])
        .arg(env.newest_key_file())
        .assert()
        .success();
}

#[test]
fn reseal_moves_files_to_the_newest_key() {
    let env = Env::new();
    env.init();
    let input = env.write("secret.yaml", SECRET);
    for (f, format) in [("a.yaml", "age"), ("b.yaml", "kubeseal")] {
        env.seal(&["--value-format", format], &input, f);
    }
    env.write(
        "c.yaml",
        &format!(
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: keep}}\ndata: {{a: b}}\n---\n{}",
            std::fs::read_to_string(env.path("a.yaml")).unwrap()
        ),
    );
    env.cmd()
        .args(["keys", "rotate", "--key-size", "2048"])
        .assert()
        .success();
    let before = std::fs::read_to_string(env.path("a.yaml")).unwrap();
    env.cmd()
        .args(["reseal", "--dry-run", "a.yaml"])
        .assert()
        .success();
    assert_eq!(
        before,
        std::fs::read_to_string(env.path("a.yaml")).unwrap(),
        "--dry-run wrote"
    );
    env.cmd()
        .args(["reseal", "a.yaml", "b.yaml", "c.yaml"])
        .assert()
        .success()
        .stderr(contains("re-encrypted 3 SealedSecret(s) in 3 file(s)"));
    let c = std::fs::read_to_string(env.path("c.yaml")).unwrap();
    assert!(c.contains("name: keep"), "other documents are kept: {c}");
    // Only the newest key is needed now.
    let newest = env.newest_key_file();
    for f in ["a.yaml", "b.yaml", "c.yaml"] {
        env.cmd()
            .args(["unseal", "-f", f, "--private-key"])
            .arg(&newest)
            .assert()
            .success();
    }
    env.cmd()
        .args(["unseal", "-f", "b.yaml", "--private-key"])
        .arg(&newest)
        .assert()
        .success();
    // A file that fails stays untouched, and the run fails.
    env.write(
        "junk.yaml",
        &before.replace("namespace: shop", "namespace: elsewhere"),
    );
    let junk_before = std::fs::read_to_string(env.path("junk.yaml")).unwrap();
    env.cmd()
        .args(["reseal", "junk.yaml"])
        .assert()
        .code(1)
        .stderr(contains("left unchanged"));
    assert_eq!(
        junk_before,
        std::fs::read_to_string(env.path("junk.yaml")).unwrap()
    );
}

#[test]
fn reseal_converts_between_bitnami_and_sealgate_objects() {
    let env = Env::new();
    env.init();
    let input = env.write("secret.yaml", SECRET);
    env.seal(
        &["--bitnami", "--scope", "namespace-wide"],
        &input,
        "legacy.yaml",
    );
    let legacy = std::fs::read_to_string(env.path("legacy.yaml")).unwrap();
    assert!(
        legacy.contains("apiVersion: bitnami.com/v1alpha1")
            && legacy.contains("sealedsecrets.bitnami.com/namespace-wide"),
        "{legacy}"
    );
    // A bitnami.com object cannot hold age values: refused, file untouched.
    env.cmd()
        .args(["reseal", "--value-format", "age", "legacy.yaml"])
        .assert()
        .code(1)
        .stderr(contains("must stay in the kubeseal format"));
    env.cmd()
        .args([
            "reseal",
            "--api",
            "sealgate",
            "--value-format",
            "age",
            "legacy.yaml",
        ])
        .assert()
        .success();
    let converted = std::fs::read_to_string(env.path("legacy.yaml")).unwrap();
    assert!(
        converted.contains("apiVersion: sealgate.dev/v1alpha1")
            && converted.contains("sealgate.dev/scope: namespace-wide")
            && !converted.contains("bitnami.com"),
        "{converted}"
    );
    env.cmd()
        .args(["validate", "--decrypt", "legacy.yaml"])
        .assert()
        .success();
    // And back, for Bitnami's controller (kubeseal format).
    env.cmd()
        .args([
            "reseal",
            "--api",
            "bitnami",
            "--format",
            "kubeseal",
            "legacy.yaml",
        ])
        .assert()
        .success();
    let back = std::fs::read_to_string(env.path("legacy.yaml")).unwrap();
    assert!(
        back.contains("apiVersion: bitnami.com/v1alpha1")
            && (back.contains("sealedsecrets.bitnami.com/namespace-wide: 'true'")
                || back.contains("sealedsecrets.bitnami.com/namespace-wide: \"true\"")),
        "{back}"
    );
    env.cmd()
        .args(["unseal", "-f", "legacy.yaml"])
        .assert()
        .success()
        .stdout(contains("namespace: shop"));
}

fn bitnami(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../core/tests/data/bitnami")
        .join(name)
}

#[test]
fn bitnami_keys_import_and_their_sealed_secrets_unseal() {
    let env = Env::new();
    env.cmd()
        .args(["keys", "import"])
        .arg(bitnami("key-secret.yaml"))
        .assert()
        .success()
        .stdout(contains("(bitnami)"));
    env.cmd()
        .args(["keys", "import"])
        .arg(bitnami("tls.key"))
        .assert()
        .success()
        .stdout(contains("already in the store"));
    for scope in ["strict", "namespace-wide", "cluster-wide"] {
        env.cmd()
            .args(["unseal", "-f"])
            .arg(bitnami(&format!("sealed-{scope}.yaml")))
            .assert()
            .success()
            .stdout(contains("password: aHVudGVyMg==")); // base64("hunter2")
    }
    // The imported key has no age identity: age sealing explains what to do.
    let input = env.write("secret.yaml", SECRET);
    env.cmd()
        .args(["seal", "-f"])
        .arg(&input)
        .assert()
        .code(2)
        .stderr(contains("has no age identity (keys imported from Bitnami"))
        .stderr(contains("sealgate keys rotate"))
        .stderr(contains("--value-format kubeseal"));
    let a = env
        .cmd()
        .args(["seal", "--bitnami", "-f"])
        .arg(&input)
        .assert()
        .success();
    let out = stdout(&a);
    assert!(
        out.contains("apiVersion: bitnami.com/v1alpha1") && out.contains(": Ag"),
        "{out}"
    );
    // Without a store: straight from the Bitnami backup file.
    let fresh = Env::new();
    fresh
        .cmd()
        .args(["unseal", "--private-key"])
        .arg(bitnami("key-secret.yaml"))
        .arg("-f")
        .arg(bitnami("sealed-strict.yaml"))
        .assert()
        .success();
    env.write(
        "notakey.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\n",
    );
    env.cmd()
        .args(["keys", "import", "notakey.yaml"])
        .assert()
        .code(2)
        .stderr(contains("no sealing key found"));
}

/// `keys import KEY.pem CERT.pem`, in either order, keeps the cluster's certificate; a key
/// without one gets a new certificate and says so; a failing import writes nothing.
#[test]
fn pem_keys_import_with_their_certificate_and_all_or_nothing() {
    let cluster_cert = std::fs::read(bitnami("tls.crt")).unwrap();
    let store_files = |env: &Env| -> Vec<PathBuf> {
        std::fs::read_dir(env.keys())
            .map(|d| d.map(|e| e.unwrap().path()).collect())
            .unwrap_or_default()
    };
    for order in [["tls.key", "tls.crt"], ["tls.crt", "tls.key"]] {
        let env = Env::new();
        env.cmd()
            .args(["keys", "import"])
            .arg(bitnami(order[0]))
            .arg(bitnami(order[1]))
            .assert()
            .success()
            .stdout(contains("(pem)"))
            .stdout(contains("with the certificate in"));
        let a = env.cmd().arg("cert").assert().success();
        assert_eq!(
            sealgate_core::keys::PublicKey::from_pem_bundle(stdout(&a).as_bytes()).unwrap()[0]
                .cert_der(),
            sealgate_core::keys::PublicKey::from_pem_bundle(&cluster_cert).unwrap()[0].cert_der(),
            "`sealgate cert` publishes the cluster's certificate"
        );
        // The origin survives the store: `keys list` says pem, as the import did.
        env.cmd()
            .args(["keys", "list"])
            .assert()
            .success()
            .stdout(contains(" pem "));
    }

    // A key alone: a new certificate, said plainly.
    let env = Env::new();
    env.cmd()
        .args(["keys", "import"])
        .arg(bitnami("tls.key"))
        .assert()
        .success()
        .stderr(contains("no certificate for key"))
        .stderr(contains("a new self-signed one was made"));
    // The same key with its real certificate would replace the published one: refused.
    env.cmd()
        .args(["keys", "import"])
        .arg(bitnami("tls.key"))
        .arg(bitnami("tls.crt"))
        .assert()
        .code(2)
        .stderr(contains("already in the store with another certificate"));

    // A certificate that belongs to no key given: nothing is imported, not even the key before it.
    let env = Env::new();
    env.init();
    let before = store_files(&env);
    let own_cert = stdout(&env.cmd().arg("cert").assert().success());
    let other_cert = env.write("other.crt", &own_cert);
    env.cmd()
        .args(["keys", "import"])
        .arg(bitnami("key-secret.yaml"))
        .arg(&other_cert)
        .assert()
        .code(2)
        .stderr(contains("belongs to none of the private keys given"))
        .stderr(contains("Nothing was imported"));
    assert_eq!(store_files(&env), before, "nothing was written");
}

#[test]
fn merge_into_adds_an_item_in_place() {
    let env = Env::new();
    env.init();
    let input = env.write("secret.yaml", SECRET);
    env.seal(&[], &input, "sealed.yaml");
    let extra = "apiVersion: v1\nkind: Secret\nmetadata: {name: whatever}\nstringData: {api-token: t0k3n}\n";
    env.cmd()
        .args(["seal", "--merge-into", "sealed.yaml"])
        .write_stdin(extra)
        .assert()
        .success();
    let out = env
        .cmd()
        .args(["unseal", "-f", "sealed.yaml"])
        .assert()
        .success();
    let out = stdout(&out);
    assert!(
        out.contains("api-token: dDBrM24=")
            && out.contains("password:")
            && out.contains("name: db"),
        "{out}"
    );
}

#[test]
fn raw_mode() {
    let env = Env::new();
    env.init();
    let a = env
        .cmd()
        .args([
            "seal", "--raw", "-n", "shop", "--name", "db", "--item", "password",
        ])
        .write_stdin("hunter2")
        .assert()
        .success();
    let value = stdout(&a);
    assert!(!value.ends_with('\n') && value.len() > 100);
    // Put it into a SealedSecret by hand and unseal it.
    let ss = format!(
        "apiVersion: sealgate.dev/v1alpha1\nkind: SealedSecret\nmetadata: {{name: db, namespace: shop}}\nspec:\n  encryptedData:\n    password: {value}\n"
    );
    env.write("ss.yaml", &ss);
    env.cmd()
        .args(["unseal", "-f", "ss.yaml"])
        .assert()
        .success()
        .stdout(contains("password: aHVudGVyMg=="));
    env.write("v.txt", "hunter2");
    env.cmd()
        .args([
            "seal",
            "--raw",
            "--value-format",
            "kubeseal",
            "-n",
            "shop",
            "--scope",
            "namespace-wide",
            "--from-file",
            "v.txt",
        ])
        .assert()
        .success()
        .stdout(predicate::str::is_match("^[A-Za-z0-9+/=]+$").unwrap());
    env.cmd()
        .args(["seal", "--raw", "-n", "shop"])
        .write_stdin("x")
        .assert()
        .code(2)
        .stderr(contains("--name"));
    env.cmd()
        .args(["seal", "--raw", "--name", "db"])
        .write_stdin("x")
        .assert()
        .code(2)
        .stderr(contains("--namespace"));
    env.cmd()
        .args(["seal", "--from-file", "v.txt"])
        .assert()
        .code(2)
        .stderr(contains("--raw"));
}

/// `--cert` from a file and from an http:// URL (a one-shot server on loopback).
#[test]
fn cert_from_file_and_url() {
    let cluster = Env::new();
    cluster.init();
    let pem = stdout(
        &cluster
            .cmd()
            .args(["keys", "export-public"])
            .assert()
            .success(),
    );
    let dev = Env::new(); // no key store of its own
    let input = dev.write("secret.yaml", SECRET);
    dev.write("cert.pem", &pem);
    let a = dev
        .cmd()
        .args(["seal", "--cert", "cert.pem", "-f"])
        .arg(&input)
        .assert()
        .success();
    dev.write("sealed.yaml", &stdout(&a));
    cluster
        .cmd()
        .args(["unseal", "-f"])
        .arg(dev.path("sealed.yaml"))
        .assert()
        .success();

    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/v1/cert.pem", listener.local_addr().unwrap());
    let server = std::thread::spawn(move || {
        use std::io::{Read, Write};
        let (mut s, _) = listener.accept().unwrap();
        let mut buf = [0u8; 4096];
        let _ = s.read(&mut buf);
        let resp = format!(
            "HTTP/1.1 200 OK\r\nContent-Type: application/x-pem-file\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{pem}",
            pem.len()
        );
        s.write_all(resp.as_bytes()).unwrap();
    });
    let a = dev
        .cmd()
        .args(["seal", "--value-format", "kubeseal", "--cert", &url, "-f"])
        .arg(&input)
        .assert()
        .success();
    server.join().unwrap();
    dev.write("sealed2.yaml", &stdout(&a));
    cluster
        .cmd()
        .args(["unseal", "-f"])
        .arg(dev.path("sealed2.yaml"))
        .assert()
        .success();
    // Nothing listening: a clear error.
    dev.cmd()
        .args(["seal", "--cert", "http://127.0.0.1:9/cert.pem", "-f"])
        .arg(&input)
        .assert()
        .code(2)
        .stderr(contains("cannot fetch the certificate"));
    dev.write("notacert.pem", "hello");
    dev.cmd()
        .args(["seal", "--cert", "notacert.pem", "-f"])
        .arg(&input)
        .assert()
        .code(2)
        .stderr(contains("not a usable certificate"));
}

#[test]
fn extra_recipients_can_unseal() {
    let cluster = Env::new();
    cluster.init();
    let recovery = Env::new();
    recovery.init();
    let rec = stdout(
        &recovery
            .cmd()
            .args(["keys", "export-public", "--age"])
            .assert()
            .success(),
    );
    cluster.write("recipients.txt", &rec);
    let input = cluster.write("secret.yaml", SECRET);
    cluster
        .cmd()
        .args(["seal", "-R", "recipients.txt", "-f"])
        .arg(&input)
        .args(["-w", "sealed.yaml"])
        .assert()
        .success();
    recovery
        .cmd()
        .args(["unseal", "-f"])
        .arg(cluster.path("sealed.yaml"))
        .assert()
        .success();
    cluster
        .cmd()
        .args(["unseal", "-f", "sealed.yaml"])
        .assert()
        .success();
    cluster
        .cmd()
        .args(["seal", "-r", "age1notarecipient", "-f"])
        .arg(&input)
        .assert()
        .code(2)
        .stderr(contains("--recipient"));

    // Post-quantum by default: the recovery key's age1pq1… line was used. Its X25519 recipient
    // (commented in the export) cannot join a post-quantum value, and says so; with --pq=false
    // it can.
    let x25519 = rec
        .lines()
        .find_map(|l| {
            l.split_once("(`seal --pq=false`): ")
                .map(|(_, r)| r.to_string())
        })
        .expect("the export names the X25519 recipient");
    assert!(rec.lines().any(|l| l.starts_with("age1pq1")), "{rec}");
    cluster
        .cmd()
        .args(["seal", "-r", &x25519, "-f"])
        .arg(&input)
        .assert()
        .code(2)
        .stderr(contains("does not mix post-quantum"));
    cluster
        .cmd()
        .args(["seal", "--pq=false", "-r", &x25519, "-f"])
        .arg(&input)
        .args(["-w", "classical.yaml"])
        .assert()
        .success();
    recovery
        .cmd()
        .args(["unseal", "-f"])
        .arg(cluster.path("classical.yaml"))
        .assert()
        .success();
}

#[test]
fn completions_and_help() {
    let env = Env::new();
    // The README promises these five shells.
    for shell in ["bash", "zsh", "fish", "elvish", "powershell"] {
        env.cmd()
            .args(["completions", shell])
            .assert()
            .success()
            .stdout(contains("sealgate"));
    }
    env.cmd()
        .args(["seal", "--help"])
        .assert()
        .success()
        .stdout(contains("--merge-into").and(contains("--scope")));
    env.cmd().arg("--version").assert().success();
}

/// The pre-commit hook runs on every changed YAML file: a commit without SealedSecrets passes,
/// while `validate` run by hand on such files still says there was nothing to check.
#[test]
fn the_validate_hook_passes_commits_without_sealed_secrets() {
    let env = Env::new();
    env.init();
    let cm = env.write(
        "cm.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\n",
    );
    env.cmd()
        .arg("validate")
        .arg(&cm)
        .assert()
        .code(2)
        .stderr(contains("no SealedSecrets found").and(contains("--allow-empty")));
    let text =
        std::fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join("../.pre-commit-hooks.yaml"))
            .unwrap();
    let hooks = sealgate_core::manifest::parse(&text, &Default::default())
        .unwrap()
        .remove(0)
        .value;
    let entry = hooks
        .as_array()
        .unwrap()
        .iter()
        .find(|h| h["id"] == "sealgate-validate")
        .and_then(|h| h["entry"].as_str())
        .unwrap()
        .to_string();
    let mut words = entry.split_whitespace();
    assert_eq!(words.next(), Some("sealgate"));
    env.cmd()
        .args(words)
        .arg(&cm)
        .assert()
        .success()
        .stdout(contains("no SealedSecrets in"));
}

/// `--expect-key-id` pins the cluster's key: a certificate with another id seals nothing and
/// writes nothing; the right id (a prefix of it) seals.
#[test]
fn expect_key_id_pins_the_key_to_seal_with() {
    let env = Env::new();
    env.init();
    let pem = env.cmd().args(["keys", "export-public"]).assert().success();
    let cert = env.write("cert.pem", &stdout(&pem));
    let list = stdout(&env.cmd().args(["keys", "list"]).assert().success());
    let id = list
        .lines()
        .nth(1)
        .and_then(|l| l.split_whitespace().next())
        .unwrap()
        .to_string();
    let input = env.write("secret.yaml", SECRET);
    let out = env.path("sealed.yaml");
    env.cmd()
        .args(["seal", "--expect-key-id", "00000000", "--cert"])
        .arg(&cert)
        .arg("-f")
        .arg(&input)
        .arg("-w")
        .arg(&out)
        .assert()
        .code(2)
        .stderr(
            contains(format!("the key to seal with is {id}"))
                .and(contains("not the expected 00000000")),
        );
    assert!(!out.exists(), "nothing is written");
    env.cmd()
        .args(["seal", "--expect-key-id", &id[..8], "--cert"])
        .arg(&cert)
        .arg("-f")
        .arg(&input)
        .arg("-w")
        .arg(&out)
        .assert()
        .success();
    env.cmd()
        .args(["seal", "--expect-key-id", "xyz", "-f"])
        .arg(&input)
        .assert()
        .code(2)
        .stderr(contains("at least 8 hex digits"));
}

/// `sealgate validate … | head`: every command's output, not only reports, ends quietly on a
/// closed pipe (it used to panic in `println!`).
#[test]
fn validate_into_a_closed_pipe_is_a_quiet_exit() {
    let env = Env::new();
    env.init();
    let input = env.write("secret.yaml", SECRET);
    let sealed = stdout(
        &env.cmd()
            .args(["seal", "-f"])
            .arg(&input)
            .assert()
            .success(),
    );
    let many: String = (0..3000).map(|_| format!("---\n{sealed}")).collect();
    let file = env.write("many.yaml", &many);
    let mut cmd = std::process::Command::new(assert_cmd::cargo::cargo_bin("sealgate"));
    cmd.env("SEALGATE_KEYS_DIR", env.keys())
        .arg("validate")
        .arg(&file);
    let out = sealgate_testkit::process::with_stdout_closed_after_one_byte(cmd);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(
        !stderr.contains("panicked") && !stderr.contains("error"),
        "{stderr}"
    );
}

/// A file without a size on disk (/dev/zero) is read through the same bound as stdin: an error
/// past 64 MiB, not memory until the process dies.
#[test]
fn endless_inputs_stop_at_the_input_limit() {
    if !Path::new("/dev/zero").exists() {
        eprintln!("skipped: no /dev/zero on this system");
        return;
    }
    let env = Env::new();
    env.init();
    for cmd in ["seal", "unseal"] {
        env.cmd()
            .args([cmd, "-f", "/dev/zero"])
            .assert()
            .code(2)
            .stderr(contains("/dev/zero: input is over the 67108864-byte limit"));
    }
}

/// The man pages committed under docs/man are the ones `sealgate man` writes today: a flag added
/// without regenerating them fails here. `UPDATE_GOLDEN=1 cargo test` rewrites them.
#[test]
fn man_pages_are_current() {
    let env = Env::new();
    let out = env.dir.path().join("man");
    env.cmd().arg("man").arg(&out).assert().success();
    let committed = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/man");
    let pages = |dir: &std::path::Path| -> std::collections::BTreeMap<String, String> {
        std::fs::read_dir(dir)
            .map(|entries| {
                entries
                    .map(|e| e.unwrap().path())
                    .map(|p| {
                        let name = p.file_name().unwrap().to_string_lossy().into_owned();
                        (name, std::fs::read_to_string(&p).unwrap())
                    })
                    .collect()
            })
            .unwrap_or_default()
    };
    let fresh = pages(&out);
    assert!(fresh.contains_key("sealgate.1") && fresh.contains_key("sealgate-seal.1"));
    assert!(fresh["sealgate-seal.1"].contains("merge\\-into"));
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        let _ = std::fs::remove_dir_all(&committed);
        std::fs::create_dir_all(&committed).unwrap();
        for (name, text) in &fresh {
            std::fs::write(committed.join(name), text).unwrap();
        }
    }
    let old = pages(&committed);
    assert_eq!(
        old.keys().collect::<Vec<_>>(),
        fresh.keys().collect::<Vec<_>>(),
        "docs/man is out of date: run UPDATE_GOLDEN=1 cargo test -p sealgate-cli --test cli man_pages"
    );
    for (name, text) in &fresh {
        assert!(
            &old[name] == text,
            "docs/man/{name} is out of date: run UPDATE_GOLDEN=1 cargo test -p sealgate-cli --test cli man_pages"
        );
    }
}

/// Help says what each flag does: `unseal -o` had no description, and `--format age` spoke of
/// "the cluster's X25519 key" although the hybrid post-quantum recipient is the default.
#[test]
fn help_describes_unseal_output_and_the_post_quantum_default() {
    let help = |args: &[&str]| {
        let out = Command::cargo_bin("sealgate")
            .unwrap()
            .args(args)
            .output()
            .unwrap();
        String::from_utf8(out.stdout).unwrap()
    };
    let unseal = help(&["unseal", "--help"]);
    let described: String = unseal
        .lines()
        .skip_while(|l| !l.contains("--output <OUTPUT>"))
        .take(2)
        .collect();
    assert!(described.contains("Output format"), "{unseal}");
    let seal = help(&["seal", "--help"]);
    assert!(
        seal.contains("hybrid post-quantum recipient")
            && !seal.contains("to the cluster's X25519 key"),
        "{seal}"
    );
}

/// Messages about reaching the controller (issue 24, item 14): a kubeconfig that is missing says
/// so once, an X.509 v1 client certificate is named with how to re-issue it, and an HTML page
/// from something in front of the controller is summed up, not dumped.
#[test]
fn reaching_the_controller_fails_with_clear_messages() {
    let env = Env::new();
    let a = env
        .cmd()
        .args([
            "cert",
            "--controller",
            "kube://",
            "--kubeconfig",
            "missing-kubeconfig",
        ])
        .assert()
        .code(2);
    let err = String::from_utf8_lossy(&a.get_output().stderr).into_owned();
    assert!(
        err.contains("missing-kubeconfig") && err.matches("(os error 2)").count() == 1,
        "{err}"
    );

    // A client certificate as `openssl x509 -req` makes it without extensions: version 1.
    let openssl = |args: &[&str]| {
        succeeded(
            "openssl (apt-get install openssl)",
            std::process::Command::new("openssl")
                .args(args)
                .current_dir(env.dir.path())
                .output(),
        );
    };
    openssl(&[
        "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.crt",
        "-subj", "/CN=ca", "-days", "1",
    ]);
    openssl(&[
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "u.key",
        "-out",
        "u.csr",
        "-subj",
        "/CN=alice",
    ]);
    openssl(&[
        "x509",
        "-req",
        "-in",
        "u.csr",
        "-CA",
        "ca.crt",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "u.crt",
        "-days",
        "1",
    ]);
    let dir = env.dir.path().display();
    env.write(
        "kubeconfig",
        &format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster: {{server: 'https://127.0.0.1:1', certificate-authority: {dir}/ca.crt}}\nusers:\n- name: alice\n  user: {{client-certificate: {dir}/u.crt, client-key: {dir}/u.key}}\ncontexts:\n- name: ctx\n  context: {{cluster: c, user: alice}}\ncurrent-context: ctx\n"
        ),
    );
    env.cmd()
        .args([
            "cert",
            "--controller",
            "kube://",
            "--kubeconfig",
            "kubeconfig",
        ])
        .assert()
        .code(2)
        .stderr(
            contains("user \"alice\"'s client certificate")
                .and(contains("u.crt is X.509 version 1"))
                .and(contains("extendedKeyUsage=clientAuth"))
                .and(contains("UnsupportedCertVersion").not()),
        );

    // Something else answers at the address with a big HTML error page.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        use std::io::{Read, Write};
        for stream in listener.incoming().take(1) {
            let mut s = stream.unwrap();
            let mut buf = [0u8; 4096];
            let _ = s.read(&mut buf);
            let body = format!(
                "<!DOCTYPE html><html><head><title>502 Bad Gateway</title></head><body>{}</body></html>",
                "<p>upstream unavailable</p>".repeat(400)
            );
            let _ = write!(
                s,
                "HTTP/1.1 502 Bad Gateway\r\nContent-Type: text/html\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    let a = env
        .cmd()
        .args(["cert", "--controller", &format!("http://127.0.0.1:{port}")])
        .assert()
        .code(2);
    let err = String::from_utf8_lossy(&a.get_output().stderr).into_owned();
    assert!(
        err.contains("\"502 Bad Gateway\"")
            && !err.contains("upstream unavailable")
            && err.len() < 600,
        "{err}"
    );
}

/// kubeseal habits (issue 24, item 13): `--format yaml|json` is kubeseal's output format;
/// `--format age|kubeseal` still selects the value format, with a note naming `--value-format`;
/// kubeseal's other modes name the sealgate command that does their work; `--merge-into` keeps
/// the target file's value format.
#[test]
fn kubeseal_flags_do_what_kubeseal_users_expect() {
    let env = Env::new();
    env.init();
    let input = env.write("secret.yaml", SECRET);
    let json = env
        .cmd()
        .args(["seal", "--format", "json", "-f"])
        .arg(&input)
        .assert()
        .success();
    let v: serde_json::Value = serde_json::from_slice(&json.get_output().stdout).unwrap();
    assert_eq!(v["kind"], "SealedSecret");
    env.cmd()
        .args(["seal", "--format", "json", "-o", "yaml", "-f"])
        .arg(&input)
        .assert()
        .code(2)
        .stderr(contains("different output formats"));
    let legacy = env
        .cmd()
        .args(["seal", "--format", "kubeseal", "-f"])
        .arg(&input)
        .args(["-w", "ks.yaml"])
        .assert()
        .success();
    let err = String::from_utf8_lossy(&legacy.get_output().stderr).into_owned();
    assert!(err.contains("--value-format kubeseal now"), "{err}");
    for (flag, instead) in [
        (vec!["--re-encrypt"], "sealgate reseal --controller kube://"),
        (
            vec!["--recovery-unseal", "--recovery-private-key", "k.yaml"],
            "sealgate unseal -f FILE --private-key",
        ),
        (vec!["--fetch-cert"], "sealgate cert --controller kube://"),
        (vec!["--validate"], "sealgate validate --controller kube://"),
        (
            vec![
                "--controller-namespace",
                "kube-system",
                "--controller-name",
                "sealed-secrets-controller",
            ],
            "--controller kube://kube-system/sealed-secrets-controller",
        ),
    ] {
        env.cmd()
            .arg("seal")
            .args(&flag)
            .assert()
            .code(2)
            .stderr(contains(instead));
    }
    // --merge-into a kubeseal-format file adds kubeseal values (age is the default elsewhere).
    env.write(
        "extra.yaml",
        "apiVersion: v1\nkind: Secret\nmetadata: {name: db, namespace: shop}\nstringData: {token: t0k3n}\n",
    );
    env.cmd()
        .args(["seal", "--merge-into", "ks.yaml", "-f", "extra.yaml"])
        .assert()
        .success();
    let merged = std::fs::read_to_string(env.path("ks.yaml")).unwrap();
    let doc = sealgate_core::manifest::parse(merged.as_bytes(), &Default::default())
        .unwrap()
        .remove(0)
        .value;
    let ss = sealgate_core::sealing::SealedSecret::from_value(&doc).unwrap();
    assert!(ss.encrypted_data.contains_key("token"), "{merged}");
    assert_eq!(
        sealgate_core::sealing::values_format(&ss),
        Some(sealgate_core::envelope::Format::Kubeseal),
        "{merged}"
    );
}
