//! Gatekeeper's ExpansionTemplates (`expansion.gatekeeper.sh`): a workload is also judged as
//! the objects it will create. A Deployment expands into the Pod its `spec.template` describes,
//! and Pod constraints judge that Pod; their violations are reported against the Deployment,
//! prefixed `[Implied by TEMPLATE]`, with the template's `enforcementAction` when it sets one.
//!
//! Semantics as Gatekeeper's `pkg/expansion`: `applyTo` matches group, version and kind exactly;
//! the resultant is the map at `templateSource`, given `generatedGVK`, the parent's namespace, the
//! name `<parent>-<kind>` in lower case and an owner reference to the parent; resultants expand
//! again (a CronJob's Job into its Pod), at most 30 levels deep. Gatekeeper's mutators are not
//! applied to resultants: sealgate has no mutation.

use serde_json::{Value, json};

use super::matching::strings;
use super::{Action, PolicyError, SourceRef, at};

/// Gatekeeper's recursion limit.
const MAX_DEPTH: usize = 30;

/// One `applyTo` entry: every one of its lists must contain the parent's group, version, kind.
#[derive(Debug, Clone, PartialEq)]
struct ApplyTo {
    groups: Vec<String>,
    versions: Vec<String>,
    kinds: Vec<String>,
}

/// A group, version and kind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Gvk {
    /// API group (empty for the core group).
    pub group: String,
    /// Version.
    pub version: String,
    /// Kind.
    pub kind: String,
}

impl Gvk {
    /// An object's group, version and kind, from its `apiVersion` and `kind`.
    pub fn of(object: &Value) -> Gvk {
        let api = object
            .get("apiVersion")
            .and_then(Value::as_str)
            .unwrap_or("");
        let (group, version) = api.rsplit_once('/').unwrap_or(("", api));
        Gvk {
            group: group.to_string(),
            version: version.to_string(),
            kind: object
                .get("kind")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string(),
        }
    }

    fn api_version(&self) -> String {
        match self.group.as_str() {
            "" => self.version.clone(),
            g => format!("{g}/{}", self.version),
        }
    }
}

/// A loaded ExpansionTemplate.
#[derive(Debug, Clone, PartialEq)]
pub struct ExpansionTemplate {
    /// `metadata.name`: the `[Implied by NAME]` prefix.
    pub name: String,
    /// Where it was loaded from.
    pub source: SourceRef,
    apply_to: Vec<ApplyTo>,
    /// `templateSource`, split at dots.
    template_source: Vec<String>,
    generated: Gvk,
    /// `enforcementAction`: replaces the constraints' action for the resultant's violations.
    pub enforcement_action: Option<Action>,
}

/// An object an expansion produced.
#[derive(Debug, Clone, PartialEq)]
pub struct Resultant {
    /// The generated object.
    pub object: Value,
    /// The ExpansionTemplate that produced it.
    pub template: String,
    /// Its `enforcementAction`, when it sets one.
    pub enforcement_action: Option<Action>,
    /// Where in the top-level object the resultant's fields are (`spec.template`, or
    /// `spec.jobTemplate.spec.template` through a Job): a violation's path is prefixed with it,
    /// so `lint` points at the parent's line.
    pub path: Vec<String>,
}

impl ExpansionTemplate {
    /// Read one, refusing what Gatekeeper's `ValidateTemplate` refuses.
    pub fn parse(source: &SourceRef, v: &Value) -> Result<ExpansionTemplate, PolicyError> {
        let name = v
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        let what = format!("ExpansionTemplate {name}");
        let fail = |problem: String| at(source, &what, problem);
        if name.is_empty() {
            return Err(fail("needs metadata.name".into()));
        }
        if name.len() >= 64 {
            return Err(fail("the name must be shorter than 64 characters".into()));
        }
        let spec = v.get("spec").unwrap_or(&Value::Null);
        let template_source = spec
            .get("templateSource")
            .and_then(Value::as_str)
            .unwrap_or("");
        if template_source.is_empty() {
            return Err(fail(
                "spec.templateSource is empty (e.g. spec.template for a Deployment)".into(),
            ));
        }
        let gvk = spec.get("generatedGVK").unwrap_or(&Value::Null);
        let field = |k: &str| gvk.get(k).and_then(Value::as_str).unwrap_or("").to_string();
        let generated = Gvk {
            group: field("group"),
            version: field("version"),
            kind: field("kind"),
        };
        if generated.kind.is_empty() && generated.version.is_empty() && generated.group.is_empty() {
            return Err(fail(
                "spec.generatedGVK is empty (e.g. {group: \"\", version: v1, kind: Pod})".into(),
            ));
        }
        let apply_to: Vec<ApplyTo> = spec
            .get("applyTo")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .map(|e| ApplyTo {
                        groups: strings(e.get("groups")),
                        versions: strings(e.get("versions")),
                        kinds: strings(e.get("kinds")),
                    })
                    .collect()
            })
            .unwrap_or_default();
        if apply_to.is_empty() {
            return Err(fail("spec.applyTo is empty".into()));
        }
        let t = ExpansionTemplate {
            name,
            source: source.clone(),
            apply_to,
            template_source: template_source.split('.').map(str::to_string).collect(),
            generated,
            enforcement_action: match spec.get("enforcementAction").and_then(Value::as_str) {
                None | Some("") => None,
                Some(a) => Some(Action::parse(a).ok_or_else(|| {
                    fail(format!(
                        "spec.enforcementAction {a:?} is not deny, warn or dryrun"
                    ))
                })?),
            },
        };
        if t.applies_to(&t.generated) {
            return Err(fail(format!(
                "it generates {} but also applies to it",
                t.generated.kind
            )));
        }
        Ok(t)
    }

    /// The same template apart from where it was loaded from (a -p directory that is also among
    /// the linted inputs).
    pub fn same_as(&self, other: &ExpansionTemplate) -> bool {
        ExpansionTemplate {
            source: other.source.clone(),
            ..self.clone()
        } == *other
    }

    fn applies_to(&self, gvk: &Gvk) -> bool {
        self.apply_to.iter().any(|a| {
            a.groups.contains(&gvk.group)
                && a.versions.contains(&gvk.version)
                && a.kinds.contains(&gvk.kind)
        })
    }

    /// The resultant of `parent` (of kind `gvk`, in `namespace` when it has one).
    fn expand_one(&self, parent: &Value, namespace: Option<&str>) -> Result<Value, String> {
        let parent_name = parent
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or("");
        let mut src = parent;
        for key in &self.template_source {
            src = src.get(key).ok_or_else(|| {
                format!(
                    "could not find source field {:?} in resource {parent_name}",
                    self.template_source.join(".")
                )
            })?;
        }
        let Value::Object(map) = src else {
            return Err(format!(
                "source field {:?} of resource {parent_name} is not an object",
                self.template_source.join(".")
            ));
        };
        let mut out = Value::Object(map.clone());
        out["apiVersion"] = self.generated.api_version().into();
        out["kind"] = self.generated.kind.clone().into();
        if !out.get("metadata").is_some_and(Value::is_object) {
            out["metadata"] = json!({});
        }
        let meta = &mut out["metadata"];
        match namespace.or_else(|| {
            parent
                .pointer("/metadata/namespace")
                .and_then(Value::as_str)
        }) {
            Some(ns) => meta["namespace"] = ns.into(),
            None => {
                if let Some(m) = meta.as_object_mut() {
                    m.remove("namespace");
                }
            }
        }
        let kind_suffix = match self.generated.kind.as_str() {
            "" => String::new(),
            k => format!("-{k}"),
        };
        meta["name"] = format!("{parent_name}{kind_suffix}").to_lowercase().into();
        let owner = Gvk::of(parent);
        if !parent_name.is_empty() && !owner.kind.is_empty() && !owner.version.is_empty() {
            let reference = json!({
                "apiVersion": owner.api_version(),
                "kind": owner.kind,
                "name": parent_name,
            });
            let refs = meta
                .as_object_mut()
                .expect("an object")
                .entry("ownerReferences")
                .or_insert_with(|| json!([]));
            if let Some(list) = refs.as_array_mut() {
                let known = list.iter().any(|r| {
                    r.get("apiVersion") == reference.get("apiVersion")
                        && r.get("kind") == reference.get("kind")
                        && r.get("name") == reference.get("name")
                });
                if !known {
                    list.push(reference);
                }
            }
        }
        Ok(out)
    }
}

/// Every resultant of `parent` under `templates`, recursively (a resultant's own resultants
/// first, as Gatekeeper orders them). `namespace` is the admission request's namespace, when
/// there is one.
pub fn expand(
    templates: &[ExpansionTemplate],
    parent: &Value,
    namespace: Option<&str>,
) -> Result<Vec<Resultant>, String> {
    let mut out = Vec::new();
    expand_into(templates, parent, namespace, &[], &mut out, 0)?;
    Ok(out)
}

fn expand_into(
    templates: &[ExpansionTemplate],
    parent: &Value,
    namespace: Option<&str>,
    path: &[String],
    out: &mut Vec<Resultant>,
    depth: usize,
) -> Result<(), String> {
    if depth >= MAX_DEPTH {
        return Err(format!("maximum recursion depth of {MAX_DEPTH} reached"));
    }
    let gvk = Gvk::of(parent);
    if gvk.kind.is_empty() || gvk.version.is_empty() {
        return Ok(());
    }
    let mut level = Vec::new();
    for t in templates.iter().filter(|t| t.applies_to(&gvk)) {
        let object = t.expand_one(parent, namespace)?;
        let mut at = path.to_vec();
        at.extend(t.template_source.iter().cloned());
        level.push(Resultant {
            object,
            template: t.name.clone(),
            enforcement_action: t.enforcement_action,
            path: at,
        });
    }
    for r in &level {
        expand_into(templates, &r.object, namespace, &r.path, out, depth + 1)?;
    }
    out.extend(level);
    Ok(())
}

/// The `[Implied by NAME]` prefix Gatekeeper puts on a resultant's violation messages.
pub fn implied_by(template: &str, message: &str) -> String {
    format!("[Implied by {template}] {message}")
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    fn template(yaml: &str) -> Result<ExpansionTemplate, PolicyError> {
        let v: Value = serde_saphyr::from_str(yaml).unwrap();
        ExpansionTemplate::parse(
            &SourceRef {
                file: "expansion.yaml".into(),
                line: 1,
            },
            &v,
        )
    }

    /// Gatekeeper's documented workload template (policy::tests uses it too).
    pub(in crate::policy) const WORKLOADS: &str =
        include_str!("../../../testkit/data/expand-workloads.yaml");

    const CRONJOBS: &str = include_str!("../../../testkit/data/expand-cronjobs.yaml");

    const JOBS: &str = include_str!("../../../testkit/data/expand-jobs.yaml");

    #[test]
    fn a_deployment_becomes_its_pod_as_gatekeeper_names_it() {
        let t = template(WORKLOADS).unwrap();
        let deployment = json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "Nginx-Deployment", "namespace": "shop"},
            "spec": {"template": {
                "metadata": {"labels": {"app": "nginx"}},
                "spec": {"containers": [{"name": "nginx", "image": "nginx:1.27"}]}}}
        });
        let r = expand(std::slice::from_ref(&t), &deployment, None).unwrap();
        assert_eq!(r.len(), 1);
        assert_eq!(
            r[0].object,
            json!({
                "apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": "nginx-deployment-pod", "namespace": "shop",
                    "labels": {"app": "nginx"},
                    "ownerReferences": [{"apiVersion": "apps/v1", "kind": "Deployment", "name": "Nginx-Deployment"}]},
                "spec": {"containers": [{"name": "nginx", "image": "nginx:1.27"}]}
            })
        );
        assert_eq!(r[0].template, "expand-deployments");
        assert_eq!(r[0].path, ["spec", "template"]);
        // The request's namespace wins over the object's (the API server's word).
        let r = expand(std::slice::from_ref(&t), &deployment, Some("prod")).unwrap();
        assert_eq!(r[0].object["metadata"]["namespace"], "prod");
        // Other kinds and versions are not expanded.
        for other in [
            json!({"apiVersion": "apps/v1beta1", "kind": "Deployment", "metadata": {"name": "d"}, "spec": {"template": {}}}),
            json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}, "spec": {}}),
        ] {
            assert!(
                expand(std::slice::from_ref(&t), &other, None)
                    .unwrap()
                    .is_empty()
            );
        }
    }

    #[test]
    fn a_cronjob_expands_through_its_job_and_keeps_each_action() {
        let all = [template(CRONJOBS).unwrap(), template(JOBS).unwrap()];
        let cronjob = json!({
            "apiVersion": "batch/v1", "kind": "CronJob", "metadata": {"name": "nightly", "namespace": "ops"},
            "spec": {"jobTemplate": {"spec": {"template": {"spec": {"containers": [{"name": "c", "image": "busybox"}]}}}}}
        });
        let r = expand(&all, &cronjob, None).unwrap();
        let names: Vec<(&str, &str, Option<Action>)> = r
            .iter()
            .map(|r| {
                (
                    r.object["metadata"]["name"].as_str().unwrap(),
                    r.template.as_str(),
                    r.enforcement_action,
                )
            })
            .collect();
        assert_eq!(
            names,
            [
                ("nightly-job-pod", "expand-jobs", None),
                ("nightly-job", "expand-cronjobs", Some(Action::Warn)),
            ]
        );
        assert_eq!(
            r[0].path,
            ["spec", "jobTemplate", "spec", "template"].map(String::from)
        );
    }

    #[test]
    fn invalid_templates_and_objects_are_refused_naming_the_field() {
        for (edit, want) in [
            (
                ("templateSource: spec.template", "templateSource: ''"),
                "templateSource is empty",
            ),
            (
                ("kind: Pod\n    group: ''\n    version: v1", "{}"),
                "generatedGVK is empty",
            ),
            (
                ("  name: expand-deployments", "  name: ''"),
                "needs metadata.name",
            ),
            (
                (
                    "kinds: [DaemonSet, Deployment, ReplicaSet, StatefulSet]",
                    "kinds: [Pod]",
                ),
                "",
            ),
            (
                (
                    "templateSource: spec.template",
                    "templateSource: spec.template\n  enforcementAction: block",
                ),
                "not deny, warn or dryrun",
            ),
        ] {
            let text = WORKLOADS.replace(edit.0, edit.1);
            assert_ne!(text, WORKLOADS, "{edit:?}");
            match template(&text) {
                Err(e) => assert!(e.to_string().contains(want), "{e}"),
                Ok(t) => {
                    // kinds: [Pod] with groups [apps] does not apply to core Pods: valid.
                    assert_eq!(edit.1, "kinds: [Pod]", "{t:?}");
                }
            }
        }
        let self_applying = WORKLOADS.replace("groups: [apps]", "groups: ['']").replace(
            "kinds: [DaemonSet, Deployment, ReplicaSet, StatefulSet]",
            "kinds: [Pod]",
        );
        assert!(
            template(&self_applying)
                .unwrap_err()
                .to_string()
                .contains("generates Pod but also applies to it")
        );
        // A workload without the source field cannot be expanded: an error, not a silent pass.
        let t = template(WORKLOADS).unwrap();
        let bare = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d"}, "spec": {}});
        assert!(
            expand(&[t], &bare, None)
                .unwrap_err()
                .contains("could not find source field \"spec.template\" in resource d")
        );
    }
}
