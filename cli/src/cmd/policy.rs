//! `sealgate policy verify`: gator Suite files, with gator's exit codes (0 all passed, 1 otherwise).
//! `sealgate policy bench`: `gator bench`'s measurements, baselines and regression check.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{Context, Result};
use sealgate_core::policy::suite::{self, Outcome};

use crate::args::PolicyCommand;

pub fn run(cmd: &PolicyCommand) -> Result<ExitCode> {
    let PolicyCommand::Verify {
        paths,
        run,
        eval_timeout,
        verbose,
        template_code,
    } = cmd
    else {
        let PolicyCommand::Bench(args) = cmd else {
            unreachable!("two subcommands")
        };
        return bench(args);
    };
    let filter = run
        .as_deref()
        .map(regex::Regex::new)
        .transpose()
        .context("--run is not a valid regular expression")?;
    let paths = if paths.is_empty() {
        vec![PathBuf::from(".")]
    } else {
        paths.clone()
    };
    let limits = sealgate_core::policy::EvalLimits {
        eval_timeout: *eval_timeout,
    };
    let (mut passed, mut failed, mut skipped, mut suites) = (0, 0, 0, 0);
    for p in &paths {
        for file in suite::find_suites(p) {
            suites += 1;
            let started = Instant::now();
            let results = suite::run_suite_with(&file, filter.as_ref(), limits, *template_code);
            let elapsed = started.elapsed();
            let mut suite_failed = 0;
            for r in &results {
                let name = [r.test.as_str(), r.case.as_str()]
                    .iter()
                    .filter(|s| !s.is_empty())
                    .copied()
                    .collect::<Vec<_>>()
                    .join("/");
                match &r.outcome {
                    Outcome::Pass => {
                        passed += 1;
                        if *verbose {
                            outln!("ok    {}: {name}", r.suite)?;
                        }
                    }
                    Outcome::Skip => {
                        skipped += 1;
                        if *verbose {
                            outln!("skip  {}: {name}", r.suite)?;
                        }
                    }
                    Outcome::Fail(why) => {
                        failed += 1;
                        suite_failed += 1;
                        outln!("FAIL  {}: {name}: {why}", r.suite)?;
                    }
                }
            }
            // One line per suite, as gator verify prints it.
            let verdict = if suite_failed > 0 { "FAIL" } else { "ok  " };
            outln!(
                "{verdict}  {}\t{} case(s)\t{:.3}s",
                file.display(),
                results.len(),
                elapsed.as_secs_f64()
            )?;
        }
    }
    if suites == 0 {
        outln!("no Suite files (test.gatekeeper.sh/v1alpha1) found")?;
        failed += 1;
    }
    if skipped > 0 {
        outln!("{skipped} skipped")?;
    }
    outln!("{passed} passed, {failed} failed")?;
    Ok(if failed > 0 {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

fn bench(args: &crate::args::BenchArgs) -> Result<ExitCode> {
    use crate::args::{BenchEngine, BenchFormat};
    use sealgate_core::policy::TemplateCode;
    use sealgate_core::policy::bench::{self, Config, Report};
    let paths: Vec<PathBuf> = args.paths.iter().chain(&args.filenames).cloned().collect();
    if paths.is_empty() {
        anyhow::bail!(
            "give files or directories with ConstraintTemplates, Constraints and objects (PATH or -f PATH)"
        );
    }
    // A baseline that cannot be read is said before anything is measured.
    let baseline: Option<Vec<Report>> = args
        .compare
        .as_ref()
        .map(|f| -> Result<Vec<Report>> {
            let text = std::fs::read(f)
                .with_context(|| format!("cannot read the baseline {}", f.display()))?;
            let docs = sealgate_core::manifest::parse(&text, &Default::default())
                .map_err(|e| anyhow::anyhow!("{}: {e}", f.display()))?;
            let value = docs.into_iter().next().map(|d| d.value).unwrap_or_default();
            serde_json::from_value(value).with_context(|| {
                format!(
                    "{} is not a baseline that `sealgate policy bench --save` wrote",
                    f.display()
                )
            })
        })
        .transpose()?;
    let inputs = load_bench_inputs(&paths)?;
    let codes = match args.engine {
        BenchEngine::Auto => vec![TemplateCode::Auto],
        BenchEngine::Rego => vec![TemplateCode::Rego],
        BenchEngine::Cel => vec![TemplateCode::Cel],
        BenchEngine::All => vec![TemplateCode::Rego, TemplateCode::Cel],
    };
    let config = Config {
        iterations: args.iterations as usize,
        warmup: args.warmup as usize,
        concurrency: args.concurrency as usize,
        stats: args.stats,
    };
    if args.iterations < 1000 {
        eprintln!(
            "warning: {} iterations may not give meaningful p99 figures; use at least 1000",
            args.iterations
        );
    }
    let mut reports = Vec::new();
    for code in codes {
        reports.push(bench::run(&inputs, code, config)?);
    }
    match args.output {
        BenchFormat::Table => {
            for r in &reports {
                print_bench_table(r)?;
            }
        }
        BenchFormat::Json => outln!("{}", serde_json::to_string_pretty(&reports)?)?,
        BenchFormat::Yaml => {
            let value = serde_json::to_value(&reports)?;
            outln!(
                "{}",
                sealgate_core::manifest::to_yaml_stream([&value]).trim_end()
            )?
        }
    }
    if let Some(f) = &args.save {
        let value = serde_json::to_value(&reports)?;
        let yaml = f.extension().is_some_and(|e| e == "yaml" || e == "yml");
        let text = if yaml {
            sealgate_core::manifest::to_yaml_stream([&value])
        } else {
            serde_json::to_string_pretty(&value)? + "\n"
        };
        sealgate_core::fsutil::write_atomic(f, text.as_bytes(), None)
            .with_context(|| format!("cannot save the baseline to {}", f.display()))?;
        eprintln!("saved the results to {}", f.display());
    }
    let Some(baseline) = baseline else {
        return Ok(ExitCode::SUCCESS);
    };
    let regressions = bench::compare(&baseline, &reports, args.threshold, args.min_threshold);
    if regressions.is_empty() {
        outln!(
            "no regression against the baseline (threshold {}%, at least {})",
            args.threshold,
            bench::format_duration(args.min_threshold)
        )?;
        return Ok(ExitCode::SUCCESS);
    }
    for r in &regressions {
        outln!(
            "REGRESSION {} {}: {} -> {} (+{:.1}%)",
            r.engine,
            r.metric,
            r.baseline,
            r.current,
            r.percent
        )?;
    }
    outln!(
        "{} regression(s) past {}% and {}",
        regressions.len(),
        args.threshold,
        bench::format_duration(args.min_threshold)
    )?;
    Ok(ExitCode::from(1))
}

/// The policy files' texts and every object among the paths (a List's items each).
fn load_bench_inputs(paths: &[PathBuf]) -> Result<sealgate_core::policy::bench::Inputs> {
    let started = Instant::now();
    let mut policies = Vec::new();
    let mut objects = Vec::new();
    for f in crate::discover::discover(paths)? {
        let input = crate::input::read_file(&f)?;
        let docs = crate::input::parse_docs(&input)?;
        let mut holds_policy = false;
        for d in docs {
            let is_policy = d
                .value
                .get("apiVersion")
                .and_then(serde_json::Value::as_str)
                .and_then(|a| a.split_once('/'))
                .is_some_and(|(g, _)| sealgate_core::policy::POLICY_GROUPS.contains(&g));
            if is_policy {
                holds_policy = true;
                continue;
            }
            for item in sealgate_core::manifest::items(d, None, None) {
                if item
                    .value
                    .get("kind")
                    .and_then(serde_json::Value::as_str)
                    .is_some()
                {
                    objects.push(item.value);
                }
            }
        }
        if holds_policy {
            policies.push((
                input.name.clone(),
                String::from_utf8_lossy(&input.bytes).into_owned(),
            ));
        }
    }
    Ok(sealgate_core::policy::bench::Inputs {
        policies,
        objects,
        load: started.elapsed(),
    })
}

fn print_bench_table(r: &sealgate_core::policy::bench::Report) -> Result<()> {
    use sealgate_core::policy::bench::format_duration as d;
    let (s, l) = (&r.setup_breakdown, &r.latencies);
    // gator bench's layout: each section's values start in one column.
    let section = |title: &str, column: usize, rows: &[(&str, String)]| -> Result<()> {
        outln!("{title}:")?;
        for (label, value) in rows {
            outln!("{:<column$}{value}", format!("{label}:"))?;
        }
        Ok(())
    };
    outln!("=== Benchmark Results: {} ===\n", r.engine.to_uppercase())?;
    section(
        "Configuration",
        18,
        &[
            ("  Templates", r.template_count.to_string()),
            ("  Constraints", r.constraint_count.to_string()),
            ("  Objects", r.object_count.to_string()),
            ("  Iterations", r.iterations.to_string()),
            ("  Concurrency", r.concurrency.to_string()),
            ("  Total Reviews", r.total_reviews.to_string()),
        ],
    )?;
    outln!()?;
    section(
        "Timing",
        30,
        &[
            ("  Setup Duration", d(r.setup_duration.0)),
            ("    └─ Load", d(s.load.0)),
            ("    └─ Compile", d(s.compile.0)),
            ("    └─ Data", d(s.data.0)),
            ("  Total Duration", d(r.total_duration.0)),
            (
                "  Throughput",
                format!("{:.2} reviews/sec", r.reviews_per_second),
            ),
        ],
    )?;
    outln!()?;
    let latencies = [
        ("  Min", l.min),
        ("  Max", l.max),
        ("  Mean", l.mean),
        ("  P50", l.p50),
        ("  P95", l.p95),
        ("  P99", l.p99),
    ];
    section(
        "Latency (per review)",
        9,
        &latencies.map(|(label, v)| (label, d(v.0))),
    )?;
    outln!()?;
    section(
        "Results",
        21,
        &[("  Violations Found", r.violation_count.to_string())],
    )?;
    if !r.constraints.is_empty() {
        outln!("\nPer-Constraint Statistics:")?;
        for c in &r.constraints {
            outln!("  {}: mean {}", c.constraint, d(c.mean.0))?;
        }
    }
    outln!()?;
    Ok(())
}
