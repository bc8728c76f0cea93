//! The real-cluster tier: `deploy/`, the controller and the webhook against kube-apiserver,
//! kube-controller-manager and etcd built from Kubernetes' own Go modules (`testenv`).
//!
//! One control plane serves the whole binary (its own `main`, so it is stopped when the run
//! ends); every test works in namespaces of its own. Tests run one at a time by default: some stop
//! and restart the shared webhook or controller.
//!
//! ```sh
//! cargo test -p sealgate-e2e --test real_cluster                 # all
//! cargo test -p sealgate-e2e --test real_cluster -- webhook      # a subset
//! SEALGATE_KEEP_CLUSTER=1 cargo test …                           # keep the logs
//! ```
//!
//! Without Go the tier skips, saying what to install; `SEALGATE_REQUIRE_CLUSTER=1` (`.ci/run`)
//! makes that a failure.

mod audit;
mod bitnami;
mod chart;
mod controller;
mod env;
mod install;
mod inventory;
mod latency;
mod peers;
mod provenance;
mod vap;
mod webhook;

use std::sync::Arc;

use libtest_mimic::{Arguments, Failed, Trial};

pub use env::Env;

/// A test of this tier.
type Test = fn(&Env) -> Result<(), Failed>;

fn tests() -> Vec<(&'static str, Test)> {
    let mut all = Vec::new();
    all.extend(install::TESTS);
    all.extend(chart::TESTS);
    all.extend(controller::TESTS);
    all.extend(webhook::TESTS);
    all.extend(inventory::TESTS);
    all.extend(audit::TESTS);
    all.extend(provenance::TESTS);
    all.extend(bitnami::TESTS);
    all.extend(vap::TESTS);
    all.extend(latency::TESTS);
    // Last: it restarts the shared controller and counts every SealedSecret.
    all.extend(peers::TESTS);
    all
}

fn selected(args: &Arguments, name: &str) -> bool {
    let matches = |f: &str| {
        if args.exact {
            name == f
        } else {
            name.contains(f)
        }
    };
    args.filter.as_deref().is_none_or(matches) && !args.skip.iter().any(|s| matches(s))
}

fn main() {
    let mut args = Arguments::from_args();
    // One at a time unless asked: tests stop and restart the shared components.
    args.test_threads.get_or_insert(1);
    let tests = tests();
    let wanted = !args.list && tests.iter().any(|(name, _)| selected(&args, name));

    let env = if wanted {
        match Env::start() {
            Ok(env) => Some(Arc::new(env)),
            Err(why) if sealgate_testenv::required() => {
                eprintln!(
                    "error: the real-cluster tier cannot run, and {} is set: {why}",
                    sealgate_testenv::REQUIRE_VAR
                );
                std::process::exit(1);
            }
            Err(why) => {
                eprintln!("skipping the real-cluster tier: {why}");
                None
            }
        }
    } else {
        None
    };

    let trials = tests
        .into_iter()
        .map(|(name, test)| {
            let env = env.clone();
            let skip = env.is_none();
            Trial::test(name, move || match env {
                Some(env) => test(&env),
                None => Ok(()),
            })
            .with_ignored_flag(skip && wanted)
        })
        .collect();
    let conclusion = libtest_mimic::run(&args, trials);
    // Stop every process before exiting (exit skips destructors).
    drop(env);
    conclusion.exit();
}
