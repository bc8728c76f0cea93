//! `--controller`: `sealgate cert`, `seal`, `validate` and `reseal` against the controller's real
//! HTTP API on loopback, directly (http://) and through an API-server service proxy with a
//! kubeconfig (kube://), as kubeseal reaches its controller.

use sealgate_testkit::keys::{copy, key};
use std::net::SocketAddr;
use std::path::PathBuf;

use assert_cmd::Command;
use predicates::str::contains;
use sealgate_controller::http::{ApiState, router};
use sealgate_core::keys::KeyRing;

const SECRET: &str = "apiVersion: v1\nkind: Secret\nmetadata:\n  name: db\n  namespace: shop\nstringData:\n  password: hunter2\n";

/// The controller API on loopback, also mounted under the API server's service proxy path.
fn serve(ring: KeyRing) -> SocketAddr {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Runtime::new().unwrap();
        rt.block_on(async move {
            let api = router(ApiState::new(ring));
            let app = axum::Router::new()
                .nest(
                    "/api/v1/namespaces/sealgate-system/services/http:sealgate-controller:http/proxy",
                    api.clone(),
                )
                .merge(api);
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            tx.send(listener.local_addr().unwrap()).unwrap();
            axum::serve(
                listener,
                app.into_make_service_with_connect_info::<SocketAddr>(),
            )
            .await
            .unwrap();
        });
    });
    rx.recv().unwrap()
}

struct Env {
    dir: tempfile::TempDir,
    url: String,
    addr: SocketAddr,
}

impl Env {
    fn new(ring: KeyRing) -> Env {
        let addr = serve(ring);
        Env {
            dir: tempfile::tempdir().unwrap(),
            url: format!("http://{addr}"),
            addr,
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// `sealgate` with an empty key store: every key must come from the controller.
    fn cmd(&self) -> Command {
        let mut c = Command::cargo_bin("sealgate").unwrap();
        c.env("SEALGATE_KEYS_DIR", self.path("no-keys"))
            .env_remove("SEALGATE_CERT")
            .env_remove("SEALGATE_CONTROLLER")
            .env_remove("KUBECONFIG")
            .current_dir(self.dir.path());
        c
    }

    fn seal_to_file(&self, name: &str) -> PathBuf {
        let out = self.path(name);
        self.cmd()
            .args(["seal", "--controller", &self.url, "-w"])
            .arg(&out)
            .write_stdin(SECRET)
            .assert()
            .success();
        out
    }
}

#[test]
fn cert_from_the_controller() {
    let (old, new) = (key(40), key(1));
    let env = Env::new(KeyRing::new([copy(&old), copy(&new)]));
    env.cmd()
        .args(["cert", "--controller", &env.url])
        .assert()
        .success()
        .stdout(new.public().cert_pem());
    let all = env
        .cmd()
        .args(["cert", "--all", "--controller", &env.url])
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8(all.stdout).unwrap(),
        format!("{}{}", new.public().cert_pem(), old.public().cert_pem())
    );
    env.cmd()
        .args(["cert", "--age", "--controller", &env.url])
        .assert()
        .success()
        .stdout(contains(new.public().age_recipient().unwrap().to_string()));
}

#[test]
fn seal_then_validate_with_the_cluster() {
    let k = key(1);
    let env = Env::new(KeyRing::new([copy(&k)]));
    let sealed = env.seal_to_file("db.yaml");
    let text = std::fs::read_to_string(&sealed).unwrap();
    assert!(
        text.contains(&k.id().short()),
        "sealed to the controller's key:\n{text}"
    );
    env.cmd()
        .args(["validate", "--controller", &env.url])
        .arg(&sealed)
        .assert()
        .success()
        .stdout(contains("decryptable by the cluster"))
        .stdout(contains("1 passed, 0 failed"));

    // Sealed for another namespace by hand-editing: the cluster says no (409), exit 1.
    let moved = env.path("moved.yaml");
    std::fs::write(&moved, text.replace("namespace: shop", "namespace: other")).unwrap();
    env.cmd()
        .args(["validate", "--controller", &env.url])
        .arg(&moved)
        .assert()
        .code(1)
        .stdout(contains("FAIL"))
        .stdout(contains("unable to decrypt"));
}

#[test]
fn reseal_in_the_cluster_moves_values_to_the_newest_key() {
    let (old, new) = (key(40), key(1));
    // Sealed while only the old key existed.
    let env_old = Env::new(KeyRing::new([copy(&old)]));
    let file = env_old.seal_to_file("db.yaml");
    let env = Env::new(KeyRing::new([copy(&old), copy(&new)]));
    env.cmd()
        .args(["reseal", "--controller", &env.url])
        .arg(&file)
        .assert()
        .success()
        .stderr(contains("re-encrypted 1 SealedSecret(s)"));
    let text = std::fs::read_to_string(&file).unwrap();
    assert!(text.contains(&new.id().short()), "{text}");
    assert!(!text.contains(&old.id().short()), "{text}");
    env.cmd()
        .args(["validate", "--controller", &env.url])
        .arg(&file)
        .assert()
        .success();
    // Options that only make sense offline are refused, and nothing is written.
    env.cmd()
        .args([
            "reseal",
            "--controller",
            &env.url,
            "--value-format",
            "kubeseal",
        ])
        .arg(&file)
        .assert()
        .code(2)
        .stderr(contains("cannot be combined with --value-format"));
}

#[test]
fn through_the_api_server_service_proxy_with_a_kubeconfig() {
    let k = key(1);
    let env = Env::new(KeyRing::new([copy(&k)]));
    let kubeconfig = env.path("kubeconfig");
    std::fs::write(
        &kubeconfig,
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster:\n    server: http://{}\nusers:\n- name: u\n  user: {{}}\ncontexts:\n- name: ctx\n  context:\n    cluster: c\n    user: u\ncurrent-context: ctx\n",
            env.addr
        ),
    )
    .unwrap();
    env.cmd()
        .env("KUBECONFIG", &kubeconfig)
        .args(["cert", "--controller", "kube://"])
        .assert()
        .success()
        .stdout(k.public().cert_pem());
    env.cmd()
        .env("KUBECONFIG", &kubeconfig)
        .args([
            "cert",
            "--controller",
            "kube://sealgate-system/sealgate-controller",
            "--context",
            "ctx",
        ])
        .assert()
        .success()
        .stdout(k.public().cert_pem());
    // A service that does not exist: the API server's 404 is reported.
    env.cmd()
        .env("KUBECONFIG", &kubeconfig)
        .args(["cert", "--controller", "kube://sealgate-system/nope"])
        .assert()
        .code(2)
        .stderr(contains("answered 404"));
}

#[test]
fn unreachable_or_malformed_controllers_are_clear_errors() {
    let env = Env::new(KeyRing::default());
    env.cmd()
        .args(["cert", "--controller", &env.url])
        .assert()
        .code(2)
        .stderr(contains("answered 503"))
        .stderr(contains("no sealing key yet"));
    env.cmd()
        .args(["cert", "--controller", "http://127.0.0.1:9"])
        .assert()
        .code(2)
        .stderr(contains(
            "cannot reach the controller at http://127.0.0.1:9/v1/cert.pem",
        ));
    env.cmd()
        .args(["seal", "--controller", "ftp://x"])
        .write_stdin(SECRET)
        .assert()
        .code(2)
        .stderr(contains("expected http(s)://HOST:PORT or kube://"));
    env.cmd()
        .args(["cert", "--controller", "kube://only-namespace"])
        .assert()
        .code(2)
        .stderr(contains("expected kube://NAMESPACE/SERVICE"));
}
