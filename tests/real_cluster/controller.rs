//! The controller against the real API server, with `deploy/`'s RBAC (its own service account's
//! token): unsealing by server-side and client-side apply, updates, garbage collection, unowned
//! Secrets, key renewal, leader election, and restarts.

use std::time::{Duration, Instant};

use libtest_mimic::Failed;
use sealgate_testenv::Identity;
use serde_json::Value;

use crate::Test;
use crate::env::{Component, Env, ensure, fail, metric};

pub const TESTS: &[(&str, Test)] = &[
    (
        "controller::unseals_server_side_apply",
        unseals_server_side_apply,
    ),
    (
        "controller::unseals_client_side_apply",
        unseals_client_side_apply,
    ),
    (
        "controller::unowned_secret_is_never_overwritten",
        unowned_secret,
    ),
    ("controller::key_renewal_keeps_old_values", key_renewal),
    ("controller::leader_fails_over", leader_fails_over),
    // After the others: the garbage collector learns a new CRD at its discovery refresh (30 s).
    (
        "controller::update_follows_and_delete_collects",
        update_and_delete,
    ),
    (
        "controller::unseal_latency_and_restart_at_scale",
        latency_and_restart,
    ),
];

const PASSWORD: &str = "correct-horse-battery-staple";

/// A Secret manifest with `password` (and a label and type for the template).
pub fn secret_yaml(ns: &str, name: &str, password: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Secret\nmetadata:\n  name: {name}\n  namespace: {ns}\n  labels:\n    app.kubernetes.io/name: {name}\ntype: example.com/credentials\nstringData:\n  password: {password}\n  username: shop\n"
    )
}

/// `sealgate seal` with the controller's key, fetched from its HTTP API as `--controller` does.
pub fn seal(env: &Env, port: u16, secrets: &str) -> Result<String, Failed> {
    env.sealgate(
        &["seal", "--controller", &format!("http://127.0.0.1:{port}")],
        Some(secrets),
    )
}

fn shared_port(env: &Env) -> Result<u16, Failed> {
    env.controller(|c| c.port)
}

fn secret(env: &Env, ns: &str, name: &str) -> Option<Value> {
    env.get_json(&["-n", ns, "secret", name])
}

fn decoded(s: &Value, key: &str) -> Option<String> {
    use base64::Engine as _;
    let b = s["data"][key].as_str()?;
    let raw = base64::engine::general_purpose::STANDARD.decode(b).ok()?;
    String::from_utf8(raw).ok()
}

pub fn wait_secret(env: &Env, ns: &str, name: &str, want: &str) -> Result<Value, Failed> {
    let mut last = None;
    env.wait(
        &format!("Secret {ns}/{name} with the sealed value"),
        Duration::from_secs(60),
        || {
            last = secret(env, ns, name);
            last.as_ref()
                .and_then(|s| decoded(s, "password"))
                .as_deref()
                == Some(want)
        },
    )?;
    Ok(last.expect("seen"))
}

fn synced(ss: &Value) -> Option<(&str, &str)> {
    let c = ss["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == "Synced")?;
    Some((
        c["status"].as_str()?,
        c["reason"].as_str().unwrap_or_default(),
    ))
}

/// The Secret has what the SealedSecret asks, a controller ownerReference, and the
/// SealedSecret's status and Event say so without any value.
fn check_unsealed(env: &Env, ns: &str, name: &str) -> Result<(), Failed> {
    let s = wait_secret(env, ns, name, PASSWORD)?;
    ensure(decoded(&s, "username").as_deref() == Some("shop"), || {
        "username".into()
    })?;
    ensure(s["type"] == "example.com/credentials", || {
        format!("type {}", s["type"])
    })?;
    ensure(
        s["metadata"]["labels"]["app.kubernetes.io/name"] == name,
        || {
            format!(
                "the template's label is missing: {}",
                s["metadata"]["labels"]
            )
        },
    )?;
    let ss = env
        .get_json(&["-n", ns, "sealedsecret.sealgate.dev", name])
        .ok_or_else(|| fail("no SealedSecret"))?;
    let owner = &s["metadata"]["ownerReferences"][0];
    ensure(
        owner["kind"] == "SealedSecret"
            && owner["controller"] == true
            && owner["uid"] == ss["metadata"]["uid"],
        || format!("ownerReferences: {}", s["metadata"]["ownerReferences"]),
    )?;
    env.wait(
        "status Synced with observedGeneration",
        Duration::from_secs(30),
        || {
            env.get_json(&["-n", ns, "sealedsecret.sealgate.dev", name])
                .is_some_and(|ss| {
                    synced(&ss).is_some_and(|(s, _)| s == "True")
                        && ss["status"]["observedGeneration"] == ss["metadata"]["generation"]
                })
        },
    )?;
    let mut events = String::new();
    env.wait(
        "an Event on the SealedSecret",
        Duration::from_secs(30),
        || {
            events = env
                .try_kubectl(
                    &Identity::Admin,
                    &[
                        "-n",
                        ns,
                        "get",
                        "events.events.k8s.io",
                        "--field-selector",
                        &format!("regarding.name={name}"),
                        "-o",
                        "json",
                    ],
                )
                .unwrap_or_default();
            events.contains("\"SealedSecret\"")
        },
    )?;
    let ss = env
        .try_kubectl(
            &Identity::Admin,
            &[
                "-n",
                ns,
                "get",
                "sealedsecret.sealgate.dev",
                name,
                "-o",
                "json",
            ],
        )
        .map_err(fail)?;
    ensure(!ss.contains(PASSWORD) && !events.contains(PASSWORD), || {
        "a secret value appears in the SealedSecret's status or its Events".into()
    })
}

fn unseals_server_side_apply(env: &Env) -> Result<(), Failed> {
    env.webhook()?;
    let port = shared_port(env)?;
    let ns = env.governed_namespace("ssa");
    let sealed = seal(env, port, &secret_yaml(&ns, "db", PASSWORD))?;
    env.cp.apply(&Identity::Agent, &sealed);
    check_unsealed(env, &ns, "db")
}

/// kubeseal's documented workflow and Argo CD's default sync: client-side `kubectl apply -f`,
/// which adds `last-applied-configuration` (for a SealedSecret, only ciphertext). Denied before
/// the fix by the hygiene constraint.
fn unseals_client_side_apply(env: &Env) -> Result<(), Failed> {
    env.webhook()?;
    let port = shared_port(env)?;
    let ns = env.governed_namespace("csa");
    let sealed = seal(env, port, &secret_yaml(&ns, "db", PASSWORD))?;
    env.cp
        .try_kubectl_stdin(&Identity::Agent, &["apply", "-f", "-"], &sealed)
        .map_err(|e| {
            fail(format!(
                "client-side apply of a SealedSecret was refused: {e}"
            ))
        })?;
    check_unsealed(env, &ns, "db")?;
    // And an update by client-side apply (the annotation now on the old object too).
    let resealed = seal(env, port, &secret_yaml(&ns, "db", "second"))?;
    env.cp
        .try_kubectl_stdin(&Identity::Agent, &["apply", "-f", "-"], &resealed)
        .map_err(|e| fail(format!("a client-side update was refused: {e}")))?;
    wait_secret(env, &ns, "db", "second").map(drop)
}

fn update_and_delete(env: &Env) -> Result<(), Failed> {
    env.webhook()?;
    let port = shared_port(env)?;
    let ns = env.governed_namespace("lifecycle");
    env.cp.apply(
        &Identity::Agent,
        &seal(env, port, &secret_yaml(&ns, "db", "one"))?,
    );
    wait_secret(env, &ns, "db", "one")?;
    env.cp.apply(
        &Identity::Agent,
        &seal(env, port, &secret_yaml(&ns, "db", "two"))?,
    );
    wait_secret(env, &ns, "db", "two")?;
    // No delete verb in the controller's RBAC: kube-controller-manager's garbage collector
    // removes the Secret through its ownerReference. The first time after the CRD was installed
    // it waits for its discovery refresh (30 s) to learn the new kind; then it is quick.
    for name in ["db", "db2"] {
        if name == "db2" {
            env.cp.apply(
                &Identity::Agent,
                &seal(env, port, &secret_yaml(&ns, name, "three"))?,
            );
            wait_secret(env, &ns, name, "three")?;
        }
        env.kubectl_ok(
            &Identity::Agent,
            &["-n", &ns, "delete", "sealedsecret.sealgate.dev", name],
        );
        let started = Instant::now();
        env.wait(
            "the garbage collector to remove the Secret",
            Duration::from_secs(90),
            || secret(env, &ns, name).is_none(),
        )?;
        eprintln!(
            "  garbage collection removed Secret {name} {:.1} s after its SealedSecret was deleted",
            started.elapsed().as_secs_f64()
        );
    }
    Ok(())
}

fn unowned_secret(env: &Env) -> Result<(), Failed> {
    env.webhook()?;
    let port = shared_port(env)?;
    let ns = env.governed_namespace("unowned");
    env.cp
        .apply(&Identity::Agent, &secret_yaml(&ns, "db", "hand-made"));
    let before = secret(env, &ns, "db").ok_or_else(|| fail("no hand-made Secret"))?;
    env.cp.apply(
        &Identity::Agent,
        &seal(env, port, &secret_yaml(&ns, "db", PASSWORD))?,
    );
    env.wait(
        "the SealedSecret to report the unowned Secret",
        Duration::from_secs(30),
        || {
            env.get_json(&["-n", &ns, "sealedsecret.sealgate.dev", "db"])
                .is_some_and(|ss| {
                    synced(&ss).is_some_and(|(s, r)| s == "False" && r == "SecretNotOwned")
                })
        },
    )?;
    let after = secret(env, &ns, "db").ok_or_else(|| fail("the Secret is gone"))?;
    ensure(
        decoded(&after, "password").as_deref() == Some("hand-made")
            && after["metadata"]["resourceVersion"] == before["metadata"]["resourceVersion"]
            && after["metadata"]["ownerReferences"].is_null(),
        || format!("the unowned Secret was changed: {after}"),
    )
}

fn key_secrets(env: &Env) -> usize {
    env.get_json(&[
        "-n",
        "sealgate-system",
        "secrets",
        "-l",
        "sealgate.dev/sealing-key",
    ])
    .and_then(|l| l["items"].as_array().map(Vec::len))
    .unwrap_or(0)
}

/// Early renewal (`--key-cutoff-time`): a new key Secret is written, new seals use it, and what
/// was sealed to the old key still opens.
fn key_renewal(env: &Env) -> Result<(), Failed> {
    env.webhook()?;
    let old_port = shared_port(env)?;
    let ns = env.governed_namespace("renewal");
    let old_sealed = seal(env, old_port, &secret_yaml(&ns, "old", PASSWORD))?;
    let keys_before = key_secrets(env);
    env.stop_controller();
    let now = time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    let mut c = env.spawn_controller("renewing", &[&format!("--key-cutoff-time={now}")]);
    env.wait_ready(&mut c)?;
    env.wait("a new key Secret", Duration::from_secs(60), || {
        key_secrets(env) > keys_before
    })?;
    let new_sealed = seal(env, c.port, &secret_yaml(&ns, "new", PASSWORD))?;
    ensure(new_sealed != old_sealed, || "sealed twice alike".into())?;
    env.cp.apply(&Identity::Agent, &old_sealed);
    env.cp.apply(&Identity::Agent, &new_sealed);
    wait_secret(env, &ns, "old", PASSWORD)?;
    wait_secret(env, &ns, "new", PASSWORD)?;
    stop(c);
    Ok(())
}

fn stop(mut c: Component) {
    c.proc.terminate(Duration::from_secs(10));
}

pub fn lease_holder(env: &Env) -> Option<String> {
    env.get_json(&["-n", "sealgate-system", "lease", "sealgate-controller"])
        .and_then(|l| l["spec"]["holderIdentity"].as_str().map(str::to_string))
}

/// Two controllers elect one leader through a real Lease; SIGKILL the leader (no release) and
/// the other takes over within the lease duration (15 s), then unseals.
fn leader_fails_over(env: &Env) -> Result<(), Failed> {
    env.webhook()?;
    env.installed()?;
    env.stop_controller();
    let mut a = env.spawn_controller("replica-a", &[]);
    env.wait_ready(&mut a)?;
    env.wait("replica-a to lead", Duration::from_secs(40), || {
        lease_holder(env).as_deref() == Some("replica-a")
    })?;
    let mut b = env.spawn_controller("replica-b", &[]);
    env.wait_ready(&mut b)?;
    std::thread::sleep(Duration::from_secs(2));
    ensure(lease_holder(env).as_deref() == Some("replica-a"), || {
        "the follower took the lease from a live leader".into()
    })?;
    ensure(
        metric(&b.metrics(), "sealgate_controller_leader") == 0.0,
        || "the follower says it leads".into(),
    )?;
    let killed = Instant::now();
    a.proc.kill();
    env.wait("replica-b to take over", Duration::from_secs(25), || {
        lease_holder(env).as_deref() == Some("replica-b")
    })?;
    let took = killed.elapsed();
    eprintln!(
        "  failover after SIGKILL: {:.1} s (lease duration 15 s)",
        took.as_secs_f64()
    );
    ensure(took <= Duration::from_secs(20), || {
        format!("failover took {took:?}")
    })?;
    let ns = env.governed_namespace("failover");
    env.cp.apply(
        &Identity::Agent,
        &seal(env, b.port, &secret_yaml(&ns, "db", PASSWORD))?,
    );
    wait_secret(env, &ns, "db", PASSWORD)?;
    stop(b);
    Ok(())
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

/// Unseal latency from apply to Secret present (p50, p99 over 200), then a restart with 1,000
/// up-to-date SealedSecrets: no private-key operation, and the time to ready.
fn latency_and_restart(env: &Env) -> Result<(), Failed> {
    env.webhook()?;
    let port = shared_port(env)?;
    let ns = env.governed_namespace("scale");
    let total = scale_count();
    let secrets: String = (0..total)
        .map(|i| {
            format!(
                "---\n{}",
                secret_yaml(&ns, &format!("s{i:04}"), &format!("v{i}"))
            )
        })
        .collect();
    let sealed = seal(env, port, &secrets)?;
    let docs: Vec<&str> = sealed.split("\n---\n").collect();
    ensure(docs.len() == total, || {
        format!("{} sealed documents", docs.len())
    })?;

    // Latency: 200 objects applied one by one, at most 10 a second (each is three writes for the
    // controller, within its default 50 QPS), each timed until its Secret exists.
    let watch = SecretWatch::start(env, &ns);
    let mut latencies = Vec::new();
    for (i, doc) in docs.iter().take(200).enumerate() {
        let sent = Instant::now();
        env.cp.apply(&Identity::Agent, doc);
        let name = format!("s{i:04}");
        let seen = watch
            .wait_for(&name, Duration::from_secs(60))
            .ok_or_else(|| {
                fail(format!(
                    "Secret {name} never appeared\n{}",
                    env.component_logs()
                ))
            })?;
        latencies.push(seen.saturating_duration_since(sent));
        std::thread::sleep(Duration::from_millis(100).saturating_sub(sent.elapsed()));
    }
    latencies.sort();
    eprintln!(
        "  unseal latency, apply to Secret present, {} objects: p50 {:.0} ms, p99 {:.0} ms (apply returns before the Secret exists)",
        latencies.len(),
        percentile(&latencies, 0.5).as_secs_f64() * 1e3,
        percentile(&latencies, 0.99).as_secs_f64() * 1e3
    );

    // The rest in bulk.
    for chunk in docs[200..].chunks(200) {
        env.cp.apply(&Identity::Agent, &chunk.join("\n---\n"));
    }
    env.wait(
        &format!("{total} Secrets"),
        Duration::from_secs(300),
        || watch.count() >= total,
    )?;
    drop(watch);
    let synced_all = || {
        env.get_json(&["-n", &ns, "sealedsecrets.sealgate.dev"])
            .and_then(|l| {
                l["items"].as_array().map(|items| {
                    items
                        .iter()
                        .filter(|s| synced(s).is_some_and(|(st, _)| st == "True"))
                        .count()
                })
            })
            .unwrap_or(0)
    };
    env.wait("every status Synced", Duration::from_secs(120), || {
        synced_all() >= total
    })?;

    env.stop_controller();
    let started = Instant::now();
    let mut c = env.spawn_controller("restarted", &[]);
    let ready = env.wait_ready(&mut c)?;
    // Leadership, the first list and every object's reconcile: until each has been looked at
    // (the reconcile counter), then the private-key operations it spent.
    let reconciled = |c: &Component| {
        metric(
            &c.metrics(),
            "sealgate_controller_reconcile_duration_seconds_count",
        )
    };
    env.wait(
        "the restarted controller to look at every object",
        Duration::from_secs(120),
        || reconciled(&c) >= total as f64,
    )?;
    let caught_up = started.elapsed();
    let ops = metric(
        &c.metrics(),
        "sealgate_controller_private_key_operations_total",
    );
    eprintln!(
        "  restart with {total} up-to-date SealedSecrets: /readyz after {:.2} s, every object reconciled after {:.2} s, {ops} private-key operations",
        ready.as_secs_f64(),
        caught_up.as_secs_f64()
    );
    stop(c);
    ensure(ops == 0.0, || {
        format!("{ops} private-key operations after a restart with nothing to do")
    })
}

/// How many SealedSecrets the scale test creates (1,000; `SEALGATE_CLUSTER_SCALE` for less while
/// working on it).
fn scale_count() -> usize {
    std::env::var("SEALGATE_CLUSTER_SCALE")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000)
        .max(200)
}

/// `kubectl get secrets --watch` in a namespace, recording when each name was first seen.
pub struct SecretWatch {
    child: std::process::Child,
    seen: std::sync::Arc<std::sync::Mutex<std::collections::HashMap<String, Instant>>>,
}

impl SecretWatch {
    pub fn start(env: &Env, ns: &str) -> SecretWatch {
        use std::io::BufRead as _;
        let mut child = env
            .cp
            .kubectl(&Identity::Admin)
            .args(["-n", ns, "get", "secrets", "--watch", "-o", "name"])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("kubectl --watch");
        let out = child.stdout.take().expect("stdout");
        let seen = std::sync::Arc::new(std::sync::Mutex::new(std::collections::HashMap::new()));
        let s = seen.clone();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(out).lines().map_while(Result::ok) {
                let name = line.trim().trim_start_matches("secret/").to_string();
                s.lock().unwrap().entry(name).or_insert_with(Instant::now);
            }
        });
        SecretWatch { child, seen }
    }

    fn wait_for(&self, name: &str, limit: Duration) -> Option<Instant> {
        let until = Instant::now() + limit;
        while Instant::now() < until {
            if let Some(t) = self.seen.lock().unwrap().get(name) {
                return Some(*t);
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        None
    }

    pub fn count(&self) -> usize {
        self.seen.lock().unwrap().len()
    }
}

impl Drop for SecretWatch {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
