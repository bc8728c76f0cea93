//! `sealgate policy verify`: gator Suite files, with gator's exit codes (0 all passed, 1 otherwise).

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
    } = cmd;
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
