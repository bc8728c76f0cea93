//! Provenance through the real API server: `sealgate lint --attest` on the example `shop` app,
//! the Attestations and then the manifests applied by the agent with server-side apply. The API
//! server's defaulting (a Deployment gains a dozen fields) must not break the check, and a
//! changed image must be denied.

use std::time::Duration;

use libtest_mimic::Failed;
use sealgate_testenv::Identity;

use crate::Test;
use crate::env::{Env, ensure, fail};

pub const TESTS: &[(&str, Test)] = &[(
    "provenance::attested_app_admitted_and_changed_image_denied",
    attested_app,
)];

fn attested_app(env: &Env) -> Result<(), Failed> {
    env.installed()?;
    let dir = env.path("provenance");
    std::fs::create_dir_all(&dir).map_err(|e| fail(e.to_string()))?;
    let prefix = dir.join("ci").to_string_lossy().into_owned();
    let key = dir.join("ci.key").to_string_lossy().into_owned();
    let attestations = dir.join("attestations.yaml").to_string_lossy().into_owned();
    let with_password = |args: &[&str]| {
        std::process::Command::new(env.bin.join("sealgate"))
            .args(args)
            .current_dir(&env.repo)
            .env("COSIGN_PASSWORD", "ci-secret")
            .output()
            .map_err(|e| fail(e.to_string()))
            .and_then(|o| {
                if o.status.success() {
                    Ok(())
                } else {
                    Err(fail(format!(
                        "sealgate {}: {}",
                        args.join(" "),
                        String::from_utf8_lossy(&o.stderr)
                    )))
                }
            })
    };
    with_password(&["attest", "keygen", "--output-key-prefix", &prefix])?;
    with_password(&[
        "lint",
        "examples/gitops/apps/shop",
        "--attest",
        &attestations,
        "--attest-key",
        &key,
        "--revision",
        "9b1d4e2",
        "--repository",
        "https://git.example.com/platform/apps",
    ])?;

    // The webhook as a cluster with provenance runs it.
    let public = dir.join("ci.pub");
    env.replace_webhook(&[&format!("--attestation-key={}", public.display())])?;
    let result = (|| {
        let rendered = env.kubectl_ok(
            &Identity::Admin,
            &[
                "kustomize",
                &env.file("examples/gitops/apps/shop").to_string_lossy(),
            ],
        );
        // Attestations first (Flux applies cluster-scoped kinds first; Argo CD by sync wave).
        env.cp
            .try_kubectl_stdin(
                &Identity::Agent,
                &["apply", "--server-side", "-f", &attestations],
                "",
            )
            .map_err(|e| fail(format!("the agent could not apply the Attestations: {e}")))?;
        env.cp.apply(
            &Identity::Admin,
            "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: shop\n  labels:\n    sealgate.dev/governed: \"true\"\n    sealgate.dev/provenance: required\n",
        );
        // The webhook has seen them: its readiness waits for the first list, and then the watch.
        let mut last = String::new();
        env.wait(
            "the attested app to be admitted",
            Duration::from_secs(20),
            || match env.cp.try_kubectl_stdin(
                &Identity::Agent,
                &[
                    "apply",
                    "--server-side",
                    "--field-manager=kustomize-controller",
                    "-f",
                    "-",
                ],
                &rendered,
            ) {
                Ok(_) => true,
                Err(e) => {
                    last = e;
                    false
                }
            },
        )
        .map_err(|f| {
            fail(format!(
                "{}\nlast refusal: {last}",
                f.message().unwrap_or_default()
            ))
        })?;
        // The live Deployment carries the API server's defaults; it was still admitted.
        let live = env
            .get_json(&["-n", "shop", "deployment", "web"])
            .ok_or_else(|| fail("no Deployment shop/web"))?;
        ensure(
            live["spec"]["revisionHistoryLimit"] == 10
                && live["spec"]["template"]["spec"]["dnsPolicy"] == "ClusterFirst",
            || {
                format!(
                    "the API server did not default the Deployment: {}",
                    live["spec"]
                )
            },
        )?;
        // An update with a changed image is denied, naming the revision.
        let e = env
            .try_kubectl(
                &Identity::Agent,
                &[
                    "-n",
                    "shop",
                    "set",
                    "image",
                    "deployment/web",
                    "web=registry.example.com/shop/web:9.9.9",
                ],
            )
            .err()
            .ok_or_else(|| fail("a changed image was admitted"))?;
        ensure(
            e.contains("[sealgate-provenance]") && e.contains("9b1d4e2"),
            || format!("not denied by provenance: {e}"),
        )
    })();
    // The next test gets the shared webhook back.
    env.stop_webhook();
    result
}
