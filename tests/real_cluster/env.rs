//! The shared environment: the control plane, `deploy/` installed on it, and our binaries run as
//! local processes under the service accounts `deploy/` gives them.

use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::path::PathBuf;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use libtest_mimic::Failed;
use sealgate_testenv::cluster::{Proc, run_with_stdin};
use sealgate_testenv::{ControlPlane, Identity, Unavailable};
use serde_json::Value;

pub const SYSTEM_NS: &str = "sealgate-system";

pub struct Env {
    pub cp: ControlPlane,
    /// The workspace's binaries (sealgate, sealgate-controller, sealgate-webhook).
    pub bin: PathBuf,
    pub repo: PathBuf,
    installed: OnceLock<Result<(), String>>,
    /// The webhook's fixed HTTPS port: the webhook configuration's `url:` names it.
    pub webhook_port: u16,
    webhook: Mutex<Option<Component>>,
    controller: Mutex<Option<Component>>,
}

/// One of our processes and its ports.
pub struct Component {
    pub proc: Proc,
    pub port: u16,
    pub metrics_port: u16,
}

impl Component {
    /// GET `path` from its plain-HTTP metrics port.
    pub fn metrics(&self) -> String {
        http_get(self.metrics_port, "/metrics").unwrap_or_default()
    }
}

/// A minimal HTTP/1.0 GET on loopback: (status, body).
pub fn http_get_status(port: u16, path: &str) -> Option<(u16, String)> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    let (head, body) = text.split_once("\r\n\r\n")?;
    let status = head.split_whitespace().nth(1)?.parse().ok()?;
    Some((status, body.to_string()))
}

pub fn http_get(port: u16, path: &str) -> Option<String> {
    match http_get_status(port, path)? {
        (200, body) => Some(body),
        _ => None,
    }
}

/// The value of a Prometheus sample named exactly `name` (summed over label sets).
pub fn metric(text: &str, name: &str) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (key, value) = l.rsplit_once(' ')?;
            let base = key.split('{').next()?;
            (base == name).then(|| value.parse::<f64>().ok())?
        })
        .sum()
}

/// `Ok` when kubectl's `answer` is a denial by `policy`; otherwise what it was instead.
pub fn denied_by(answer: Result<String, String>, policy: &str) -> Result<(), String> {
    match answer {
        Err(e) if e.contains(policy) => Ok(()),
        Err(e) => Err(e),
        Ok(_) => Err(format!("admitted, not denied by {policy}")),
    }
}

pub fn fail(msg: impl Into<String>) -> Failed {
    Failed::from(msg.into())
}

/// `Err` with `msg` unless `cond`.
pub fn ensure(cond: bool, msg: impl FnOnce() -> String) -> Result<(), Failed> {
    if cond { Ok(()) } else { Err(fail(msg())) }
}

impl Env {
    pub fn start() -> Result<Env, Unavailable> {
        let cp = ControlPlane::start()?;
        let bin = sealgate_testkit::process::bin_dir();
        Ok(Env {
            cp,
            bin,
            repo: sealgate_testkit::process::repo(),
            installed: OnceLock::new(),
            webhook_port: sealgate_testkit::process::free_port(),
            webhook: Mutex::new(None),
            controller: Mutex::new(None),
        })
    }

    pub fn kubectl_ok(&self, who: &Identity, args: &[&str]) -> String {
        self.cp.kubectl_ok(who, args)
    }

    pub fn try_kubectl(&self, who: &Identity, args: &[&str]) -> Result<String, String> {
        self.cp.try_kubectl(who, args)
    }

    /// `kubectl get … -o json`, parsed.
    pub fn get_json(&self, args: &[&str]) -> Option<Value> {
        let mut a = vec!["get"];
        a.extend(args);
        a.extend(["-o", "json"]);
        let out = self.try_kubectl(&Identity::Admin, &a).ok()?;
        serde_json::from_str(&out).ok()
    }

    /// Wait up to `limit` for `ok`, failing the test (with the components' logs) after.
    pub fn wait(
        &self,
        what: &str,
        limit: Duration,
        mut ok: impl FnMut() -> bool,
    ) -> Result<(), Failed> {
        let until = Instant::now() + limit;
        while Instant::now() < until {
            if ok() {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Err(fail(format!(
            "timed out after {limit:?} waiting for {what}\n{}",
            self.component_logs()
        )))
    }

    pub fn component_logs(&self) -> String {
        let mut out = String::new();
        for (name, c) in [("webhook", &self.webhook), ("controller", &self.controller)] {
            if let Some(c) = c.lock().unwrap().as_ref() {
                out += &format!("--- sealgate-{name} ---\n{}\n", c.proc.log_tail(20));
            }
        }
        out
    }

    /// A file under the working directory of the control plane.
    pub fn path(&self, name: &str) -> PathBuf {
        self.cp.dir().join(name)
    }

    /// `deploy/` is installed: `kubectl apply --server-side -k deploy`, the CRDs established, and
    /// the webhook configuration pointed at the local webhook by a loopback `url:` (there is no
    /// kube-proxy to reach the Service). Once per run; the result is shared.
    pub fn installed(&self) -> Result<(), Failed> {
        self.installed
            .get_or_init(|| self.install())
            .clone()
            .map_err(Failed::from)
    }

    /// Install with `install` (e.g. the Helm chart) instead of `deploy/`; the components then run
    /// under the service accounts and RBAC it created. Before anything calls [`Env::installed`].
    pub fn install_with(
        &self,
        install: impl FnOnce(&Env) -> Result<(), String>,
    ) -> Result<(), Failed> {
        self.installed
            .get_or_init(|| install(self))
            .clone()
            .map_err(Failed::from)
    }

    fn install(&self) -> Result<(), String> {
        let deploy = self.repo.join("deploy");
        self.cp
            .try_kubectl(
                &Identity::Admin,
                &["apply", "--server-side", "-k", &deploy.to_string_lossy()],
            )
            .map_err(|e| format!("kubectl apply --server-side -k deploy was refused: {e}"))?;
        self.cp
            .wait_established(
                &[
                    "crd/sealedsecrets.sealgate.dev",
                    "crd/attestations.sealgate.dev",
                ],
                "",
            )
            .map_err(|e| format!("the CRDs were not established: {e}"))?;
        self.point_webhook_at_loopback()
    }

    /// Re-apply `deploy/`'s webhook configuration with `clientConfig.url` at the local webhook
    /// (server-side apply by the same field manager: `service` goes, `url` comes, and the
    /// caBundle, written by the webhook, is kept).
    pub fn point_webhook_at_loopback(&self) -> Result<(), String> {
        let file = self
            .repo
            .join("deploy/base/webhook/validatingwebhookconfiguration.yaml");
        let json = self
            .cp
            .try_kubectl(
                &Identity::Admin,
                &[
                    "create",
                    "--dry-run=client",
                    "-o",
                    "json",
                    "-f",
                    &file.to_string_lossy(),
                ],
            )
            .map_err(|e| format!("cannot read {}: {e}", file.display()))?;
        let mut vwc: Value = serde_json::from_str(&json).map_err(|e| e.to_string())?;
        for w in vwc["webhooks"].as_array_mut().into_iter().flatten() {
            w["clientConfig"] = serde_json::json!({
                "url": format!("https://127.0.0.1:{}/validate", self.webhook_port),
            });
        }
        self.cp
            .try_kubectl_stdin(
                &Identity::Admin,
                &["apply", "--server-side", "--force-conflicts", "-f", "-"],
                &vwc.to_string(),
            )
            .map(drop)
            .map_err(|e| format!("cannot point the webhook configuration at loopback: {e}"))
    }

    fn sa(&self, name: &str) -> Identity {
        Identity::ServiceAccount(SYSTEM_NS.into(), name.into())
    }

    /// Start a `sealgate-webhook` as `deploy/` runs it (its policies, self-contained TLS) with
    /// its service account's token, plus `extra` flags; it listens on [`Env::webhook_port`].
    pub fn spawn_webhook(&self, name: &str, extra: &[&str]) -> Component {
        self.spawn_webhook_from(&self.bin.join("sealgate-webhook"), name, extra)
    }

    /// [`Env::spawn_webhook`] with another build of the binary.
    pub fn spawn_webhook_from(
        &self,
        binary: &std::path::Path,
        name: &str,
        extra: &[&str],
    ) -> Component {
        let kubeconfig = self.cp.kubeconfig(&self.sa("sealgate-webhook"));
        let certs = self.path(&format!("{name}-certs"));
        std::fs::create_dir_all(&certs).unwrap();
        let metrics_port = sealgate_testkit::process::free_port();
        let mut args: Vec<String> = [
            "--no-builtin",
            "--self-signed-tls",
            "--tls-san=127.0.0.1",
            "--log-format=json",
            // The certificate and policy checks every 5 s (10 s by default): a rotation happens
            // within a test, and a caBundle restored faster than that shows the watch at work.
            "--reload-interval=5s",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        args.push(format!(
            "--policy={}",
            self.repo.join("deploy/base/webhook/policies").display()
        ));
        args.push(format!("--tls-cert={}", certs.join("tls.crt").display()));
        args.push(format!("--tls-key={}", certs.join("tls.key").display()));
        args.push(format!("--listen=127.0.0.1:{}", self.webhook_port));
        args.push(format!("--metrics-listen=127.0.0.1:{metrics_port}"));
        args.extend(extra.iter().map(|s| s.to_string()));
        let proc = Proc::spawn(
            name,
            binary,
            &args,
            &self.path(&format!("{name}.log")),
            &[
                ("KUBECONFIG", &kubeconfig.to_string_lossy()),
                ("POD_NAMESPACE", SYSTEM_NS),
                ("RUST_LOG", "info"),
            ],
        );
        Component {
            proc,
            port: self.webhook_port,
            metrics_port,
        }
    }

    /// The shared webhook is running and the API server reaches it.
    pub fn webhook(&self) -> Result<(), Failed> {
        self.installed()?;
        let mut slot = self.webhook.lock().unwrap();
        if let Some(c) = slot.as_mut()
            && c.proc.exited().is_none()
        {
            return Ok(());
        }
        *slot = Some(self.spawn_webhook("webhook", &[]));
        drop(slot);
        self.wait_webhook_serving()
    }

    /// Replace the shared webhook by one with `extra` flags, until [`Env::stop_webhook`] (after
    /// which [`Env::webhook`] starts the plain one again).
    pub fn replace_webhook(&self, extra: &[&str]) -> Result<(), Failed> {
        self.replace_webhook_from(&self.bin.join("sealgate-webhook"), extra)
    }

    /// [`Env::replace_webhook`] with another build of the binary.
    pub fn replace_webhook_from(
        &self,
        binary: &std::path::Path,
        extra: &[&str],
    ) -> Result<(), Failed> {
        self.installed()?;
        self.stop_webhook();
        *self.webhook.lock().unwrap() =
            Some(self.spawn_webhook_from(binary, "webhook-custom", extra));
        self.wait_webhook_serving()
    }

    /// A binary of this workspace built with the release profile (what users run), for
    /// measurements: `cargo build --release -p PACKAGE`.
    pub fn release_binary(&self, package: &str, name: &str) -> Result<PathBuf, Failed> {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let status = std::process::Command::new(cargo)
            .args(["build", "--release", "-q", "-p", package])
            .current_dir(&self.repo)
            .status()
            .map_err(|e| fail(e.to_string()))?;
        if !status.success() {
            return Err(fail(format!("cargo build --release -p {package} failed")));
        }
        // target/debug → target/release
        let dir = self
            .bin
            .parent()
            .map(|t| t.join("release"))
            .ok_or_else(|| fail("no target directory"))?;
        Ok(dir.join(name))
    }

    /// Stop the shared webhook (the next [`Env::webhook`] starts it again).
    pub fn stop_webhook(&self) {
        if let Some(mut c) = self.webhook.lock().unwrap().take() {
            c.proc.terminate(Duration::from_secs(10));
        }
    }

    pub fn with_webhook<T>(&self, f: impl FnOnce(&Component) -> T) -> Option<T> {
        self.webhook.lock().unwrap().as_ref().map(f)
    }

    /// Until the API server gets the webhook's answers: a server-side dry-run in a governed
    /// namespace is judged (denied for the human) instead of failing on TLS or the connection.
    pub fn wait_webhook_serving(&self) -> Result<(), Failed> {
        let ns = self.governed_namespace("probe");
        let mut last = String::new();
        let r = self.wait(
            "the API server to reach the webhook",
            Duration::from_secs(60),
            || {
                let answer = self.cp.try_kubectl(
                    &Identity::Human,
                    &[
                        "-n",
                        &ns,
                        "create",
                        "configmap",
                        "probe",
                        "--dry-run=server",
                    ],
                );
                denied_by(answer, "gitops-identity")
                    .map_err(|e| last = e)
                    .is_ok()
            },
        );
        r.map_err(|f| {
            fail(format!(
                "{}\nlast answer: {last}",
                f.message().unwrap_or_default()
            ))
        })
    }

    /// A fresh namespace labelled `sealgate.dev/governed=true`.
    pub fn governed_namespace(&self, prefix: &str) -> String {
        self.cp
            .namespace(prefix, &[("sealgate.dev/governed", "true")])
    }

    /// Start a `sealgate-controller` with its service account's token, plus `extra` flags.
    pub fn spawn_controller(&self, name: &str, extra: &[&str]) -> Component {
        let kubeconfig = self.cp.kubeconfig(&self.sa("sealgate-controller"));
        let port = sealgate_testkit::process::free_port();
        let metrics_port = sealgate_testkit::process::free_port();
        let mut args = vec![
            format!("--namespace={SYSTEM_NS}"),
            format!("--pod-name={name}"),
            format!("--listen=127.0.0.1:{port}"),
            format!("--metrics-listen=127.0.0.1:{metrics_port}"),
            "--log-format=json".to_string(),
        ];
        args.extend(extra.iter().map(|s| s.to_string()));
        let proc = Proc::spawn(
            name,
            &self.bin.join("sealgate-controller"),
            &args,
            &self.path(&format!("{name}.log")),
            &[
                ("KUBECONFIG", &kubeconfig.to_string_lossy()),
                ("RUST_LOG", "info"),
            ],
        );
        Component {
            proc,
            port,
            metrics_port,
        }
    }

    /// Wait until a controller's /readyz answers 200 (it has a key).
    pub fn wait_ready(&self, c: &mut Component) -> Result<Duration, Failed> {
        let started = Instant::now();
        let until = started + Duration::from_secs(120);
        while Instant::now() < until {
            if let Some(status) = c.proc.exited() {
                return Err(fail(format!(
                    "{} exited ({status}):\n{}",
                    c.proc.name,
                    c.proc.log_tail(30)
                )));
            }
            if http_get(c.port, "/readyz").is_some() {
                return Ok(started.elapsed());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Err(fail(format!(
            "{} never became ready:\n{}",
            c.proc.name,
            c.proc.log_tail(30)
        )))
    }

    /// The shared controller is running and ready; `f` gets it.
    pub fn controller<T>(&self, f: impl FnOnce(&Component) -> T) -> Result<T, Failed> {
        self.installed()?;
        let mut slot = self.controller.lock().unwrap();
        let alive = slot.as_mut().is_some_and(|c| c.proc.exited().is_none());
        if !alive {
            let mut c = self.spawn_controller("controller", &[]);
            self.wait_ready(&mut c)?;
            *slot = Some(c);
        }
        Ok(f(slot.as_ref().expect("started")))
    }

    /// Stop the shared controller (the next [`Env::controller`] starts it again).
    pub fn stop_controller(&self) {
        if let Some(mut c) = self.controller.lock().unwrap().take() {
            c.proc.terminate(Duration::from_secs(10));
        }
    }

    /// `sealgate ARGS` (the CLI), which must succeed: stdout.
    pub fn sealgate(&self, args: &[&str], stdin: Option<&str>) -> Result<String, Failed> {
        let mut cmd = std::process::Command::new(self.bin.join("sealgate"));
        cmd.args(args)
            .current_dir(&self.repo)
            .env_remove("SEALGATE_CERT")
            .env_remove("SEALGATE_CONTROLLER")
            .env("KUBECONFIG", self.cp.kubeconfig(&Identity::Admin));
        run_with_stdin(&mut cmd, stdin.unwrap_or_default())
            .map_err(|e| fail(format!("sealgate {} failed: {e}", args.join(" "))))
    }

    /// Apply CRDs from their projects' modules and wait until the API server serves them.
    pub fn install_crds(&self, files: &[sealgate_testenv::crds::CrdFile]) -> Result<(), Failed> {
        for &file in files {
            let text = sealgate_testenv::crds::read(file).map_err(|e| fail(e.to_string()))?;
            self.cp.apply(&Identity::Admin, &text);
            self.cp
                .wait_established(&["-f", "-"], &text)
                .map_err(|e| fail(format!("{} was not established: {e}", file.2)))?;
        }
        Ok(())
    }

    pub fn file(&self, rel: &str) -> PathBuf {
        self.repo.join(rel)
    }
}
