//! Where a policy is enforced, what its violations do there, and how a constraint says so.

use serde_json::Value;

/// Where a policy is being enforced.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Point {
    /// `sealgate lint` (Gatekeeper's `gator.gatekeeper.sh`).
    Ci,
    /// The admission webhook (`validation.gatekeeper.sh`).
    Admission,
    /// Background audit (`audit.gatekeeper.sh`).
    Audit,
}

impl Point {
    /// The point as sealgate names it (`ci`, `admission`, `audit`).
    pub fn as_str(self) -> &'static str {
        match self {
            Point::Ci => "ci",
            Point::Admission => "admission",
            Point::Audit => "audit",
        }
    }

    /// Whether an enforcement point name (sealgate's or Gatekeeper's) names this point.
    fn is_named(self, name: &str) -> bool {
        name == "*"
            || name == self.as_str()
            || name
                == match self {
                    Point::Ci => "gator.gatekeeper.sh",
                    Point::Admission => "validation.gatekeeper.sh",
                    Point::Audit => "audit.gatekeeper.sh",
                }
    }
}

/// What a violation does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Action {
    /// Reported only (audit, `--format json`); never fails anything.
    Dryrun,
    /// Reported as a warning; fails lint only with `--fail-on-warn`.
    Warn,
    /// Fails lint and denies admission.
    Deny,
}

impl Action {
    /// The action as `enforcementAction` spells it (`deny`, `warn`, `dryrun`).
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Deny => "deny",
            Action::Warn => "warn",
            Action::Dryrun => "dryrun",
        }
    }

    pub(crate) fn parse(s: &str) -> Option<Action> {
        match s {
            "deny" => Some(Action::Deny),
            "warn" => Some(Action::Warn),
            "dryrun" => Some(Action::Dryrun),
            _ => None,
        }
    }
}

/// What a violation does to the change it is about, at one enforcement point. Lint, the webhook
/// and audit all ask [`Action::effect`], so an action means the same thing everywhere.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Effect {
    /// Fails lint (exit 1); denies admission.
    Reject,
    /// Reported as a warning: lint's warning count, the AdmissionResponse's `warnings`.
    Warn,
    /// Only reported (JSON reports, audit results, decision logs).
    Report,
}

impl Action {
    /// The effect of a violation with this action at `point`. `fail_on_warn` (lint's
    /// `--fail-on-warn`) makes warnings fail CI; it means nothing elsewhere. Audit changes
    /// nothing: everything it finds is a report.
    pub fn effect(self, point: Point, fail_on_warn: bool) -> Effect {
        match (point, self) {
            (Point::Audit, _) | (_, Action::Dryrun) => Effect::Report,
            (_, Action::Deny) => Effect::Reject,
            (Point::Ci, Action::Warn) if fail_on_warn => Effect::Reject,
            (_, Action::Warn) => Effect::Warn,
        }
    }
}

impl serde::Serialize for Action {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

/// How a constraint is enforced.
#[derive(Debug, Clone, PartialEq)]
pub enum Enforcement {
    /// One action at every point.
    Action(Action),
    /// `enforcementAction: scoped`: actions per enforcement point.
    Scoped(Vec<(Action, Vec<String>)>),
}

impl Enforcement {
    pub(super) fn parse(spec: Option<&Value>) -> Result<Enforcement, String> {
        let action = spec
            .and_then(|s| s.get("enforcementAction"))
            .and_then(Value::as_str)
            .unwrap_or("deny");
        if action != "scoped" {
            return Action::parse(action)
                .map(Enforcement::Action)
                .ok_or_else(|| {
                    format!("spec.enforcementAction {action:?} is not deny, warn, dryrun or scoped")
                });
        }
        let mut scoped = Vec::new();
        for e in spec
            .and_then(|s| s.get("scopedEnforcementActions"))
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let a = e.get("action").and_then(Value::as_str).unwrap_or("");
            let a = Action::parse(a).ok_or_else(|| {
                format!("spec.scopedEnforcementActions: action {a:?} is not deny, warn or dryrun")
            })?;
            let points = e
                .get("enforcementPoints")
                .and_then(Value::as_array)
                .map(|ps| {
                    ps.iter()
                        .filter_map(|p| p.get("name").and_then(Value::as_str).map(str::to_string))
                        .collect()
                })
                .unwrap_or_default();
            scoped.push((a, points));
        }
        if scoped.is_empty() {
            return Err("enforcementAction: scoped needs spec.scopedEnforcementActions".into());
        }
        Ok(Enforcement::Scoped(scoped))
    }

    /// The action at `point`, or `None` if the constraint is not enforced there. With several
    /// scoped actions for one point, the strongest wins.
    pub fn at(&self, point: Point) -> Option<Action> {
        match self {
            Enforcement::Action(a) => Some(*a),
            Enforcement::Scoped(list) => list
                .iter()
                .filter(|(_, points)| points.iter().any(|p| point.is_named(p)))
                .map(|(a, _)| *a)
                .max(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_action_means_the_same_at_every_point() {
        use Effect::*;
        for (point, action, fail_on_warn, want) in [
            (Point::Ci, Action::Deny, false, Reject),
            (Point::Ci, Action::Warn, false, Warn),
            (Point::Ci, Action::Warn, true, Reject),
            (Point::Ci, Action::Dryrun, true, Report),
            (Point::Admission, Action::Deny, false, Reject),
            (Point::Admission, Action::Warn, true, Warn),
            (Point::Admission, Action::Dryrun, false, Report),
            (Point::Audit, Action::Deny, false, Report),
            (Point::Audit, Action::Warn, true, Report),
        ] {
            assert_eq!(
                action.effect(point, fail_on_warn),
                want,
                "{point:?} {action:?}"
            );
        }
    }
}
