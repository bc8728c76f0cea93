//! `cargo bench -p sealgate-controller --bench cold_start`: the controller against an in-memory
//! API server.
//!
//! 1. Cold start: 10,000 SealedSecrets (one 64-byte value each, RSA-4096 key), in the kubeseal
//!    format and then the age format, none of them unsealed yet: values/s until every Secret
//!    exists, next to a raw aws-lc-rs RSA-4096 OAEP decrypt loop on every core in the same run.
//! 2. Restart: a fresh controller process (no memory) over the same API server with every Secret
//!    up to date: private-key operations spent (target 0) and requests made.
//!
//! The API server is in process and unthrottled, so this measures the controller, not a
//! network; it shares the two cores with the controller (its JSON work is counted against us).

use sealgate_testkit::keys::copy;
use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use aws_lc_rs::rsa::OAEP_SHA256_MGF1SHA256;
use sealgate_controller::crd::SealedSecret;
use sealgate_controller::metrics::Metrics;
use sealgate_controller::reconcile::{Context, ReconcileConfig, run};
use sealgate_core::envelope::Format;
use sealgate_core::keys::{KeyGenOptions, KeyRing, SealingKey};
use sealgate_core::sealing::{self, ObjectMeta, SealOptions, Secret, Target};
use sealgate_testkit::FakeApi;

const N: usize = 10_000;
const COLLECTION: &str = "/apis/sealgate.dev/v1alpha1/namespaces/bench/sealedsecrets";

fn metric(text: &str, prefix: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(prefix)?.trim().parse().ok())
        .unwrap_or(0.0)
}

/// Raw RSA-4096 OAEP decryptions per second on `threads` threads for about 2 s.
fn raw_oaep(k: &SealingKey, threads: usize) -> f64 {
    let label = b"bench/s";
    let mut ct = vec![0u8; 512];
    k.public()
        .oaep()
        .encrypt(&OAEP_SHA256_MGF1SHA256, &[7u8; 32], &mut ct, Some(label))
        .unwrap();
    let start = Instant::now();
    let total: u64 = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|_| {
                s.spawn(|| {
                    let mut out = vec![0u8; 512];
                    let mut n = 0u64;
                    while start.elapsed() < Duration::from_secs(2) {
                        std::hint::black_box(
                            k.rsa()
                                .decrypt(&OAEP_SHA256_MGF1SHA256, &ct, &mut out, Some(label))
                                .unwrap(),
                        );
                        n += 1;
                    }
                    n
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).sum()
    });
    total as f64 / start.elapsed().as_secs_f64()
}

fn populate(api: &FakeApi, key: &SealingKey, format: Format) {
    let target = Target::new(key.public(), &[]);
    for i in 0..N {
        let plain = Secret {
            meta: ObjectMeta {
                name: Some(format!("s{i}")),
                namespace: Some("bench".into()),
                ..ObjectMeta::default()
            },
            data: [("value".to_string(), vec![b'x'; 64].into())].into(),
            ..Secret::default()
        };
        let ss = sealing::seal_secret(
            &plain,
            &target,
            &SealOptions {
                format,
                ..SealOptions::default()
            },
        )
        .unwrap();
        let mut v = ss.to_value();
        v["metadata"]["generation"] = 1.into();
        api.insert(COLLECTION, v);
    }
}

/// Run a fresh controller until `done` says so; returns the time taken and its metrics.
async fn controller_until(
    api: &FakeApi,
    ring: &Arc<ArcSwap<KeyRing>>,
    done: impl Fn(&FakeApi, &str) -> bool,
) -> (Duration, String) {
    let metrics = Arc::new(Metrics::default());
    let ctx = Context::new(
        api.client(),
        ring.clone(),
        metrics.clone(),
        ReconcileConfig {
            workers: std::env::var("SEALGATE_BENCH_WORKERS")
                .ok()
                .and_then(|w| w.parse().ok())
                .unwrap_or(ReconcileConfig::default().workers),
            ..ReconcileConfig::default()
        },
        None,
    );
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let start = Instant::now();
    let task = tokio::spawn(run::<SealedSecret>(ctx, async move {
        let _ = stopped.await;
    }));
    loop {
        tokio::time::sleep(Duration::from_millis(20)).await;
        if done(api, &metrics.encode()) {
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(600), "no progress");
    }
    let took = start.elapsed();
    let _ = stop.send(());
    task.await.unwrap();
    (took, metrics.encode())
}

fn main() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let key = SealingKey::generate(&KeyGenOptions::default()).unwrap();
    let raw1 = raw_oaep(&key, 1);
    let raw_all = raw_oaep(&key, cores);
    println!(
        "raw aws-lc-rs RSA-4096 OAEP decrypt: {raw1:.0}/s on 1 thread, {raw_all:.0}/s on {cores} threads"
    );
    let ring = Arc::new(ArcSwap::from_pointee(KeyRing::new([copy(&key)])));

    for (format, name) in [(Format::Kubeseal, "kubeseal"), (Format::Age, "age")] {
        let api = FakeApi::new();
        populate(&api, &key, format);
        api.take_requests();
        let (took, m) = rt.block_on(controller_until(&api, &ring, |api, _| {
            api.count("/secrets") == N
        }));
        let rate = N as f64 / took.as_secs_f64();
        println!(
            "\n{name} format: cold start, {N} SealedSecrets → Secrets in {:.2} s = {rate:.0} values/s",
            took.as_secs_f64()
        );
        if format == Format::Kubeseal {
            println!(
                "  / raw OAEP decrypt on {cores} threads = {:.2} (1.0 = nothing but RSA)",
                rate / raw_all
            );
        }
        println!(
            "  private-key operations: {}",
            metric(&m, "sealgate_controller_private_key_operations_total")
        );
        let reqs = api.take_requests();
        println!(
            "  API requests: {} ({:.1} per SealedSecret)",
            reqs.len(),
            reqs.len() as f64 / N as f64
        );

        let (took, m) = rt.block_on(controller_until(&api, &ring, |_, m| {
            metric(
                m,
                "sealgate_controller_reconcile_duration_seconds_count{outcome=\"up_to_date\"}",
            ) as usize
                == N
        }));
        let reqs = api.take_requests();
        let writes = reqs.iter().filter(|r| r.method != "GET").count();
        println!(
            "  restart, all up to date: {N} reconciled in {:.2} s; private-key operations: {} (target 0); API writes: {writes}; GETs: {}",
            took.as_secs_f64(),
            metric(&m, "sealgate_controller_private_key_operations_total"),
            reqs.len() - writes
        );
    }
}
