//! The peer benchmark (issue 29): sealgate beside gator and conftest, built from their Go modules
//! (`testenv/go/gator`, `testenv/go/conftest`), on the same inputs in one run on this machine.
//! Each peer's version is printed, the verdict counts are checked to agree, and the figures,
//! ratios and targets are printed as a table, never asserted (these machines are noisy).
//!
//! `cargo test` runs a reduced form (the library's pod-security suites, a few iterations), so the
//! benchmark cannot rot; `bench/peers.sh` runs the full one (`SEALGATE_PEERS=full`, release
//! build). The controller rows run in the real-cluster tier (`tests/real_cluster/peers.rs`).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use serde_json::Value;

fn repo() -> PathBuf {
    sealgate_testkit::process::repo()
}

/// How much work each row does.
struct Scale {
    full: bool,
    /// Rounds of `gator bench` / `policy bench` over the objects.
    iterations: usize,
    /// Copies of the objects in the one stream lint and conftest read.
    copies: usize,
    /// Runs of each timed command (the fastest counts).
    runs: usize,
}

impl Scale {
    fn from_env() -> Scale {
        if std::env::var("SEALGATE_PEERS").is_ok_and(|v| v == "full") {
            Scale {
                full: true,
                iterations: 200,
                copies: 200,
                runs: 3,
            }
        } else {
            Scale {
                full: false,
                iterations: 3,
                copies: 5,
                runs: 1,
            }
        }
    }
}

/// The pod-security corpus: the library's 19 pod-security templates, their samples' constraints
/// (the first of each kind and name: gator keeps one, sealgate refuses a second) and the Pods
/// of their examples (the first of each name, as gator bench keeps them).
struct Corpus {
    dir: tempfile::TempDir,
    templates: usize,
    constraints: usize,
    pods: Vec<String>,
}

impl Corpus {
    fn path(&self, p: &str) -> PathBuf {
        self.dir.path().join(p)
    }
}

/// The entries of `p` that `keep`, sorted.
fn sorted(p: &Path, keep: impl Fn(&Path) -> bool) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(p)
        .map(|d| d.filter_map(Result::ok).map(|e| e.path()).collect())
        .unwrap_or_default();
    v.retain(|p| keep(p));
    v.sort();
    v
}

fn sorted_dirs(p: &Path) -> Vec<PathBuf> {
    sorted(p, Path::is_dir)
}

/// The YAML files of `p` named `PREFIX…`.
fn sorted_files(p: &Path, prefix: &str) -> Vec<PathBuf> {
    sorted(p, |p| {
        p.file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.starts_with(prefix) && n.ends_with(".yaml"))
    })
}

fn first_doc(p: &Path) -> Option<(String, Value)> {
    let text = std::fs::read_to_string(p).ok()?;
    let doc = sealgate_core::manifest::parse(text.as_bytes(), &Default::default())
        .ok()?
        .into_iter()
        .next()?;
    Some((text, doc.value))
}

fn corpus(library: &Path) -> Corpus {
    let dir = tempfile::tempdir().unwrap();
    for sub in ["templates", "constraints", "objects"] {
        std::fs::create_dir(dir.path().join(sub)).unwrap();
    }
    let (mut templates, mut constraints) = (0, 0);
    let mut pods = Vec::new();
    let mut constraint_ids = BTreeSet::new();
    let mut pod_names = BTreeSet::new();
    for t in sorted_dirs(&library.join("pod-security-policy")) {
        let name = t.file_name().unwrap().to_string_lossy().into_owned();
        std::fs::copy(
            t.join("template.yaml"),
            dir.path().join(format!("templates/{name}.yaml")),
        )
        .unwrap();
        templates += 1;
        for s in sorted_dirs(&t.join("samples")) {
            let sample = s.file_name().unwrap().to_string_lossy().into_owned();
            if let Some((text, v)) = first_doc(&s.join("constraint.yaml")) {
                let id = (v["kind"].to_string(), v["metadata"]["name"].to_string());
                if constraint_ids.insert(id) {
                    std::fs::write(
                        dir.path().join(format!("constraints/{name}-{sample}.yaml")),
                        text,
                    )
                    .unwrap();
                    constraints += 1;
                }
            }
            for e in sorted_files(&s, "example_") {
                let Some((text, v)) = first_doc(&e) else {
                    continue;
                };
                if v["kind"] != "Pod" || !pod_names.insert(v["metadata"]["name"].to_string()) {
                    continue;
                }
                std::fs::write(
                    dir.path().join(format!("objects/{}.yaml", pods.len())),
                    &text,
                )
                .unwrap();
                pods.push(text);
            }
        }
    }
    Corpus {
        dir,
        templates,
        constraints,
        pods,
    }
}

/// The objects `copies` times over in one YAML stream.
fn stream(pods: &[String], copies: usize) -> String {
    let mut s = String::new();
    for _ in 0..copies {
        for p in pods {
            if !p.starts_with("---") {
                s.push_str("---\n");
            }
            s.push_str(p);
            if !p.ends_with('\n') {
                s.push('\n');
            }
        }
    }
    s
}

/// The fastest of `runs` runs of a command, and its output.
fn timed(runs: usize, mut cmd: impl FnMut() -> Command) -> (Duration, Output) {
    let mut best: Option<(Duration, Output)> = None;
    for _ in 0..runs.max(1) {
        let started = Instant::now();
        let out = cmd().output().expect("the command runs");
        let took = started.elapsed();
        if best.as_ref().is_none_or(|(b, _)| took < *b) {
            best = Some((took, out));
        }
    }
    best.expect("at least one run")
}

fn json(out: &Output, what: &str) -> Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "{what}: not JSON ({e}); stderr: {}",
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

fn first_line(out: &Output) -> String {
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.lines()
        .find(|l| !l.trim().is_empty())
        .unwrap_or_default()
        .trim()
        .to_string()
}

/// One bench report of gator's or sealgate's (the same JSON).
struct Bench {
    templates: u64,
    constraints: u64,
    objects: u64,
    violations: u64,
    per_second: f64,
}

fn bench_report(out: &Output, what: &str) -> Bench {
    assert!(
        out.status.success(),
        "{what} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v = json(out, what);
    let r = &v[0];
    Bench {
        templates: r["templateCount"].as_u64().unwrap_or_default(),
        constraints: r["constraintCount"].as_u64().unwrap_or_default(),
        objects: r["objectCount"].as_u64().unwrap_or_default(),
        violations: r["violationCount"].as_u64().unwrap_or_default(),
        per_second: r["reviewsPerSecond"].as_f64().unwrap_or_default(),
    }
}

/// The printed table.
#[derive(Default)]
struct Table(Vec<[String; 5]>);

impl Table {
    fn row(&mut self, work: String, peer: String, ours: String, ratio: f64, target: &str) {
        let verdict = match target.split_once('≥') {
            Some((_, want)) => {
                let want: f64 = want.trim().trim_end_matches('×').parse().unwrap_or(0.0);
                if ratio >= want {
                    " (met)"
                } else {
                    " (not met)"
                }
            }
            None => "",
        };
        self.0.push([
            work,
            peer,
            ours,
            format!("{ratio:.1}×"),
            format!("{target}{verdict}"),
        ]);
    }

    fn print(&self) {
        println!("| work | peer | sealgate | ratio | target |");
        println!("|---|---|---|---|---|");
        for r in &self.0 {
            println!("| {} | {} | {} | {} | {} |", r[0], r[1], r[2], r[3], r[4]);
        }
    }
}

fn secs(d: Duration) -> String {
    format!("{:.2} s", d.as_secs_f64())
}

#[test]
fn sealgate_beside_gator_and_conftest() {
    let scale = Scale::from_env();
    let Some(library) = sealgate_testkit::gatekeeper::library() else {
        return;
    };
    let Some(gator) = sealgate_testenv::go::peer_binary(&sealgate_testenv::go::GATOR, "gator")
    else {
        return;
    };
    let Some(conftest) =
        sealgate_testenv::go::peer_binary(&sealgate_testenv::go::CONFTEST, "conftest")
    else {
        return;
    };
    let sealgate = sealgate_testkit::process::bin_dir().join("sealgate");
    let run = |bin: &Path, args: &[&str]| {
        let mut c = Command::new(bin);
        c.args(args).env_remove("SEALGATE_POLICY");
        c
    };
    let version = |bin: &Path, args: &[&str]| first_line(&run(bin, args).output().unwrap());
    println!(
        "peers ({}): {}; {}; {}",
        if scale.full {
            "full"
        } else {
            "reduced: SEALGATE_PEERS=full bench/peers.sh runs the full benchmark"
        },
        version(&sealgate, &["--version"]),
        version(&gator, &["--version"]),
        String::from_utf8_lossy(&run(&conftest, &["--version"]).output().unwrap().stdout)
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" "),
    );
    if !scale.full || cfg!(debug_assertions) {
        println!(
            "(a debug build or reduced inputs: these figures show the benchmark runs and the verdicts agree; bench/peers.sh gives the figures)"
        );
    }
    let mut table = Table::default();

    // 1. The library's suites: gator verify beside policy verify, every case passing in both.
    let suites = if scale.full {
        library.clone()
    } else {
        library.join("pod-security-policy")
    };
    let suites_arg = suites.to_string_lossy().into_owned();
    let (g_took, g_out) = timed(scale.runs, || {
        run(&gator, &["verify", "-v", &format!("{suites_arg}/...")])
    });
    let g_text = String::from_utf8_lossy(&g_out.stdout);
    let g_pass = g_text
        .lines()
        .filter(|l| l.starts_with("    --- PASS"))
        .count();
    let g_fail = g_text
        .lines()
        .filter(|l| l.starts_with("    --- FAIL"))
        .count();
    let (s_took, s_out) = timed(scale.runs, || {
        run(&sealgate, &["policy", "verify", &suites_arg])
    });
    let s_text = String::from_utf8_lossy(&s_out.stdout);
    let summary = s_text
        .lines()
        .rev()
        .find(|l| l.ends_with(" failed"))
        .unwrap_or_default();
    assert!(
        g_out.status.success() && g_fail == 0,
        "gator verify ({}): {g_text}{}",
        g_out.status,
        String::from_utf8_lossy(&g_out.stderr)
    );
    assert!(s_out.status.success(), "policy verify: {s_text}");
    assert_eq!(
        summary,
        format!("{g_pass} passed, 0 failed"),
        "the verdicts differ"
    );
    table.row(
        format!("the Gatekeeper library's {g_pass} gator cases (all pass in both)"),
        format!("`gator verify`: {}", secs(g_took)),
        format!("`policy verify`: {}", secs(s_took)),
        g_took.as_secs_f64() / s_took.as_secs_f64(),
        "",
    );

    // 2. gator bench beside policy bench on the pod-security corpus, per engine, one core.
    let c = corpus(&library);
    let (t, k, o) = (
        c.path("templates").to_string_lossy().into_owned(),
        c.path("constraints").to_string_lossy().into_owned(),
        c.path("objects").to_string_lossy().into_owned(),
    );
    let n = scale.iterations.to_string();
    let mut rego_rate = 0.0;
    let mut rego_violations = 0;
    for (engine, target) in [("rego", "≥ 20×"), ("cel", "≥ 10×")] {
        let (_, g) = timed(1, || {
            run(
                &gator,
                &[
                    "bench", "-f", &t, "-f", &k, "-f", &o, "-n", &n, "-e", engine, "-o", "json",
                ],
            )
        });
        let g = bench_report(&g, "gator bench");
        let (_, s) = timed(1, || {
            run(
                &sealgate,
                &[
                    "policy", "bench", "-f", &t, "-f", &k, "-f", &o, "-n", &n, "--engine", engine,
                    "-o", "json",
                ],
            )
        });
        let s = bench_report(&s, "policy bench");
        assert_eq!(
            (g.templates, g.constraints, g.objects, g.violations),
            (s.templates, s.constraints, s.objects, s.violations),
            "{engine}: gator bench and policy bench counted differently (templates, constraints, objects, violations)"
        );
        if engine == "rego" {
            rego_rate = g.per_second;
            rego_violations = g.violations;
        }
        table.row(
            format!(
                "{} pod-security templates ({} constraints) × {} Pods × {n}, {engine}: {} violations in both",
                g.templates, g.constraints, g.objects, g.violations
            ),
            format!("`gator bench --engine {engine}`: {:.0} reviews/s", g.per_second),
            format!("`policy bench --engine {engine}`: {:.0} reviews/s", s.per_second),
            s.per_second / g.per_second,
            target,
        );
    }
    assert_eq!(c.templates, 19, "the library's pod-security templates");
    assert!(c.constraints > 0 && !c.pods.is_empty());

    // 3. lint of the same Pods in one stream, with the same templates' Rego: the same
    //    violations as gator bench per round, on one core and on all.
    let docs = c.pods.len() * scale.copies;
    std::fs::write(c.path("stream.yaml"), stream(&c.pods, scale.copies)).unwrap();
    let stream_arg = c.path("stream.yaml").to_string_lossy().into_owned();
    let lint = |jobs: &str, policies: &[&str], extra: &[&str]| {
        let mut args: Vec<&str> = vec!["lint", "--no-builtin", "-j", jobs, "-o", "json"];
        for p in policies {
            args.extend(["-p", p]);
        }
        args.extend(extra);
        args.push(&stream_arg);
        let (took, out) = timed(scale.runs, || run(&sealgate, &args));
        assert!(
            out.status.code() == Some(1) || out.status.success(),
            "lint: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        (took, json(&out, "lint"))
    };
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let all = cores.to_string();
    let (one_core, l1) = lint("1", &[&t, &k], &["--template-code", "rego"]);
    let (every_core, l2) = lint(&all, &[&t, &k], &["--template-code", "rego"]);
    let findings = |v: &Value| v["findings"].as_array().map_or(0, Vec::len);
    let per_round = rego_violations / scale.iterations as u64;
    assert_eq!(
        findings(&l1) as u64,
        per_round * scale.copies as u64,
        "lint's findings and gator bench's violations"
    );
    assert_eq!(findings(&l1), findings(&l2), "-j 1 and -j {all}");
    let rate = |d: Duration| docs as f64 / d.as_secs_f64();
    table.row(
        format!(
            "the same {docs} Pods in one stream, Rego, end to end (parse included): {} violations",
            findings(&l2)
        ),
        format!("`gator bench --engine rego`: {rego_rate:.0} reviews/s"),
        format!(
            "`lint -j {all}`: {:.0} docs/s ({})",
            rate(every_core),
            secs(every_core)
        ),
        rate(every_core) / rego_rate,
        "",
    );
    table.row(
        format!("lint of that stream on {cores} cores beside one"),
        format!("`lint -j 1`: {:.0} docs/s", rate(one_core)),
        format!("`lint -j {all}`: {:.0} docs/s", rate(every_core)),
        one_core.as_secs_f64() / every_core.as_secs_f64(),
        "≥ 1.8×",
    );

    // 4. conftest test beside lint, one conftest policy over the stream.
    let policy = repo().join("bench/peers/pods.rego");
    let policy_arg = policy.to_string_lossy().into_owned();
    let (cf_took, cf) = timed(scale.runs, || {
        run(
            &conftest,
            &[
                "test",
                "--no-color",
                "-o",
                "json",
                "-p",
                &policy_arg,
                &stream_arg,
            ],
        )
    });
    let cf = json(&cf, "conftest test");
    let count = |key: &str| -> usize {
        cf.as_array()
            .map(|results| {
                results
                    .iter()
                    .map(|r| r[key].as_array().map_or(0, Vec::len))
                    .sum()
            })
            .unwrap_or(0)
    };
    let (lint_took, l) = lint(&all, &[&policy_arg], &[]);
    let action = |a: &str| {
        l["findings"]
            .as_array()
            .map_or(0, |f| f.iter().filter(|f| f["action"] == a).count())
    };
    assert_eq!(
        (count("failures"), count("warnings")),
        (action("deny"), action("warn")),
        "conftest's failures and warnings, lint's deny and warn findings"
    );
    assert!(count("failures") > 0, "the policy finds nothing");
    table.row(
        format!(
            "one conftest policy over the {docs} Pods: {} failures, {} warnings in both",
            count("failures"),
            count("warnings")
        ),
        format!("`conftest test`: {}", secs(cf_took)),
        format!("`lint -j {all}`: {}", secs(lint_took)),
        cf_took.as_secs_f64() / lint_took.as_secs_f64(),
        "≥ 20×",
    );
    table.print();
}
