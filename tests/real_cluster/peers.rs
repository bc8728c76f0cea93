//! The controller rows of the peer benchmark (issue 29; the policy rows are
//! `tests/tests/peers.rs`): SealedSecrets applied at once until every Secret exists, sealgate's
//! controller (at its default `--kube-api-qps` and with it raised, so the API server is what is
//! measured) beside Bitnami's v0.27.1 on this API server; then each restarted with every object
//! up to date. Figures and ratios are printed, not asserted; the verdicts are: every Secret
//! exists, with the value sealed, and sealgate's restart spends no private-key operation.
//!
//! 1,000 objects with `SEALGATE_PEERS=full` (`bench/peers.sh`), 20 otherwise.

use std::time::{Duration, Instant};

use libtest_mimic::Failed;
use sealgate_testenv::Identity;

use crate::Test;
use crate::bitnami::{bitnami_bin, install_bitnami_crd, spawn_bitnami};
use crate::controller::{SecretWatch, lease_holder, seal, secret_yaml, wait_secret};
use crate::env::{Env, ensure, fail, http_get, metric};

pub const TESTS: &[(&str, Test)] = &[("peers::controller_beside_bitnami", beside_bitnami)];

fn full() -> bool {
    std::env::var("SEALGATE_PEERS").is_ok_and(|v| v == "full")
}

/// `n` Secrets in `ns`, one YAML stream.
fn secrets(ns: &str, n: usize) -> String {
    (0..n)
        .map(|i| {
            format!(
                "---\n{}",
                secret_yaml(ns, &format!("s{i:04}"), &format!("v{i}"))
            )
        })
        .collect()
}

/// Apply a sealed stream as the GitOps agent does (in bulk, 200 objects per apply) and wait
/// until every Secret exists: the time from the first apply.
fn apply_until_ready(env: &Env, ns: &str, sealed: &str, n: usize) -> Result<Duration, Failed> {
    let docs: Vec<&str> = sealed
        .split("\n---\n")
        .filter(|d| !d.trim().is_empty())
        .collect();
    ensure(docs.len() == n, || {
        format!("{} sealed documents", docs.len())
    })?;
    let watch = SecretWatch::start(env, ns);
    let started = Instant::now();
    for chunk in docs.chunks(200) {
        env.cp.apply(&Identity::Agent, &chunk.join("\n---\n"));
    }
    let limit = Duration::from_secs(if full() { 1800 } else { 300 });
    env.wait(&format!("{n} Secrets in {ns}"), limit, || {
        watch.count() >= n
    })?;
    let took = started.elapsed();
    // The value is the one sealed (the first and the last).
    for i in [0, n - 1] {
        wait_secret(env, ns, &format!("s{i:04}"), &format!("v{i}"))?;
    }
    Ok(took)
}

fn rate(n: usize, d: Duration) -> String {
    format!(
        "{:.2} s ({:.0} objects/s)",
        d.as_secs_f64(),
        n as f64 / d.as_secs_f64()
    )
}

fn beside_bitnami(env: &Env) -> Result<(), Failed> {
    let n = if full() { 1000 } else { 20 };
    env.webhook()?;
    env.installed()?;
    install_bitnami_crd(env)?;
    let bin = bitnami_bin()?;
    env.stop_controller();

    // sealgate's controller, alone, at its defaults and with the throttle raised.
    let mut ours = Vec::new();
    for (name, flags) in [
        ("peers-defaults", &[][..]),
        (
            "peers-raised",
            &["--kube-api-qps=2000", "--kube-api-burst=4000"][..],
        ),
    ] {
        let mut c = env.spawn_controller(name, flags);
        env.wait_ready(&mut c)?;
        env.wait("leadership", Duration::from_secs(60), || {
            lease_holder(env).as_deref() == Some(name)
        })?;
        let ns = env.cp.namespace("peers", &[]);
        let sealed = seal(env, c.port, &secrets(&ns, n))?;
        let took = apply_until_ready(env, &ns, &sealed, n)?;
        ours.push(took);
        c.proc.terminate(Duration::from_secs(10));
    }

    // Restart with every object up to date: how long until each is looked at, and the
    // private-key operations spent.
    let total = env
        .get_json(&["sealedsecrets.sealgate.dev", "-A"])
        .and_then(|l| l["items"].as_array().map(Vec::len))
        .unwrap_or(0);
    let started = Instant::now();
    let mut c = env.spawn_controller("peers-restarted", &[]);
    env.wait_ready(&mut c)?;
    let reconciled = || {
        metric(
            &c.metrics(),
            "sealgate_controller_reconcile_duration_seconds_count",
        )
    };
    env.wait(
        "the restarted controller to look at every object",
        Duration::from_secs(300),
        || reconciled() >= total as f64,
    )?;
    let caught_up = started.elapsed();
    let ops = metric(
        &c.metrics(),
        "sealgate_controller_private_key_operations_total",
    );
    c.proc.terminate(Duration::from_secs(10));

    // Bitnami's controller (v0.27.1 has no client QPS setting: client-go's default, 5 per
    // second with bursts of 10).
    let mut b = spawn_bitnami(env, &bin)?;
    let cert_url = format!("http://127.0.0.1:{}/v1/cert.pem", b.listen);
    env.wait("Bitnami's certificate", Duration::from_secs(60), || {
        http_get(b.listen, "/v1/cert.pem").is_some_and(|c| c.contains("BEGIN CERTIFICATE"))
    })?;
    let ns = env.cp.namespace("peers-bitnami", &[]);
    let sealed = env.sealgate(
        &["seal", "--bitnami", "--cert", &cert_url],
        Some(&secrets(&ns, n)),
    )?;
    let bitnami = apply_until_ready(env, &ns, &sealed, n).map_err(|e| {
        fail(format!(
            "{}\n--- Bitnami's controller ---\n{}",
            e.message().unwrap_or_default(),
            b.proc.log_tail(20)
        ))
    })?;
    b.proc.terminate(Duration::from_secs(10));
    // Restarted with every object up to date: what it decrypts again in its first seconds.
    let window = Duration::from_secs(if full() { 30 } else { 10 });
    let mut b = spawn_bitnami(env, &bin)?;
    std::thread::sleep(window);
    let unseals = http_get(b.metrics, "/metrics")
        .map(|m| metric(&m, "sealed_secrets_controller_unseal_requests_total"))
        .unwrap_or(0.0);
    b.proc.terminate(Duration::from_secs(10));

    println!("controller rows ({n} SealedSecrets, one API server, one 2-core machine):");
    println!("| work | peer | sealgate | ratio | target |");
    println!("|---|---|---|---|---|");
    let ratio = bitnami.as_secs_f64() / ours[1].as_secs_f64();
    println!(
        "| {n} SealedSecrets applied, until every Secret exists | Bitnami v0.27.1: {} | `--kube-api-qps 2000`: {} | {ratio:.1}× | ≥ 20× ({}) |",
        rate(n, bitnami),
        rate(n, ours[1]),
        if ratio >= 20.0 { "met" } else { "not met" }
    );
    println!(
        "| the same, sealgate at its defaults (`--kube-api-qps 50`: three writes per object) | Bitnami v0.27.1: {} | {} | {:.1}× | |",
        rate(n, bitnami),
        rate(n, ours[0]),
        bitnami.as_secs_f64() / ours[0].as_secs_f64()
    );
    println!(
        "| restart with every object up to date | Bitnami: {unseals} decryptions in its first {} s ({n} objects) | {ops} private-key operations; {total} objects looked at in {:.2} s | | 0 private-key operations ({}) |",
        window.as_secs(),
        caught_up.as_secs_f64(),
        if ops == 0.0 { "met" } else { "not met" }
    );
    ensure(ops == 0.0, || {
        format!("{ops} private-key operations after a restart with nothing to do")
    })
}
