//! ValidatingAdmissionPolicies: sealgate's verdicts against the real API server's. The same
//! policies and bindings are installed in kube-apiserver and given to `sealgate lint -p`; every
//! object is created with server-side dry-run by a person (alice@example.com) and linted as the
//! same request (an AdmissionReview naming her). The verdict (denied or not), the denial message
//! and the warnings must be the API server's, word for word.
//!
//! The corpus: the Kubernetes documentation's examples (testdata/vap/kubernetes-docs.yaml, with
//! parameters from a CRD and from ConfigMaps, variables, matchConditions, warnings, a missing
//! parameter, a runtime error) and VAP versions of the Gatekeeper library's templates that carry
//! CEL, made as Gatekeeper makes them (`variables.anyObject` and `variables.params` first, the
//! constraint's parameters as the parameter object), with the library's own test objects.
//!
//! The API server reports only its first denial; sealgate reports all, so the API server's
//! message must be one of sealgate's denials. Objects the API server refuses before admission
//! (an invalid object, an unknown kind) say nothing about policies: they are counted and
//! listed, never compared.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use libtest_mimic::Failed;
use sealgate_core::policy::Action;
use sealgate_core::policy::scope::{KindScopes, Scope};
use sealgate_core::policy::vap::api_server_wording;
use sealgate_testenv::cluster::HUMAN;
use sealgate_testenv::{ControlPlane, Identity};
use serde_json::{Value, json};

use crate::Test;
use crate::env::{Env, ensure, fail};

pub const TESTS: &[(&str, Test)] = &[(
    "vap::verdicts_and_messages_are_the_api_servers",
    differential,
)];

/// What the cluster needs before the policies (CRDs, namespaces, parameters), the policies and
/// bindings, and the objects to judge.
#[derive(Default)]
struct Corpus {
    setup: Vec<Value>,
    policies: Vec<Value>,
    cases: Vec<Value>,
}

impl Corpus {
    fn extend(&mut self, other: Corpus) {
        self.setup.extend(other.setup);
        self.policies.extend(other.policies);
        self.cases.extend(other.cases);
    }
}

fn read_docs(path: &Path) -> Result<Vec<Value>, Failed> {
    let text = std::fs::read(path).map_err(|e| fail(format!("{}: {e}", path.display())))?;
    let docs = sealgate_core::manifest::parse(&text, &Default::default())
        .map_err(|e| fail(format!("{}: {e}", path.display())))?;
    Ok(docs.into_iter().map(|d| d.value).collect())
}

fn kubernetes_docs(env: &Env) -> Result<Corpus, Failed> {
    let dir = env.file("tests/real_cluster/testdata/vap");
    let mut c = Corpus::default();
    for doc in read_docs(&dir.join("kubernetes-docs.yaml"))? {
        if sealgate_core::policy::vap::is_admission_policy(&doc) {
            c.policies.push(doc);
        } else {
            c.setup.push(doc);
        }
    }
    c.cases = read_docs(&dir.join("kubernetes-docs-cases.yaml"))?;
    Ok(c)
}

/// The CRD whose objects stand in for Gatekeeper constraints as parameters.
fn params_crd() -> Value {
    json!({"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": "params.corpus.sealgate.dev"},
        "spec": {"group": "corpus.sealgate.dev", "scope": "Namespaced",
            "names": {"kind": "Params", "plural": "params", "singular": "params"},
            "versions": [{"name": "v1", "served": true, "storage": true,
                "schema": {"openAPIV3Schema": {"type": "object", "properties": {
                    "spec": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}}}}}]}})
}

/// The Gatekeeper library's templates with CEL, as ValidatingAdmissionPolicies; each suite
/// test's constraint is a binding in a namespace of its own with a Params object.
fn gatekeeper_library() -> Result<Option<(Corpus, usize)>, Failed> {
    let Ok(root) = sealgate_testkit::gatekeeper::library_dir() else {
        return Ok(None);
    };
    let mut templates: Vec<PathBuf> = Vec::new();
    let mut stack = vec![root];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).map_err(|e| fail(e.to_string()))? {
            let p = e.map_err(|e| fail(e.to_string()))?.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.file_name().is_some_and(|n| n == "template.yaml") {
                templates.push(p);
            }
        }
    }
    templates.sort();
    let scopes = KindScopes::default();
    let mut c = Corpus {
        setup: vec![params_crd()],
        ..Corpus::default()
    };
    let mut n = 0;
    for path in templates {
        let template = read_docs(&path)?.remove(0);
        let Some(source) = template
            .pointer("/spec/targets/0/code")
            .and_then(Value::as_array)
            .and_then(|code| {
                code.iter()
                    .find(|c| c["engine"] == "K8sNativeValidation")
                    .map(|c| c["source"].clone())
            })
        else {
            continue;
        };
        n += 1;
        let name = template["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let mut variables = vec![
            json!({"name": "anyObject", "expression": "has(request.operation) && request.operation == \"DELETE\" && object == null ? oldObject : object"}),
            json!({"name": "params", "expression": "!has(params.spec) ? null : !has(params.spec.parameters) ? null: params.spec.parameters"}),
        ];
        variables.extend(source["variables"].as_array().cloned().unwrap_or_default());
        let mut spec = json!({
            "failurePolicy": source.get("failurePolicy").cloned().unwrap_or(json!("Fail")),
            "paramKind": {"apiVersion": "corpus.sealgate.dev/v1", "kind": "Params"},
            "matchConstraints": {"resourceRules": [{"apiGroups": ["*"], "apiVersions": ["*"],
                "operations": ["CREATE", "UPDATE"], "resources": ["*"], "scope": "Namespaced"}]},
            "variables": variables,
            "validations": source["validations"],
        });
        if let Some(m) = source.get("matchConditions") {
            spec["matchConditions"] = m.clone();
        }
        c.policies
            .push(json!({"apiVersion": "admissionregistration.k8s.io/v1",
            "kind": "ValidatingAdmissionPolicy", "metadata": {"name": name}, "spec": spec}));
        let dir = path.parent().unwrap_or(Path::new("."));
        let suite = read_docs(&dir.join("suite.yaml"))?.remove(0);
        for (i, test) in suite["tests"].as_array().into_iter().flatten().enumerate() {
            let ns = format!("vap-lib-{name}-{i}");
            let Some(constraint_file) = test["constraint"].as_str() else {
                continue;
            };
            let constraint = read_docs(&dir.join(constraint_file))?.remove(0);
            let constraint_name = constraint["metadata"]["name"].as_str().unwrap_or("params");
            c.setup.push(json!({"apiVersion": "v1", "kind": "Namespace",
                "metadata": {"name": ns, "labels": {"vap-corpus": ns}}}));
            c.setup.push(json!({"apiVersion": "corpus.sealgate.dev/v1", "kind": "Params",
                "metadata": {"name": constraint_name, "namespace": ns},
                "spec": {"parameters": constraint.pointer("/spec/parameters").cloned().unwrap_or(json!({}))}}));
            c.policies.push(json!({"apiVersion": "admissionregistration.k8s.io/v1",
                "kind": "ValidatingAdmissionPolicyBinding", "metadata": {"name": format!("{name}-{i}")},
                "spec": {"policyName": name, "validationActions": ["Deny"],
                    "paramRef": {"name": constraint_name, "parameterNotFoundAction": "Deny"},
                    "matchResources": {"namespaceSelector": {"matchLabels": {"vap-corpus": ns}}}}}));
            for case in test["cases"].as_array().into_iter().flatten() {
                // Referential cases need an inventory the API server has no notion of; the
                // library's AdmissionReviews and cluster-scoped objects are not objects one
                // creates in a namespace.
                let Some(object) = case["object"].as_str() else {
                    continue;
                };
                if case.get("inventory").is_some() {
                    continue;
                }
                let mut docs = read_docs(&dir.join(object))?;
                if docs.len() != 1 {
                    continue;
                }
                let mut o = docs.remove(0);
                let kind = o["kind"].as_str().unwrap_or_default().to_string();
                let group = o["apiVersion"]
                    .as_str()
                    .and_then(|a| a.rsplit_once('/'))
                    .map_or("", |(g, _)| g)
                    .to_string();
                if kind == "AdmissionReview" || scopes.scope(&group, &kind) == Some(Scope::Cluster)
                {
                    continue;
                }
                // Ephemeral containers cannot be set on create, only through their subresource.
                if o.pointer("/spec/ephemeralContainers").is_some() {
                    continue;
                }
                o["metadata"]["namespace"] = json!(ns);
                c.cases.push(o);
            }
        }
    }
    Ok(Some((c, n)))
}

fn yaml_stream(docs: &[Value]) -> String {
    docs.iter()
        .map(|d| serde_json::to_string(d).expect("JSON"))
        .collect::<Vec<_>>()
        .join("\n---\n")
}

/// What one side said about one object.
#[derive(Debug, Clone, PartialEq)]
enum Verdict {
    /// Admitted, with these warnings.
    Allowed(BTreeSet<String>),
    /// Denied: the message(s), and the warnings.
    Denied(BTreeSet<String>, BTreeSet<String>),
    /// Refused before admission (the API server only): why.
    NotAdmissible(String),
}

/// The API server's verdict on a server-side dry-run create by the person.
fn api_server(cp: &ControlPlane, object: &Value) -> Verdict {
    let mut cmd = cp.kubectl(&Identity::Human);
    cmd.args(["create", "--dry-run=server", "-o", "name", "-f", "-"]);
    let out = match sealgate_testenv::cluster::run_output(&mut cmd, &object.to_string()) {
        Ok(out) => out,
        Err(e) => return Verdict::NotAdmissible(e),
    };
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    // The policies' warnings (not the API server's own, e.g. about deprecated annotations).
    let warnings: BTreeSet<String> = stderr
        .lines()
        .filter_map(|l| l.strip_prefix("Warning: "))
        .filter(|w| w.starts_with("Validation failed for ValidatingAdmissionPolicy"))
        .map(str::to_string)
        .collect();
    if out.status.success() {
        return Verdict::Allowed(warnings);
    }
    match stderr
        .lines()
        .find_map(|l| l.find("ValidatingAdmissionPolicy '").map(|i| &l[i..]))
    {
        Some(message) => Verdict::Denied(BTreeSet::from([message.trim().to_string()]), warnings),
        None => Verdict::NotAdmissible(stderr.trim().to_string()),
    }
}

/// sealgate's verdicts: `sealgate lint -o json` over one AdmissionReview per object.
fn sealgate(env: &Env, corpus: &Corpus, dir: &Path) -> Result<Vec<Verdict>, Failed> {
    let write = |name: &str, text: String| {
        std::fs::write(dir.join(name), text).map_err(|e| fail(e.to_string()))
    };
    std::fs::create_dir_all(dir.join("reviews")).map_err(|e| fail(e.to_string()))?;
    write("policies.yaml", yaml_stream(&corpus.policies))?;
    write("inventory.yaml", yaml_stream(&corpus.setup))?;
    for (i, o) in corpus.cases.iter().enumerate() {
        let (group, version) = match o["apiVersion"]
            .as_str()
            .unwrap_or_default()
            .rsplit_once('/')
        {
            Some((g, v)) => (g.to_string(), v.to_string()),
            None => (
                String::new(),
                o["apiVersion"].as_str().unwrap_or_default().to_string(),
            ),
        };
        let review = json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
            "request": {"uid": format!("case-{i}"), "operation": "CREATE", "dryRun": true,
                "kind": {"group": group, "version": version, "kind": o["kind"]},
                "namespace": o["metadata"]["namespace"], "name": o["metadata"]["name"],
                "userInfo": {"username": HUMAN, "groups": ["developers", "system:authenticated"]},
                "object": o, "oldObject": null}});
        write(&format!("reviews/{i:04}.json"), review.to_string())?;
    }
    let out = Command::new(env.bin.join("sealgate"))
        .current_dir(dir)
        .args([
            "lint",
            "--no-builtin",
            "-p",
            "policies.yaml",
            "--inventory",
            "inventory.yaml",
        ])
        .args(["-o", "json", "reviews"])
        .output()
        .map_err(|e| fail(format!("sealgate lint: {e}")))?;
    let report: Value = serde_json::from_slice(&out.stdout).map_err(|e| {
        fail(format!(
            "sealgate lint said no JSON ({e}): {}",
            String::from_utf8_lossy(&out.stderr)
        ))
    })?;
    let mut verdicts = vec![(BTreeSet::new(), BTreeSet::new()); corpus.cases.len()];
    for f in report["findings"].as_array().into_iter().flatten() {
        let file = f["file"].as_str().unwrap_or_default();
        let Some(i) = file
            .rsplit('/')
            .next()
            .and_then(|n| n.strip_suffix(".json"))
            .and_then(|n| n.parse::<usize>().ok())
        else {
            return Err(fail(format!("a finding outside the reviews: {f}")));
        };
        let (policy, binding, message) = (
            f["policy"].as_str().unwrap_or_default(),
            f["constraint"].as_str().unwrap_or_default(),
            f["message"].as_str().unwrap_or_default(),
        );
        let action = match f["action"].as_str() {
            Some("deny") => Action::Deny,
            Some("warn") => Action::Warn,
            _ => continue,
        };
        let Some(words) = api_server_wording(policy, binding, action, message) else {
            continue;
        };
        match action {
            Action::Deny => verdicts[i].0.insert(words),
            _ => verdicts[i].1.insert(words),
        };
    }
    Ok(verdicts
        .into_iter()
        .map(|(denials, warnings)| match denials.is_empty() {
            true => Verdict::Allowed(warnings),
            false => Verdict::Denied(denials, warnings),
        })
        .collect())
}

fn agree(api: &Verdict, ours: &Verdict) -> bool {
    match (api, ours) {
        (Verdict::Allowed(a), Verdict::Allowed(b)) => a == b,
        // The API server names its first denial; it must be one of sealgate's.
        (Verdict::Denied(a, aw), Verdict::Denied(b, bw)) => a.is_subset(b) && aw == bw,
        _ => false,
    }
}

fn differential(env: &Env) -> Result<(), Failed> {
    let mut corpus = kubernetes_docs(env)?;
    let docs_cases = corpus.cases.len();
    let library = gatekeeper_library()?;
    let templates = match library {
        Some((lib, n)) => {
            corpus.extend(lib);
            n
        }
        None if sealgate_testenv::required() => {
            return Err(fail(
                sealgate_testkit::gatekeeper::library_dir().unwrap_err(),
            ));
        }
        None => {
            eprintln!(
                "vap: the Gatekeeper library corpus is absent: the documentation's examples only"
            );
            0
        }
    };
    let work = tempfile::tempdir().map_err(|e| fail(e.to_string()))?;
    let ours = sealgate(env, &corpus, work.path())?;
    // A control plane of its own: the tier's shared one has sealgate's webhook registered, which
    // would judge the same objects by its own policies after the VAPs admit them.
    let cp = ControlPlane::start().map_err(|e| fail(e.to_string()))?;

    // The cluster: CRDs first (established), then namespaces and parameters, then the policies.
    let (crds, rest): (Vec<Value>, Vec<Value>) = corpus
        .setup
        .iter()
        .cloned()
        .partition(|d| d["kind"] == "CustomResourceDefinition");
    let crds = yaml_stream(&crds);
    cp.apply(&Identity::Admin, &crds);
    cp.wait_established(&["-f", "-"], &crds)
        .map_err(|e| fail(e.to_string()))?;
    let (namespaces, params): (Vec<Value>, Vec<Value>) =
        rest.into_iter().partition(|d| d["kind"] == "Namespace");
    cp.apply(&Identity::Admin, &yaml_stream(&namespaces));
    cp.apply(&Identity::Admin, &yaml_stream(&params));
    let policies = yaml_stream(&corpus.policies);
    cp.apply(&Identity::Admin, &policies);
    compare(&cp, &corpus, &ours, docs_cases, templates)
}

fn compare(
    cp: &ControlPlane,
    corpus: &Corpus,
    ours: &[Verdict],
    docs_cases: usize,
    templates: usize,
) -> Result<(), Failed> {
    // The API server compiles policies when its informers see them: each binding is in force
    // once an object sealgate denies under it is denied by the API server too (or 60 s pass,
    // and the comparison shows which are not).
    let started = Instant::now();
    let mut pending: Vec<usize> = Vec::new();
    let mut seen = BTreeSet::new();
    for (i, v) in ours.iter().enumerate() {
        if let Verdict::Denied(messages, _) = v {
            let binding = messages.iter().next().cloned().unwrap_or_default();
            let binding = binding
                .split(" denied request")
                .next()
                .unwrap_or_default()
                .to_string();
            if seen.insert(binding) {
                pending.push(i);
            }
        }
    }
    while !pending.is_empty() && started.elapsed() < Duration::from_secs(60) {
        pending.retain(|&i| !matches!(api_server(cp, &corpus.cases[i]), Verdict::Denied(..)));
        if !pending.is_empty() {
            std::thread::sleep(Duration::from_millis(500));
        }
    }
    let in_force = started.elapsed();

    let (mut agreed, mut differ, mut skipped) = (0, Vec::new(), Vec::new());
    let (mut denied, mut warned) = (0, 0);
    for (o, ours) in corpus.cases.iter().zip(ours) {
        let api = api_server(cp, o);
        let what = format!(
            "{} {}/{}",
            o["kind"].as_str().unwrap_or_default(),
            o["metadata"]["namespace"].as_str().unwrap_or_default(),
            o["metadata"]["name"].as_str().unwrap_or_default()
        );
        match &api {
            Verdict::NotAdmissible(why) => {
                skipped.push(format!(
                    "{what}: {}",
                    why.lines().last().unwrap_or_default()
                ));
                continue;
            }
            Verdict::Denied(_, w) => {
                denied += 1;
                warned += usize::from(!w.is_empty());
            }
            Verdict::Allowed(w) => warned += usize::from(!w.is_empty()),
        }
        if agree(&api, ours) {
            agreed += 1;
        } else {
            differ.push(format!(
                "{what}:\n    API server: {api:?}\n    sealgate:   {ours:?}"
            ));
        }
    }
    println!(
        "ValidatingAdmissionPolicies, sealgate lint against kube-apiserver ({} policies and bindings: the Kubernetes documentation's examples, {templates} Gatekeeper library templates; {} objects, {docs_cases} of them the documentation's; {denied} denied, {warned} with warnings; bindings in force after {in_force:.1?}): {agreed} agree, {} differ; {} refused before admission",
        corpus.policies.len(),
        corpus.cases.len(),
        differ.len(),
        skipped.len()
    );
    for s in &skipped {
        println!("  refused before admission: {s}");
    }
    ensure(differ.is_empty(), || {
        format!("{} differ:\n  {}", differ.len(), differ.join("\n  "))
    })?;
    // A corpus that denies nothing or warns of nothing would prove little.
    ensure(denied >= 10 && warned >= 2 && agreed >= 20, || {
        format!("too little was judged: {agreed} agree, {denied} denied, {warned} warned")
    })?;
    ensure(skipped.len() * 10 <= corpus.cases.len(), || {
        format!(
            "{} of {} objects were refused before admission",
            skipped.len(),
            corpus.cases.len()
        )
    })
}
