//! `deploy/` on the real API server: accepted whole, with structural CRDs and a status
//! subresource, and the examples accepted by server-side dry-run.

use libtest_mimic::Failed;
use sealgate_testenv::Identity;

use crate::Test;
use crate::env::{Env, ensure, fail};

pub const TESTS: &[(&str, Test)] = &[
    ("install::deploy_is_accepted", deploy_is_accepted),
    (
        "install::network_policy_overlay_is_accepted",
        network_policy_overlay,
    ),
    ("install::examples_pass_server_dry_run", examples_dry_run),
];

fn deploy_is_accepted(env: &Env) -> Result<(), Failed> {
    env.installed()?;
    for crd in ["sealedsecrets.sealgate.dev", "attestations.sealgate.dev"] {
        let c = env
            .get_json(&["crd", crd])
            .ok_or_else(|| fail(format!("no CRD {crd}")))?;
        let cond = |t: &str| {
            c["status"]["conditions"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|x| x["type"] == t && x["status"] == "True")
        };
        ensure(cond("Established"), || format!("{crd} is not established"))?;
        // A non-structural schema is accepted with this condition set: it must not be.
        ensure(
            !c["status"]["conditions"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|x| x["type"] == "NonStructuralSchema" && x["status"] == "True"),
            || format!("{crd} has a non-structural schema"),
        )?;
    }
    let crd = env
        .get_json(&["crd", "sealedsecrets.sealgate.dev"])
        .unwrap();
    let version = &crd["spec"]["versions"][0];
    ensure(version["subresources"]["status"].is_object(), || {
        "the SealedSecret CRD has no status subresource".into()
    })?;
    // Every object of the base exists, as applied.
    for (kind, name, ns) in [
        ("deployment", "sealgate-controller", Some("sealgate-system")),
        ("deployment", "sealgate-webhook", Some("sealgate-system")),
        (
            "serviceaccount",
            "sealgate-controller",
            Some("sealgate-system"),
        ),
        (
            "serviceaccount",
            "sealgate-webhook",
            Some("sealgate-system"),
        ),
        ("configmap", "sealgate-policies", Some("sealgate-system")),
        (
            "poddisruptionbudget",
            "sealgate-webhook",
            Some("sealgate-system"),
        ),
        ("clusterrole", "sealgate-controller", None),
        ("clusterrole", "sealgate-webhook", None),
        ("validatingwebhookconfiguration", "sealgate-webhook", None),
    ] {
        let mut args = vec!["get", kind, name];
        if let Some(ns) = ns {
            args.extend(["-n", ns]);
        }
        env.try_kubectl(&Identity::Admin, &args)
            .map_err(|e| fail(format!("{kind}/{name} is missing after the install: {e}")))?;
    }
    Ok(())
}

fn network_policy_overlay(env: &Env) -> Result<(), Failed> {
    env.installed()?;
    let overlay = env.file("deploy/overlays/network-policy");
    env.try_kubectl(
        &Identity::Admin,
        &[
            "apply",
            "--server-side",
            "--dry-run=server",
            "-k",
            &overlay.to_string_lossy(),
        ],
    )
    .map_err(|e| fail(format!("the network-policy overlay was refused: {e}")))?;
    Ok(())
}

/// Every example manifest whose kinds this cluster serves (Flux's and Argo CD's CRDs are not
/// installed) passes `kubectl apply --server-side --dry-run=server` as the agent applies it:
/// schemas, defaulting, our CRDs' own schema. The API server validates an object before it calls
/// validating webhooks, so a denial by ours means the object itself was valid; `shop` (the
/// compliant app) must be admitted whole, `legacy` (the broken one) denied by policy only.
fn examples_dry_run(env: &Env) -> Result<(), Failed> {
    env.webhook()?;
    let rendered = env.kubectl_ok(
        &Identity::Admin,
        &[
            "kustomize",
            &env.file("examples/gitops/apps").to_string_lossy(),
        ],
    );
    let docs = sealgate_core::manifest::parse(rendered.as_bytes(), &Default::default())
        .map_err(|e| fail(format!("kubectl kustomize's output: {e}")))?;
    // Namespaces the app does not declare exist already, as Flux's targetNamespace expects.
    for d in &docs {
        if let Some(ns) = d.value["metadata"]["namespace"].as_str()
            && !docs
                .iter()
                .any(|n| n.value["kind"] == "Namespace" && n.value["metadata"]["name"] == ns)
        {
            let _ = env.try_kubectl(&Identity::Admin, &["create", "namespace", ns]);
        }
    }
    let (mut admitted, mut denied) = (0, 0);
    for d in docs {
        let v = &d.value;
        let api = v["apiVersion"].as_str().unwrap_or_default();
        if api.contains("fluxcd.io") || api.contains("argoproj.io") {
            continue;
        }
        let what = format!(
            "{} {}/{}",
            v["kind"], v["metadata"]["namespace"], v["metadata"]["name"]
        );
        if v["kind"] == "Namespace" {
            // A dry-run namespace does not exist for the objects in it: create it for real.
            env.cp.apply(&Identity::Agent, &v.to_string());
            continue;
        }
        match env.cp.try_kubectl_stdin(
            &Identity::Agent,
            &["apply", "--server-side", "--dry-run=server", "-f", "-"],
            &v.to_string(),
        ) {
            Ok(_) => admitted += 1,
            Err(e) if e.contains("admission webhook \"validate.sealgate.dev\" denied") => {
                ensure(v["metadata"]["namespace"] == "legacy", || {
                    format!("{what} of the compliant app was denied: {e}")
                })?;
                denied += 1;
            }
            Err(e) => return Err(fail(format!("{what} was refused by the API server: {e}"))),
        }
    }
    ensure(admitted >= 5 && denied >= 1, || {
        format!(
            "{admitted} example objects admitted and {denied} denied: expected the shop app admitted and legacy denied"
        )
    })
}
