//! Bitnami Sealed Secrets, for real: its controller and kubeseal built from
//! `github.com/bitnami-labs/sealed-secrets` v0.27.1 and run against the same API server.
//!
//! Bitnami's controller reads only in-cluster configuration: the token, CA and namespace files
//! under /var/run/secrets/kubernetes.io/serviceaccount and KUBERNETES_SERVICE_HOST/PORT. It runs
//! in a private mount namespace (`unshare --mount`) with a tmpfs over /run holding those files, so
//! the machine is left as it was.

use std::path::{Path, PathBuf};
use std::time::Duration;

use libtest_mimic::Failed;
use sealgate_testenv::Identity;
use sealgate_testenv::cluster::Proc;

use crate::Test;
use crate::controller::{secret_yaml, wait_secret};
use crate::env::{Env, ensure, fail};

pub const TESTS: &[(&str, Test)] = &[
    ("bitnami::kubectl_names_with_both_crds", kubectl_names),
    (
        "bitnami::bitnami_controller_unseals_sealgate_output",
        bitnami_unseals_ours,
    ),
    (
        "bitnami::sealgate_controller_unseals_kubeseal_output",
        ours_unseals_kubeseal,
    ),
];

pub fn bitnami_bin() -> Result<PathBuf, Failed> {
    sealgate_testenv::go::binaries(&sealgate_testenv::go::BITNAMI)
        .map_err(|e| fail(format!("cannot build Bitnami's binaries: {e}")))
}

/// Bitnami's CRD, from its module (as `helm install sealed-secrets` installs it).
pub fn install_bitnami_crd(env: &Env) -> Result<(), Failed> {
    env.install_crds(&[sealgate_testenv::crds::BITNAMI_SEALED_SECRETS])
}

/// Both CRDs installed, as during a migration: what `kubectl get sealedsecret` means. Both
/// groups have the same priority, so kubectl takes the alphabetically first, bitnami.com: the
/// migration guide says to name ours `sealedsecrets.sealgate.dev` (or `ss`, its short name,
/// which Bitnami's CRD does not have).
fn kubectl_names(env: &Env) -> Result<(), Failed> {
    env.webhook()?;
    install_bitnami_crd(env)?;
    let ns = env.cp.namespace("names", &[]);
    let value = "A".repeat(400);
    for api in ["bitnami.com", "sealgate.dev"] {
        env.cp.apply(
            &Identity::Agent,
            &format!(
                "apiVersion: {api}/v1alpha1\nkind: SealedSecret\nmetadata:\n  name: from-{}\n  namespace: {ns}\nspec:\n  encryptedData:\n    k: {value}\n",
                api.split('.').next().unwrap()
            ),
        );
    }
    let names = |resource: &str| -> Result<String, Failed> {
        env.try_kubectl(
            &Identity::Admin,
            &[
                "-n",
                &ns,
                "get",
                resource,
                "-o",
                "jsonpath={.items[*].metadata.name}",
            ],
        )
        .map_err(fail)
    };
    let plain = names("sealedsecret")?;
    ensure(plain == "from-bitnami", || {
        format!(
            "`kubectl get sealedsecret` listed {plain:?}; the migration guide says it means Bitnami's kind"
        )
    })?;
    for ours in [
        "sealedsecrets.sealgate.dev",
        "sealedsecret.sealgate.dev",
        "ss",
    ] {
        let got = names(ours)?;
        ensure(got == "from-sealgate", || {
            format!("`kubectl get {ours}` listed {got:?}")
        })?;
    }
    let guide =
        std::fs::read_to_string(env.file("docs/migrating-from-bitnami.md")).unwrap_or_default();
    ensure(
        guide.contains("kubectl get sealedsecrets.sealgate.dev"),
        || "docs/migrating-from-bitnami.md does not say how to name sealgate's kind".into(),
    )
}

/// Bitnami's controller, and its HTTP (certificate) and metrics ports on loopback.
pub struct Bitnami {
    pub proc: Proc,
    pub listen: u16,
    pub metrics: u16,
}

/// Bitnami's controller started as in-cluster, in the `kube-system` namespace.
pub fn spawn_bitnami(env: &Env, bin: &Path) -> Result<Bitnami, Failed> {
    env.cp.apply(
        &Identity::Admin,
        "apiVersion: v1\nkind: ServiceAccount\nmetadata:\n  name: sealed-secrets-controller\n  namespace: kube-system\n---\napiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRoleBinding\nmetadata:\n  name: testenv-sealed-secrets\nroleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: cluster-admin}\nsubjects:\n  - {kind: ServiceAccount, name: sealed-secrets-controller, namespace: kube-system}\n",
    );
    let sa = env.path("bitnami-sa");
    std::fs::create_dir_all(&sa).map_err(|e| fail(e.to_string()))?;
    std::fs::write(
        sa.join("token"),
        env.cp.token("kube-system", "sealed-secrets-controller"),
    )
    .and_then(|_| std::fs::write(sa.join("ca.crt"), &env.cp.ca.cert))
    .and_then(|_| std::fs::write(sa.join("namespace"), "kube-system"))
    .map_err(|e| fail(e.to_string()))?;
    let port = env
        .cp
        .url
        .rsplit(':')
        .next()
        .unwrap_or_default()
        .to_string();
    let listen = sealgate_testkit::process::free_port();
    let metrics = sealgate_testkit::process::free_port();
    let script = format!(
        "set -e; mount -t tmpfs tmpfs /run; d=/run/secrets/kubernetes.io/serviceaccount; mkdir -p $d; cp {sa}/* $d/; exec {bin} --listen-addr 127.0.0.1:{listen} --listen-metrics-addr 127.0.0.1:{metrics} --key-renew-period 0 --log-info-stdout",
        sa = sa.display(),
        bin = bin.join("controller").display(),
    );
    let mut args = vec![
        "--mount".to_string(),
        "--propagation".into(),
        "private".into(),
    ];
    // Without root, a user namespace maps us to root inside it.
    if !is_root() {
        args.push("--map-root-user".into());
    }
    args.extend(["sh".into(), "-c".into(), script]);
    let proc = Proc::spawn(
        "bitnami-controller",
        Path::new("unshare"),
        &args,
        &env.path("bitnami-controller.log"),
        &[
            ("KUBERNETES_SERVICE_HOST", "127.0.0.1"),
            ("KUBERNETES_SERVICE_PORT", port.as_str()),
        ],
    );
    Ok(Bitnami {
        proc,
        listen,
        metrics,
    })
}

fn is_root() -> bool {
    std::process::Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

/// Keys made by `sealgate keys init`, given to Bitnami's controller with its label (rolling a
/// migration back), open what `sealgate seal --bitnami` sealed.
fn bitnami_unseals_ours(env: &Env) -> Result<(), Failed> {
    env.webhook()?;
    install_bitnami_crd(env)?;
    let bin = bitnami_bin()?;
    let keys = env.path("bitnami-keys");
    let keys_arg = keys.to_string_lossy().into_owned();
    env.sealgate(
        &["keys", "init", "--keys", &keys_arg, "--key-size", "2048"],
        None,
    )?;
    let key_file = std::fs::read_dir(&keys)
        .map_err(|e| fail(e.to_string()))?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|x| x == "yaml"))
        .ok_or_else(|| fail("no key file in the key store"))?;
    let labelled = env.kubectl_ok(
        &Identity::Admin,
        &[
            "label",
            "--local",
            "-f",
            &key_file.to_string_lossy(),
            "sealedsecrets.bitnami.com/sealed-secrets-key=active",
            "-o",
            "yaml",
        ],
    );
    env.cp
        .try_kubectl_stdin(
            &Identity::Admin,
            &["apply", "-n", "kube-system", "-f", "-"],
            &labelled,
        )
        .map_err(fail)?;

    let mut controller = spawn_bitnami(env, &bin)?.proc;
    let ns = env.cp.namespace("bitnami", &[]);
    let sealed = env.sealgate(
        &["seal", "--bitnami", "--keys", &keys_arg],
        Some(&secret_yaml(&ns, "db", "from-sealgate")),
    )?;
    ensure(sealed.contains("apiVersion: bitnami.com/v1alpha1"), || {
        sealed.clone()
    })?;
    env.cp.apply(&Identity::Agent, &sealed);
    let r = wait_secret(env, &ns, "db", "from-sealgate");
    let log = controller.log_tail(30);
    controller.terminate(Duration::from_secs(5));
    r.map(drop).map_err(|e| {
        fail(format!(
            "{}\n--- Bitnami's controller ---\n{log}",
            e.message().unwrap_or_default()
        ))
    })?;
    // Bitnami's controller marks what it unsealed.
    let ss = env
        .get_json(&["-n", &ns, "sealedsecrets.bitnami.com", "db"])
        .unwrap_or_default();
    ensure(ss["status"]["conditions"][0]["status"] == "True", || {
        format!("Bitnami's status: {}", ss["status"])
    })
}

/// kubeseal fetches our controller's certificate over loopback (`--fetch-cert --cert URL`) and
/// seals with it; `sealgate-controller --bitnami` unseals the result.
fn ours_unseals_kubeseal(env: &Env) -> Result<(), Failed> {
    env.webhook()?;
    install_bitnami_crd(env)?;
    let bin = bitnami_bin()?;
    env.stop_controller();
    let mut ours = env.spawn_controller("bitnami-mode", &["--bitnami"]);
    env.wait_ready(&mut ours)?;
    let url = format!("http://127.0.0.1:{}/v1/cert.pem", ours.port);
    let kubeseal = |args: &[&str], stdin: Option<&str>| -> Result<String, Failed> {
        let mut cmd = std::process::Command::new(bin.join("kubeseal"));
        cmd.args(args)
            .env("KUBECONFIG", env.cp.kubeconfig(&Identity::Admin));
        sealgate_testenv::cluster::run_with_stdin(&mut cmd, stdin.unwrap_or_default())
            .map_err(|e| fail(format!("kubeseal {}: {e}", args.join(" "))))
    };
    let fetched = kubeseal(&["--fetch-cert", "--cert", &url], None)?;
    let served = crate::env::http_get(ours.port, "/v1/cert.pem").unwrap_or_default();
    ensure(
        fetched.trim() == served.trim() && fetched.contains("BEGIN CERTIFICATE"),
        || format!("kubeseal --fetch-cert gave {fetched:?}"),
    )?;
    let ns = env.governed_namespace("kubeseal");
    let sealed = kubeseal(
        &["--cert", &url, "-o", "yaml"],
        Some(&secret_yaml(&ns, "db", "from-kubeseal")),
    )?;
    env.cp.apply(&Identity::Agent, &sealed);
    let r = wait_secret(env, &ns, "db", "from-kubeseal");
    ours.proc.terminate(Duration::from_secs(10));
    r.map(drop)
}
