//! [`ControlPlane`]: etcd, kube-apiserver and kube-controller-manager on loopback, with the
//! identities the tests act as.
//!
//! The API server runs as a cluster's does where it matters to us: RBAC, service-account tokens
//! signed by its own key (so TokenRequest works and `deploy/`'s RBAC is what a component gets),
//! the admission chain with `ValidatingAdmissionWebhook` and `ValidatingAdmissionPolicy`, and
//! client-certificate users. kube-controller-manager runs the controllers a Secret controller and
//! an admission webhook meet (garbage collector, namespace, deployment, replicaset, service
//! accounts), each under its own service account as in a real cluster. There is no scheduler and
//! no kubelet: Pods stay Pending.

use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::go::{self, Unavailable};
use crate::pki::{self, Ca};

/// Who a request comes from.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Identity {
    /// `system:masters`: setting up and inspecting.
    Admin,
    /// A person, `alice@example.com`, bound to cluster-admin: RBAC admits her, so the webhook
    /// alone decides.
    Human,
    /// The GitOps agent: Flux's `system:serviceaccount:flux-system:kustomize-controller`, bound to
    /// cluster-admin, with a TokenRequest token.
    Agent,
    /// Any service account, with a TokenRequest token: `(namespace, name)`.
    ServiceAccount(String, String),
}

pub const HUMAN: &str = "alice@example.com";
pub const AGENT_NAMESPACE: &str = "flux-system";
pub const AGENT_NAME: &str = "kustomize-controller";

/// A process that is killed when dropped. With util-linux's `setpriv` it also dies with the test
/// process (a parent-death signal), so a test binary killed mid-run leaves nothing behind.
pub struct Proc {
    pub name: String,
    child: Child,
    log: PathBuf,
}

impl Proc {
    /// Start `cmd` with its output in `log`.
    pub fn spawn(
        name: &str,
        program: &Path,
        args: &[String],
        log: &Path,
        env: &[(&str, &str)],
    ) -> Proc {
        let out = File::create(log).expect("a log file");
        let err = out.try_clone().expect("a log file");
        let mut cmd = if have_setpriv() {
            let mut c = Command::new("setpriv");
            c.args(["--pdeathsig", "KILL", "--"]).arg(program);
            c
        } else {
            Command::new(program)
        };
        let child = cmd
            .args(args)
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", program.display()));
        Proc {
            name: name.into(),
            child,
            log: log.to_path_buf(),
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The last `lines` lines of its log.
    pub fn log_tail(&self, lines: usize) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Whether it has exited.
    pub fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// SIGKILL, and reap.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM, and wait up to `grace` before SIGKILL.
    pub fn terminate(&mut self, grace: Duration) -> Option<std::process::ExitStatus> {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let until = Instant::now() + grace;
        while Instant::now() < until {
            if let Some(s) = self.exited() {
                return Some(s);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        self.kill();
        None
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
    }
}

fn have_setpriv() -> bool {
    static HAVE: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *HAVE.get_or_init(|| {
        Command::new("setpriv")
            .args(["--pdeathsig", "KILL", "--", "true"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    })
}

/// The running control plane. Dropping it stops every process and removes its directory (kept
/// with `SEALGATE_KEEP_CLUSTER=1`, for reading the logs).
pub struct ControlPlane {
    /// `https://127.0.0.1:PORT`.
    pub url: String,
    pub ca: Ca,
    kube_bin: PathBuf,
    dir: tempfile::TempDir,
    // Dropped in reverse: the controller manager, then the API server, then etcd.
    procs: Mutex<Vec<Proc>>,
    kubeconfigs: Mutex<BTreeMap<Identity, PathBuf>>,
    /// How long the start took (processes started to every controller ready).
    pub started_in: Duration,
}

/// kube-controller-manager's controllers: what garbage collection, namespaces, Deployments and
/// service accounts need (names as 1.37 knows them).
const CONTROLLERS: &str = "garbage-collector-controller,namespace-controller,deployment-controller,\
replicaset-controller,serviceaccount-controller,serviceaccount-token-controller,\
root-ca-certificate-publisher-controller";

impl ControlPlane {
    /// Build (if needed) and start the control plane; `Err` only when the binaries cannot be had.
    /// A control plane that does not come up is a test failure, with its logs.
    pub fn start() -> Result<ControlPlane, Unavailable> {
        let kube_bin = go::binaries(&go::KUBERNETES)?;
        let etcd_bin = go::binaries(&go::ETCD)?;
        let started = Instant::now();
        let dir = tempfile::Builder::new()
            .prefix("sealgate-testenv-")
            .tempdir()
            .expect("a temporary directory");
        let d = dir.path();
        let path = |f: &str| d.join(f);
        let write = |f: &str, s: &str| {
            std::fs::write(path(f), s).expect("write a control-plane file");
            path(f).to_string_lossy().into_owned()
        };

        let ca = Ca::new();
        let ca_file = write("ca.crt", &ca.cert);
        let serving = ca.serving(&[
            "127.0.0.1",
            "localhost",
            "kubernetes",
            "kubernetes.default",
            "kubernetes.default.svc",
            "10.96.0.1",
        ]);
        let serving_cert = write("apiserver.crt", &serving.cert);
        let serving_key = write("apiserver.key", &serving.key);
        let (sa_key, sa_pub) = pki::service_account_key();
        let sa_key = write("sa.key", &sa_key);
        let sa_pub = write("sa.pub", &sa_pub);

        let port = sealgate_testkit::process::free_port();
        let url = format!("https://127.0.0.1:{port}");
        let s = |v: &str| v.to_string();

        // etcd: loopback only; no fsync (a test's data need not survive a power cut).
        let etcd_client = sealgate_testkit::process::free_port();
        let etcd_peer = sealgate_testkit::process::free_port();
        let etcd = Proc::spawn(
            "etcd",
            &etcd_bin.join("etcd"),
            &[
                s("--name=testenv"),
                format!("--data-dir={}", path("etcd").display()),
                format!("--listen-client-urls=http://127.0.0.1:{etcd_client}"),
                format!("--advertise-client-urls=http://127.0.0.1:{etcd_client}"),
                format!("--listen-peer-urls=http://127.0.0.1:{etcd_peer}"),
                format!("--initial-advertise-peer-urls=http://127.0.0.1:{etcd_peer}"),
                format!("--initial-cluster=testenv=http://127.0.0.1:{etcd_peer}"),
                s("--unsafe-no-fsync=true"),
                s("--log-level=warn"),
            ],
            &path("etcd.log"),
            &[],
        );

        let apiserver = Proc::spawn(
            "kube-apiserver",
            &kube_bin.join("kube-apiserver"),
            &[
                format!("--etcd-servers=http://127.0.0.1:{etcd_client}"),
                s("--bind-address=127.0.0.1"),
                format!("--secure-port={port}"),
                // A loopback advertise address needs the endpoint reconciler off.
                s("--advertise-address=127.0.0.1"),
                s("--endpoint-reconciler-type=none"),
                format!("--cert-dir={}", path("apiserver-certs").display()),
                format!("--tls-cert-file={serving_cert}"),
                format!("--tls-private-key-file={serving_key}"),
                format!("--client-ca-file={ca_file}"),
                s("--authorization-mode=RBAC"),
                s("--service-account-issuer=https://kubernetes.default.svc.cluster.local"),
                format!("--service-account-key-file={sa_pub}"),
                format!("--service-account-signing-key-file={sa_key}"),
                s("--service-cluster-ip-range=10.96.0.0/16"),
                s("--allow-privileged=true"),
                s(
                    "--enable-admission-plugins=NamespaceLifecycle,ServiceAccount,DefaultStorageClass,ResourceQuota,MutatingAdmissionWebhook,ValidatingAdmissionWebhook,ValidatingAdmissionPolicy",
                ),
                s("--v=1"),
            ],
            &path("kube-apiserver.log"),
            &[],
        );

        let cp = ControlPlane {
            url,
            ca,
            kube_bin,
            dir,
            procs: Mutex::new(vec![etcd, apiserver]),
            kubeconfigs: Mutex::new(BTreeMap::new()),
            started_in: Duration::ZERO,
        };
        let admin = cp.ca.client("sealgate-testenv-admin", &["system:masters"]);
        let admin = cp.write_kubeconfig("admin", Creds::Cert(&admin));
        cp.kubeconfigs
            .lock()
            .unwrap()
            .insert(Identity::Admin, admin);
        let human = cp.ca.client(HUMAN, &["developers"]);
        let human = cp.write_kubeconfig("human", Creds::Cert(&human));
        cp.kubeconfigs
            .lock()
            .unwrap()
            .insert(Identity::Human, human);

        cp.wait_for(
            "the API server to be ready",
            Duration::from_secs(120),
            || {
                cp.kubectl(&Identity::Admin)
                    .args(["get", "--raw", "/readyz"])
                    .output()
                    .is_ok_and(|o| o.status.success())
            },
        );
        // The controller manager exits when RBAC's bootstrap roles are not there yet.
        cp.wait_for("RBAC's bootstrap policy", Duration::from_secs(60), || {
            cp.try_kubectl(
                &Identity::Admin,
                &[
                    "get",
                    "clusterrolebinding",
                    "system:kube-controller-manager",
                ],
            )
            .is_ok()
        });
        let kcm = cp.ca.client("system:kube-controller-manager", &[]);
        let kcm = cp.write_kubeconfig("kube-controller-manager", Creds::Cert(&kcm));
        let kcm = Proc::spawn(
            "kube-controller-manager",
            &cp.kube_bin.join("kube-controller-manager"),
            &[
                format!("--kubeconfig={}", kcm.display()),
                format!("--controllers={CONTROLLERS}"),
                // Each controller under its own service account, as a real cluster runs them:
                // the ReplicaSet controller's Pods reach the webhook as
                // system:serviceaccount:kube-system:replicaset-controller.
                s("--use-service-account-credentials=true"),
                format!("--service-account-private-key-file={sa_key}"),
                format!("--root-ca-file={ca_file}"),
                s("--leader-elect=false"),
                s("--bind-address=127.0.0.1"),
                format!("--secure-port={}", sealgate_testkit::process::free_port()),
                s("--concurrent-gc-syncs=5"),
                s("--v=1"),
            ],
            &cp.dir.path().join("kube-controller-manager.log"),
            &[],
        );
        cp.procs.lock().unwrap().push(kcm);
        // The service-account controllers work: the default namespace has its account.
        cp.wait_for("kube-controller-manager", Duration::from_secs(60), || {
            cp.try_kubectl(
                &Identity::Admin,
                &["-n", "default", "get", "serviceaccount", "default"],
            )
            .is_ok()
        });

        // The identities: the human and the agent may do anything RBAC allows a cluster admin;
        // the webhook alone decides for them.
        cp.apply(
            &Identity::Admin,
            &format!(
                r#"
apiVersion: v1
kind: Namespace
metadata:
  name: {AGENT_NAMESPACE}
---
apiVersion: v1
kind: ServiceAccount
metadata:
  name: {AGENT_NAME}
  namespace: {AGENT_NAMESPACE}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata:
  name: testenv-agent
roleRef: {{apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: cluster-admin}}
subjects:
  - {{kind: ServiceAccount, name: {AGENT_NAME}, namespace: {AGENT_NAMESPACE}}}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata:
  name: testenv-human
roleRef: {{apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: cluster-admin}}
subjects:
  - {{kind: User, name: "{HUMAN}", apiGroup: rbac.authorization.k8s.io}}
"#
            ),
        );
        let mut cp = cp;
        cp.started_in = started.elapsed();
        eprintln!(
            "testenv: control plane {} ready in {:.1} s (Kubernetes {}; logs in {})",
            cp.url,
            cp.started_in.as_secs_f64(),
            go::KUBERNETES_VERSION,
            cp.dir.path().display()
        );
        Ok(cp)
    }

    /// The control plane's working directory (certificates, kubeconfigs, logs).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The directory of kube-apiserver, kube-controller-manager and kubectl.
    pub fn kube_bin(&self) -> &Path {
        &self.kube_bin
    }

    /// The CA file clients verify the API server with.
    pub fn ca_file(&self) -> PathBuf {
        self.dir.path().join("ca.crt")
    }

    fn write_kubeconfig(&self, name: &str, creds: Creds<'_>) -> PathBuf {
        use base64::Engine as _;
        let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
        let user = match creds {
            Creds::Cert(p) => serde_json::json!({
                "client-certificate-data": b64(&p.cert),
                "client-key-data": b64(&p.key),
            }),
            Creds::Token(t) => serde_json::json!({ "token": t }),
        };
        let config = serde_json::json!({
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "testenv", "cluster": {
                "server": self.url,
                "certificate-authority-data": b64(&self.ca.cert),
            }}],
            "users": [{"name": name, "user": user}],
            "contexts": [{"name": "testenv", "context": {"cluster": "testenv", "user": name}}],
            "current-context": "testenv",
        });
        let path = self.dir.path().join(format!("{name}.kubeconfig"));
        std::fs::write(&path, serde_json::to_vec_pretty(&config).unwrap()).expect("a kubeconfig");
        path
    }

    /// A kubeconfig for `who` (a service account's holds a fresh TokenRequest token, valid 24 h).
    pub fn kubeconfig(&self, who: &Identity) -> PathBuf {
        if let Some(p) = self.kubeconfigs.lock().unwrap().get(who) {
            return p.clone();
        }
        let (ns, name) = match who {
            Identity::Agent => (AGENT_NAMESPACE.to_string(), AGENT_NAME.to_string()),
            Identity::ServiceAccount(ns, name) => (ns.clone(), name.clone()),
            Identity::Admin | Identity::Human => unreachable!("written at start"),
        };
        let token = self.token(&ns, &name);
        let path = self.write_kubeconfig(&format!("sa-{ns}-{name}"), Creds::Token(&token));
        self.kubeconfigs
            .lock()
            .unwrap()
            .insert(who.clone(), path.clone());
        path
    }

    /// A TokenRequest token of a service account, valid 24 h.
    pub fn token(&self, ns: &str, name: &str) -> String {
        self.kubectl_ok(
            &Identity::Admin,
            &["-n", ns, "create", "token", name, "--duration=24h"],
        )
        .trim()
        .to_string()
    }

    /// `kubectl` as `who`. Its discovery cache lives in the control plane's directory, not in
    /// the user's ~/.kube.
    pub fn kubectl(&self, who: &Identity) -> Command {
        let mut c = Command::new(self.kube_bin.join("kubectl"));
        c.arg("--kubeconfig").arg(self.kubeconfig(who));
        c.arg("--cache-dir").arg(self.dir.path().join("kube-cache"));
        c.stdin(Stdio::null());
        c
    }

    /// `kubectl ARGS` as `who`: stdout, or stderr as the error.
    pub fn try_kubectl(&self, who: &Identity, args: &[&str]) -> Result<String, String> {
        let out = self.kubectl(who).args(args).output().expect("kubectl runs");
        output_result(out)
    }

    /// `kubectl ARGS` as `who`, which must succeed.
    pub fn kubectl_ok(&self, who: &Identity, args: &[&str]) -> String {
        self.try_kubectl(who, args)
            .unwrap_or_else(|e| panic!("kubectl {} as {who:?} failed: {e}", args.join(" ")))
    }

    /// `kubectl ARGS` as `who` with `stdin` as its input.
    pub fn try_kubectl_stdin(
        &self,
        who: &Identity,
        args: &[&str],
        stdin: &str,
    ) -> Result<String, String> {
        let mut cmd = self.kubectl(who);
        cmd.args(args);
        run_with_stdin(&mut cmd, stdin)
    }

    /// `kubectl apply --server-side -f -` of `yaml` as `who`, which must succeed.
    pub fn apply(&self, who: &Identity, yaml: &str) -> String {
        self.try_kubectl_stdin(who, &["apply", "--server-side", "-f", "-"], yaml)
            .unwrap_or_else(|e| panic!("apply as {who:?} failed: {e}\n{yaml}"))
    }

    /// Wait until every CRD that `kubectl get ARGS` names (stdin as its input) is Established.
    /// Not `kubectl wait --for=condition=Established`: that fails at once ("accessor error: <nil>
    /// is of the type <nil>") when it reads a CRD before the API server has written its first
    /// conditions, which a loaded 2-core machine shows now and then.
    pub fn wait_established(&self, args: &[&str], stdin: &str) -> Result<(), String> {
        const LIMIT: Duration = Duration::from_secs(60);
        let mut get = vec!["get", "-o", "name"];
        get.extend_from_slice(args);
        let names = self.try_kubectl_stdin(&Identity::Admin, &get, stdin)?;
        let until = Instant::now() + LIMIT;
        for name in names.lines().map(str::trim).filter(|n| !n.is_empty()) {
            loop {
                let status = self.try_kubectl(
                    &Identity::Admin,
                    &[
                        "get",
                        name,
                        "-o",
                        "jsonpath={.status.conditions[?(@.type==\"Established\")].status}",
                    ],
                )?;
                if status.trim() == "True" {
                    break;
                }
                if Instant::now() > until {
                    return Err(format!(
                        "{name} not Established after {LIMIT:?} (status {status:?})"
                    ));
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        }
        Ok(())
    }

    /// Poll `ok` every 100 ms until it holds, or fail after `limit` with the control plane's logs.
    pub fn wait_for(&self, what: &str, limit: Duration, mut ok: impl FnMut() -> bool) {
        let until = Instant::now() + limit;
        loop {
            if ok() {
                return;
            }
            if Instant::now() > until {
                panic!(
                    "timed out after {limit:?} waiting for {what}\n{}",
                    self.logs()
                );
            }
            for p in self.procs.lock().unwrap().iter_mut() {
                if let Some(status) = p.exited() {
                    panic!(
                        "{} exited ({status}) while waiting for {what}:\n{}",
                        p.name,
                        p.log_tail(40)
                    );
                }
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The tail of every control-plane process's log.
    pub fn logs(&self) -> String {
        self.procs
            .lock()
            .unwrap()
            .iter()
            .map(|p| format!("--- {} ---\n{}\n", p.name, p.log_tail(25)))
            .collect()
    }

    /// A fresh namespace named after `prefix`, with `labels`.
    pub fn namespace(&self, prefix: &str, labels: &[(&str, &str)]) -> String {
        static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let name = format!("{prefix}-{n}");
        let labels: String = labels
            .iter()
            .map(|(k, v)| format!("\n    {k}: \"{v}\""))
            .collect();
        self.apply(
            &Identity::Admin,
            &format!(
                "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: {name}\n  labels:{labels}\n"
            ),
        );
        name
    }
}

impl Drop for ControlPlane {
    fn drop(&mut self) {
        // Stop in reverse order of start.
        let mut procs = self.procs.lock().unwrap();
        while let Some(mut p) = procs.pop() {
            p.terminate(Duration::from_secs(5));
        }
        if std::env::var_os("SEALGATE_KEEP_CLUSTER").is_some() {
            let kept = std::mem::replace(
                &mut self.dir,
                tempfile::tempdir().expect("a temporary directory"),
            );
            eprintln!("testenv: kept {}", kept.keep().display());
        }
    }
}

enum Creds<'a> {
    Cert(&'a pki::Pair),
    Token(&'a str),
}

/// Run `cmd` with `stdin` as its input: its stdout, or its stderr (or why it could not run) as
/// the error.
pub fn run_with_stdin(cmd: &mut Command, stdin: &str) -> Result<String, String> {
    output_result(run_output(cmd, stdin)?)
}

/// Run `cmd` with `stdin` as its input: its whole output (stdout, stderr and status), or why it
/// could not run.
pub fn run_output(cmd: &mut Command, stdin: &str) -> Result<Output, String> {
    use std::io::Write as _;
    let program = cmd.get_program().to_string_lossy().into_owned();
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run {program}: {e}"))?;
    // A command that exits without reading its input closes the pipe: its output says why.
    let _ = child
        .stdin
        .take()
        .expect("piped stdin")
        .write_all(stdin.as_bytes());
    child
        .wait_with_output()
        .map_err(|e| format!("{program}: {e}"))
}

fn output_result(out: Output) -> Result<String, String> {
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}
