//! `sealgate policy bench`, the counterpart of `gator bench`: load ConstraintTemplates,
//! Constraints and objects, compile, then review every object `iterations` times (after
//! `warmup` rounds) on `concurrency` threads, and report what gator reports: counts, setup time
//! (load, compile, data), reviews/s, latency min/mean/p50/p95/p99/max, violations, and per
//! constraint, each one's mean time. A saved report is a baseline that a later run is compared
//! with: a regression is a latency (or throughput) worse by more than a percentage *and* by
//! more than an absolute duration, as gator decides it.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::{Bundle, BundleBuilder, EvalLimits, Point, Review, TemplateCode};

/// How a bench runs.
#[derive(Debug, Clone, Copy)]
pub struct Config {
    /// Measured rounds over every object.
    pub iterations: usize,
    /// Rounds before measuring.
    pub warmup: usize,
    /// Threads reviewing at once.
    pub concurrency: usize,
    /// Time each constraint on its own too.
    pub stats: bool,
}

/// What was loaded: the policy documents' texts and the objects to review.
pub struct Inputs {
    /// (source, text) of every file holding policies.
    pub policies: Vec<(String, String)>,
    /// The objects (every document that is not a policy).
    pub objects: Vec<Value>,
    /// How long reading and parsing took.
    pub load: Duration,
}

/// A Go-style duration (`236.99µs`, `7.35ms`, `1.2s`), as gator writes them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct GoDuration(pub Duration);

impl serde::Serialize for GoDuration {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format_duration(self.0))
    }
}

impl<'de> serde::Deserialize<'de> for GoDuration {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        parse_duration(&s)
            .map(GoDuration)
            .ok_or_else(|| serde::de::Error::custom(format!("{s:?} is not a duration like 1.5ms")))
    }
}

/// `1.5ms`, `236.99µs`, `2s`: the largest unit below the value, two decimals at most.
pub fn format_duration(d: Duration) -> String {
    let ns = d.as_nanos() as f64;
    let (v, unit) = if ns >= 1e9 {
        (ns / 1e9, "s")
    } else if ns >= 1e6 {
        (ns / 1e6, "ms")
    } else if ns >= 1e3 {
        (ns / 1e3, "µs")
    } else {
        (ns, "ns")
    };
    let text = format!("{v:.2}");
    let text = text.trim_end_matches('0').trim_end_matches('.');
    format!("{text}{unit}")
}

/// A Go duration (`1.5ms`, `236µs`, `236us`, `2s`, `10ns`), or `None`.
pub fn parse_duration(s: &str) -> Option<Duration> {
    let s = s.trim();
    let split = s.find(|c: char| !(c.is_ascii_digit() || c == '.'))?;
    let v: f64 = s[..split].parse().ok()?;
    let scale = match &s[split..] {
        "ns" => 1.0,
        "µs" | "us" => 1e3,
        "ms" => 1e6,
        "s" => 1e9,
        "m" => 60e9,
        _ => return None,
    };
    (v.is_finite() && v >= 0.0).then(|| Duration::from_nanos((v * scale) as u64))
}

/// Setup, split as gator splits it.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SetupBreakdown {
    /// Reading and parsing the files.
    pub load: GoDuration,
    /// Compiling templates and constraints into a bundle.
    pub compile: GoDuration,
    /// Making the objects the bundle's inventory (`data.inventory`).
    pub data: GoDuration,
}

/// Latency per review.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct Latencies {
    /// Fastest.
    pub min: GoDuration,
    /// Slowest.
    pub max: GoDuration,
    /// Mean.
    pub mean: GoDuration,
    /// Median.
    pub p50: GoDuration,
    /// 95th percentile.
    pub p95: GoDuration,
    /// 99th percentile.
    pub p99: GoDuration,
}

/// One constraint reviewed alone.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ConstraintStat {
    /// `Kind/name`.
    pub constraint: String,
    /// Mean time of a review by it alone.
    pub mean: GoDuration,
}

/// A bench's result, as gator's JSON has it.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Report {
    /// `auto` (Gatekeeper's choice per template), `rego` or `cel`.
    pub engine: String,
    /// Templates compiled.
    pub template_count: usize,
    /// Constraints.
    pub constraint_count: usize,
    /// Objects reviewed per iteration.
    pub object_count: usize,
    /// Measured iterations.
    pub iterations: usize,
    /// Threads.
    pub concurrency: usize,
    /// Reviews measured.
    pub total_reviews: usize,
    /// Setup in all.
    pub setup_duration: GoDuration,
    /// Setup, split.
    pub setup_breakdown: SetupBreakdown,
    /// The measured reviews, wall clock.
    pub total_duration: GoDuration,
    /// Per review.
    pub latencies: Latencies,
    /// Violations found in the measured reviews.
    pub violation_count: usize,
    /// Reviews per second.
    pub reviews_per_second: f64,
    /// Per constraint (`--stats`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub constraints: Vec<ConstraintStat>,
}

/// Why a bench cannot run.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    /// The policies do not compile.
    #[error("{0}")]
    Bundle(#[from] super::BundleErrors),
    /// Nothing to review, or nothing to review with.
    #[error("{0}")]
    Empty(String),
}

/// Run the bench for one choice of template code.
pub fn run(inputs: &Inputs, code: TemplateCode, config: Config) -> Result<Report, BenchError> {
    if inputs.objects.is_empty() {
        return Err(BenchError::Empty(
            "no objects to review: give files or directories with Kubernetes objects beside the templates and constraints".into(),
        ));
    }
    let started = Instant::now();
    let mut b = BundleBuilder::new(EvalLimits::default());
    b.template_code(code);
    // As gator bench: an engine runs the templates that have its code, the others are left out.
    b.skip_templates_without_code(code != TemplateCode::Auto);
    for (source, text) in &inputs.policies {
        b.add_text(source, text);
    }
    let data_started = Instant::now();
    b.add_inventory(inputs.objects.iter().cloned());
    let data = data_started.elapsed();
    let bundle = b.build()?;
    let compile = started.elapsed().saturating_sub(data);
    if bundle.constraints().is_empty() {
        return Err(BenchError::Empty(match code {
            TemplateCode::Auto => {
                "no constraints: give files or directories with ConstraintTemplates and Constraints"
                    .into()
            }
            TemplateCode::Rego | TemplateCode::Cel => format!(
                "no constraints whose template has {} code (--engine {} runs only those, as gator bench)",
                if code == TemplateCode::Cel {
                    "CEL"
                } else {
                    "Rego"
                },
                if code == TemplateCode::Cel {
                    "cel"
                } else {
                    "rego"
                }
            ),
        }));
    }
    let reviews: Vec<Review> = inputs
        .objects
        .iter()
        .map(|o| Review::for_object(o.clone(), Point::Ci))
        .collect();
    let none = Default::default();
    for _ in 0..config.warmup {
        for r in &reviews {
            std::hint::black_box(bundle.evaluate(r, &none));
        }
    }
    let total = config.iterations.saturating_mul(reviews.len());
    let next = AtomicUsize::new(0);
    let measure_started = Instant::now();
    let per_thread: Vec<(Vec<Duration>, usize)> = std::thread::scope(|s| {
        let workers: Vec<_> = (0..config.concurrency.max(1))
            .map(|_| {
                s.spawn(|| {
                    let (mut times, mut violations) = (Vec::new(), 0);
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        if i >= total {
                            break;
                        }
                        let t = Instant::now();
                        let v = bundle.evaluate(&reviews[i % reviews.len()], &none);
                        times.push(t.elapsed());
                        violations += v.len();
                    }
                    (times, violations)
                })
            })
            .collect();
        workers
            .into_iter()
            .map(|w| w.join().unwrap_or_default())
            .collect()
    });
    let wall = measure_started.elapsed();
    let violations = per_thread.iter().map(|(_, v)| v).sum();
    let mut times: Vec<Duration> = per_thread.into_iter().flat_map(|(t, _)| t).collect();
    times.sort();
    let constraints = if config.stats {
        constraint_stats(&bundle, &reviews, config.iterations.clamp(1, 100))
    } else {
        Vec::new()
    };
    Ok(Report {
        engine: match code {
            TemplateCode::Auto => "auto",
            TemplateCode::Rego => "rego",
            TemplateCode::Cel => "cel",
        }
        .to_string(),
        template_count: bundle.templates().count(),
        constraint_count: bundle.constraints().len(),
        object_count: reviews.len(),
        iterations: config.iterations,
        concurrency: config.concurrency.max(1),
        total_reviews: times.len(),
        setup_duration: GoDuration(inputs.load + compile + data),
        setup_breakdown: SetupBreakdown {
            load: GoDuration(inputs.load),
            compile: GoDuration(compile),
            data: GoDuration(data),
        },
        total_duration: GoDuration(wall),
        latencies: latencies(&times),
        violation_count: violations,
        reviews_per_second: times.len() as f64 / wall.as_secs_f64().max(1e-9),
        constraints,
    })
}

fn latencies(sorted: &[Duration]) -> Latencies {
    let at = |q: f64| {
        GoDuration(
            sorted
                .get(((sorted.len() as f64 - 1.0) * q).round() as usize)
                .copied()
                .unwrap_or_default(),
        )
    };
    let sum: Duration = sorted.iter().sum();
    Latencies {
        min: at(0.0),
        max: at(1.0),
        mean: GoDuration(sum / (sorted.len().max(1) as u32)),
        p50: at(0.5),
        p95: at(0.95),
        p99: at(0.99),
    }
}

/// Each constraint alone over every object, `rounds` times: its mean review time.
fn constraint_stats(bundle: &Bundle, reviews: &[Review], rounds: usize) -> Vec<ConstraintStat> {
    let none = Default::default();
    bundle
        .constraints()
        .iter()
        .map(|c| {
            let mut only = bundle.clone();
            only.retain_constraints(|x| x.kind == c.kind && x.name == c.name);
            let started = Instant::now();
            for _ in 0..rounds {
                for r in reviews {
                    std::hint::black_box(only.evaluate(r, &none));
                }
            }
            ConstraintStat {
                constraint: format!("{}/{}", c.kind, c.name),
                mean: GoDuration(started.elapsed() / (rounds * reviews.len()).max(1) as u32),
            }
        })
        .collect()
}

/// A measure that got worse than its baseline by more than both thresholds.
#[derive(Debug, Clone, PartialEq)]
pub struct Regression {
    /// The engine.
    pub engine: String,
    /// What got worse (`p99`, `mean`, `throughput`, …).
    pub metric: String,
    /// The baseline's value, in words.
    pub baseline: String,
    /// This run's, in words.
    pub current: String,
    /// How much worse, in percent.
    pub percent: f64,
}

/// Compare `current` with `baseline`, engine by engine: latencies (mean, p50, p95, p99) and the
/// time per review behind throughput are regressions when worse by more than `threshold`
/// percent *and* by more than `min_threshold` (gator's rule, so fast policies do not fail on
/// noise).
pub fn compare(
    baseline: &[Report],
    current: &[Report],
    threshold: f64,
    min_threshold: Duration,
) -> Vec<Regression> {
    let mut out = Vec::new();
    for c in current {
        let Some(b) = baseline.iter().find(|b| b.engine == c.engine) else {
            continue;
        };
        let per_review =
            |r: &Report| Duration::from_secs_f64(1.0 / r.reviews_per_second.max(f64::MIN_POSITIVE));
        let measures = [
            ("mean", b.latencies.mean.0, c.latencies.mean.0),
            ("p50", b.latencies.p50.0, c.latencies.p50.0),
            ("p95", b.latencies.p95.0, c.latencies.p95.0),
            ("p99", b.latencies.p99.0, c.latencies.p99.0),
            ("time per review (throughput)", per_review(b), per_review(c)),
        ];
        for (metric, before, after) in measures {
            let grew = after.saturating_sub(before);
            let percent = if before.is_zero() {
                if grew.is_zero() { 0.0 } else { f64::INFINITY }
            } else {
                grew.as_secs_f64() / before.as_secs_f64() * 100.0
            };
            if percent > threshold && grew > min_threshold {
                out.push(Regression {
                    engine: c.engine.clone(),
                    metric: metric.to_string(),
                    baseline: format_duration(before),
                    current: format_duration(after),
                    percent,
                });
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_back_as_written() {
        for (d, text) in [
            (Duration::from_nanos(236_990), "236.99µs"),
            (Duration::from_micros(7_350), "7.35ms"),
            (Duration::from_millis(1_200), "1.2s"),
            (Duration::from_nanos(10), "10ns"),
        ] {
            assert_eq!(format_duration(d), text);
            assert_eq!(parse_duration(text), Some(d));
        }
        assert_eq!(parse_duration("236us"), Some(Duration::from_micros(236)));
        assert_eq!(parse_duration("fast"), None);
        assert_eq!(parse_duration("-1ms"), None);
    }

    fn report(engine: &str, p99_us: u64, rps: f64) -> Report {
        let us = |n| GoDuration(Duration::from_micros(n));
        Report {
            engine: engine.into(),
            template_count: 1,
            constraint_count: 1,
            object_count: 1,
            iterations: 1,
            concurrency: 1,
            total_reviews: 1,
            setup_duration: us(1),
            setup_breakdown: SetupBreakdown::default(),
            total_duration: us(1),
            latencies: Latencies {
                min: us(10),
                max: us(p99_us),
                mean: us(100),
                p50: us(100),
                p95: us(100),
                p99: us(p99_us),
            },
            violation_count: 0,
            reviews_per_second: rps,
            constraints: Vec::new(),
        }
    }

    #[test]
    fn a_regression_passes_both_thresholds() {
        let base = [report("rego", 200, 10_000.0)];
        // +50 % but +100 µs: under a 1 ms minimum, not a regression.
        let small = [report("rego", 300, 10_000.0)];
        assert!(compare(&base, &small, 10.0, Duration::from_millis(1)).is_empty());
        assert_eq!(compare(&base, &small, 10.0, Duration::ZERO).len(), 1);
        // +5 ms on p99: a regression; throughput 10,000/s -> 100/s too.
        let slow = [report("rego", 5_200, 100.0)];
        let r = compare(&base, &slow, 10.0, Duration::from_millis(1));
        let metrics: Vec<&str> = r.iter().map(|r| r.metric.as_str()).collect();
        assert_eq!(metrics, ["p99", "time per review (throughput)"]);
        assert_eq!(r[0].baseline, "200µs");
        assert_eq!(r[0].current, "5.2ms");
        // Another engine's baseline is not compared.
        assert!(compare(&[report("cel", 1, 1e9)], &slow, 10.0, Duration::ZERO).is_empty());
    }
}
