//! Admission latency through the real API server, with and without the webhook registered, in
//! one run: 16 concurrent clients each sending server-side dry-run creates (the API server runs
//! the whole admission chain, webhook included, and stores nothing). Figures are printed, not
//! asserted (the machine is shared and noisy); the ratio is what to read.

use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, PostParams};
use libtest_mimic::Failed;
use sealgate_testenv::Identity;

use crate::Test;
use crate::env::{Env, fail};

pub const TESTS: &[(&str, Test)] =
    &[("latency::admission_with_and_without_the_webhook", admission)];

const CLIENTS: usize = 16;
const PER_CLIENT: usize = 60;

async fn client(env: &Env) -> Result<kube::Client, Failed> {
    let kc = kube::config::Kubeconfig::read_from(env.cp.kubeconfig(&Identity::Agent))
        .map_err(|e| fail(e.to_string()))?;
    let config = kube::Config::from_custom_kubeconfig(kc, &Default::default())
        .await
        .map_err(|e| fail(e.to_string()))?;
    kube::Client::try_from(config).map_err(|e| fail(e.to_string()))
}

/// Every request's latency, sorted: CLIENTS tasks, each PER_CLIENT dry-run creates in a row.
async fn run(client: &kube::Client, ns: &str) -> Result<Vec<Duration>, Failed> {
    let api: Arc<Api<ConfigMap>> = Arc::new(Api::namespaced(client.clone(), ns));
    let mut tasks = Vec::new();
    for c in 0..CLIENTS {
        let api = api.clone();
        tasks.push(tokio::spawn(async move {
            let pp = PostParams {
                dry_run: true,
                ..PostParams::default()
            };
            let mut times = Vec::with_capacity(PER_CLIENT);
            for i in 0..PER_CLIENT {
                let mut cm = ConfigMap::default();
                cm.metadata.name = Some(format!("load-{c}-{i}"));
                cm.data = Some([("mode".to_string(), "fast".to_string())].into());
                let t = Instant::now();
                api.create(&pp, &cm).await.map_err(|e| e.to_string())?;
                times.push(t.elapsed());
            }
            Ok::<_, String>(times)
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.map_err(|e| fail(e.to_string()))?.map_err(fail)?);
    }
    all.sort();
    Ok(all)
}

fn pct(v: &[Duration], p: f64) -> f64 {
    v[((v.len() as f64 - 1.0) * p).round() as usize].as_secs_f64() * 1e3
}

fn admission(env: &Env) -> Result<(), Failed> {
    // The release build, as users run it (the other tests use the debug build).
    let release = env.release_binary("sealgate-webhook", "sealgate-webhook")?;
    env.replace_webhook_from(&release, &[])?;
    let r = measure(env);
    env.stop_webhook();
    r
}

fn measure(env: &Env) -> Result<(), Failed> {
    let ns = env.governed_namespace("latency");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| fail(e.to_string()))?;
    let result = rt.block_on(async {
        let client = client(env).await?;
        // Warm both paths (connections, the webhook's TLS sessions, caches).
        run(&client, &ns).await?;
        let with = run(&client, &ns).await?;
        env.kubectl_ok(
            &Identity::Admin,
            &["delete", "validatingwebhookconfiguration", "sealgate-webhook"],
        );
        let without = run(&client, &ns).await;
        env.point_webhook_at_loopback().map_err(fail)?;
        let without = without?;
        let row = |name: &str, v: &[Duration]| {
            format!(
                "{name:>18}: p50 {:6.2} ms, p99 {:6.2} ms ({} requests)",
                pct(v, 0.5),
                pct(v, 0.99),
                v.len()
            )
        };
        eprintln!(
            "  admission through kube-apiserver (release webhook), {CLIENTS} concurrent clients, server-side dry-run creates:\n  {}\n  {}\n  webhook's cost: p50 +{:.2} ms ({:.2}x), p99 +{:.2} ms ({:.2}x)",
            row("webhook registered", &with),
            row("no webhook", &without),
            pct(&with, 0.5) - pct(&without, 0.5),
            pct(&with, 0.5) / pct(&without, 0.5),
            pct(&with, 0.99) - pct(&without, 0.99),
            pct(&with, 0.99) / pct(&without, 0.99),
        );
        Ok::<_, Failed>(())
    });
    // Until the API server reaches the webhook again, for the tests after this one.
    env.wait_webhook_serving()?;
    result
}
