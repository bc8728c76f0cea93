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

/// The CRDs of the GitOps agents the examples configure, from their own modules.
fn install_gitops_crds(env: &Env) -> Result<(), Failed> {
    use sealgate_testenv::crds;
    env.install_crds(&[
        crds::FLUX_GIT_REPOSITORY,
        crds::FLUX_KUSTOMIZATION,
        crds::ARGO_APPLICATION,
    ])
}

/// Every example manifest passes `kubectl apply --server-side --dry-run=server` as the agent
/// applies it: schemas (Flux's and Argo CD's CRDs installed from their modules), defaulting, our
/// CRDs' own schema. The API server validates an object before it calls validating webhooks, so a
/// denial by ours means the object itself was valid: `shop` (the compliant app) and the Flux
/// configuration must be admitted whole, `legacy` (the broken app) is denied by policy only.
/// Constraints (`constraints.gatekeeper.sh`) are left out: Gatekeeper generates their CRDs from
/// templates, and sealgate reads them without serving them.
fn examples_dry_run(env: &Env) -> Result<(), Failed> {
    env.webhook()?;
    install_gitops_crds(env)?;
    // (examples/gitops/infrastructure installs deploy/ from GitHub, checked above, and a
    // constraint.)
    let rendered = env.kubectl_ok(
        &Identity::Admin,
        &[
            "kustomize",
            &env.file("examples/gitops/apps").to_string_lossy(),
        ],
    );
    let mut docs = sealgate_core::manifest::parse(rendered.as_bytes(), &Default::default())
        .map_err(|e| fail(format!("kubectl kustomize examples/gitops/apps: {e}")))?;
    let flux = std::fs::read(env.file("examples/gitops/clusters/prod/flux-system/gotk-sync.yaml"))
        .map_err(|e| fail(e.to_string()))?;
    docs.extend(
        sealgate_core::manifest::parse(&flux, &Default::default())
            .map_err(|e| fail(e.to_string()))?,
    );
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
    let (mut admitted, mut denied, mut kinds) = (0, 0, std::collections::BTreeSet::new());
    for d in docs {
        let v = &d.value;
        let api = v["apiVersion"].as_str().unwrap_or_default();
        if api.starts_with("constraints.gatekeeper.sh/") {
            continue;
        }
        let what = format!(
            "{} {}/{}",
            v["kind"], v["metadata"]["namespace"], v["metadata"]["name"]
        );
        kinds.insert(v["kind"].as_str().unwrap_or_default().to_string());
        if v["kind"] == "Namespace" {
            // A dry-run namespace does not exist for the objects in it: create it for real.
            env.cp.apply(&Identity::Agent, &v.to_string());
            continue;
        }
        let legacy = v["metadata"]["namespace"] == "legacy" || v["metadata"]["name"] == "legacy";
        match env.cp.try_kubectl_stdin(
            &Identity::Agent,
            &["apply", "--server-side", "--dry-run=server", "-f", "-"],
            &v.to_string(),
        ) {
            Ok(_) => admitted += 1,
            Err(e) if e.contains("admission webhook \"validate.sealgate.dev\" denied") => {
                ensure(legacy, || {
                    format!("{what} of a compliant example was denied: {e}")
                })?;
                denied += 1;
            }
            Err(e) => return Err(fail(format!("{what} was refused by the API server: {e}"))),
        }
    }
    for kind in [
        "SealedSecret",
        "Deployment",
        "GitRepository",
        "Kustomization",
        "Application",
    ] {
        ensure(kinds.contains(kind), || {
            format!("no {kind} among the examples checked: {kinds:?}")
        })?;
    }
    ensure(admitted >= 8 && denied >= 1, || {
        format!(
            "{admitted} example objects admitted and {denied} denied: expected the compliant ones admitted and legacy denied"
        )
    })
}
