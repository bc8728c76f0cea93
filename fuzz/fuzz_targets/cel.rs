//! CEL as a ValidatingAdmissionPolicy or a template carries it: compiling never panics, and an
//! expression that compiles is judged (a decision or an error, never a panic) on a Pod, within
//! the cost budget.
#![no_main]
use libfuzzer_sys::fuzz_target;
use sealgate_core::policy::cel::{CelCode, CelInput, Dialect};
use serde_json::json;

fuzz_target!(|data: &[u8]| {
    let Ok(expr) = std::str::from_utf8(data) else {
        return;
    };
    let source = json!({
        "variables": [{"name": "containers", "expression": "object.spec.containers"}],
        "validations": [{"expression": expr, "messageExpression": expr}],
    });
    for dialect in [Dialect::Kubernetes, Dialect::Gatekeeper] {
        let Ok(code) = CelCode::compile(&source, dialect) else {
            continue;
        };
        let containers: Vec<_> = (0..8)
            .map(|i| json!({"name": format!("c{i}"), "image": format!("registry.example/app:{i}"),
                            "ports": [{"containerPort": 8080 + i}]}))
            .collect();
        let request = json!({"operation": "CREATE", "userInfo": {"username": "alice", "groups": ["dev"]},
            "object": {"apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": "p", "namespace": "shop", "labels": {"app": "web"}},
                "spec": {"containers": containers}},
            "oldObject": null});
        let input = CelInput::new(&request, None);
        match dialect {
            Dialect::Kubernetes => {
                let _ = code.decide(&input, Some(&json!({"data": {"max": "3"}})));
            }
            Dialect::Gatekeeper => {
                let _ = code.eval(&input, &json!({"repos": ["registry.example/"]}));
            }
        }
    }
});
