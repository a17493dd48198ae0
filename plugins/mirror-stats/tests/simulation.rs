//! The readiness verdict under repeated looks: a deterministic, seeded simulation judged
//! by the real policy code (`policy::verdicts`, what `/readiness` and the metrics read).
//!
//! Each stream is one mirror whose bad outcomes (errors, latencies over the bound,
//! mismatches) arrive independently at a true rate `p`. Its verdict is read every 10
//! requests, as a deploy gate polling `/readiness` would, up to 100,000 requests:
//!
//! * at `p` = the limit (not ready: the rate is not within it), the fraction of streams
//!   ever shown READY must be at most 5 % (`mirror_min_confidence` = 0.95), beside what
//!   the rule before 3.1 (READY when the observed rate is within the limit, from
//!   `min_requests` on) and a Jeffreys posterior ≥ 95 % read at every look would give;
//! * at `p` = half the limit, the median number of requests before READY, beside the
//!   fixed-sample Jeffreys method (posterior probability of being within the limit ≥ 95 %).
//!
//! Each criterion is studied alone (the other limits off), so its figures are its own.
//! The verdict at a look depends on the counts only, so the policy is called once per
//! (look, count) boundary ([`thresholds`]) rather than once per stream and look: 10,000
//! streams at the limit then cost seconds, and the figures are precise to about ±0.4 %.
//! `cargo test --release -p pgdog-mirror-stats --test simulation -- --nocapture` prints
//! the table quoted in `docs/plugins.md`.

use pgdog_mirror_stats::policy::verdicts;
use pgdog_plugin_api::{
    Counts, DatabaseStats, LatencyBucket, LatencySummary, ReadinessCriteria, StatsSnapshot,
};
use pgdog_stats_math::jeffreys_prob_at_most;

const POLL_EVERY: u64 = 10;
const HORIZON: u64 = 100_000;
const MIN_REQUESTS: u64 = 100;
const REQUIRED: f64 = 0.95;

/// splitmix64: small, fast, and the same numbers on every machine.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}

#[derive(Clone, Copy, Debug)]
enum Criterion {
    ErrorRate,
    P99,
    Mismatch,
}

impl Criterion {
    fn name(self) -> &'static str {
        match self {
            Self::ErrorRate => "error rate (limit 5%)",
            Self::P99 => "p99 (1% over the bound)",
            Self::Mismatch => "mismatch rate (limit 0.1%)",
        }
    }

    fn limit(self) -> f64 {
        match self {
            Self::ErrorRate => 0.05,
            Self::P99 => 0.01,
            Self::Mismatch => 0.001,
        }
    }

    /// This criterion alone: the others' limits off.
    fn criteria(self) -> ReadinessCriteria {
        let off = ReadinessCriteria {
            max_error_rate: 1.0,
            max_latency_ms: 0.0,
            min_requests: MIN_REQUESTS,
            min_runtime_secs: 0.0,
            max_mismatch_rate: 1.0,
            max_drop_rate: 1.0,
            max_latency_ratio: 0.0,
            ..ReadinessCriteria::default()
        };
        let one = match self {
            Self::ErrorRate => ReadinessCriteria {
                max_error_rate: self.limit(),
                ..off
            },
            Self::P99 => ReadinessCriteria {
                max_latency_ms: 100.0,
                ..off
            },
            Self::Mismatch => ReadinessCriteria {
                max_mismatch_rate: self.limit(),
                ..off
            },
        };
        one.with_confidence_and_coverage(REQUIRED, 1.0)
    }

    /// The statistics after `n` requests of which `k` were bad.
    fn snapshot(self, k: u64, n: u64) -> StatsSnapshot {
        let mut counts = Counts {
            total: n,
            mirrored: n,
            ..Counts::default()
        };
        let mut latency = LatencySummary {
            samples: n,
            p99_ms: 5.0,
            buckets: vec![LatencyBucket {
                le_us: 5_000,
                count: n,
            }]
            .into(),
            ..LatencySummary::default()
        };
        match self {
            Self::ErrorRate => {
                counts.mirrored = n - k;
                counts.errors = k;
                counts.by_category.query = k;
                latency.samples = n - k;
                latency.buckets[0].count = n - k;
            }
            Self::P99 => {
                latency.buckets = vec![
                    LatencyBucket {
                        le_us: 5_000,
                        count: n - k,
                    },
                    LatencyBucket {
                        le_us: 500_000,
                        count: k,
                    },
                ]
                .into();
            }
            Self::Mismatch => {
                counts.compared = n;
                counts.mismatched = k;
            }
        }
        StatsSnapshot {
            overall: DatabaseStats {
                counts,
                mirror_latency: latency,
                first_event_unix_us: Some(0).into(),
                ..DatabaseStats::default()
            },
            taken_at_unix_us: 1,
            ..StatsSnapshot::default()
        }
    }
}

/// For each look (`n` = 10, 20, ... [`HORIZON`]), the largest number of bad outcomes `k`
/// at which `ready(k, n)` holds, `-1` when none does. Each rule here is monotone in `k`
/// (more bad outcomes are never more evidence), so one bisection per look finds it, and
/// a stream is then judged by comparing its count with the table. The policy's table is
/// built by calling the policy; [`tables_agree_with_the_policy_at_every_look`] checks
/// streams against direct calls.
fn thresholds(ready: impl Fn(u64, u64) -> bool) -> Vec<i64> {
    (1..=HORIZON / POLL_EVERY)
        .map(|i| {
            let n = i * POLL_EVERY;
            if !ready(0, n) {
                return -1;
            }
            let (mut yes, mut no) = (0u64, n + 1);
            while no - yes > 1 {
                let mid = yes + (no - yes) / 2;
                if ready(mid, n) {
                    yes = mid;
                } else {
                    no = mid;
                }
            }
            yes as i64
        })
        .collect()
}

/// The three rules' tables for one criterion.
struct Rules {
    policy: Vec<i64>,
    point_estimate: Vec<i64>,
    jeffreys: Vec<i64>,
}

impl Rules {
    fn of(criterion: Criterion) -> Self {
        let criteria = criterion.criteria();
        let limit = criterion.limit();
        let policy =
            thresholds(|k, n| verdicts(&criterion.snapshot(k, n), &criteria).overall.ready);
        // Before 3.1: READY once `min_requests` were seen and the observed rate was
        // within the limit.
        let point_estimate = thresholds(|k, n| n >= MIN_REQUESTS && k as f64 <= limit * n as f64);
        // A Jeffreys posterior read as if each look were the only one.
        let jeffreys = thresholds(|k, n| {
            n >= MIN_REQUESTS && jeffreys_prob_at_most(k, n - k, limit) >= REQUIRED
        });
        Self {
            policy,
            point_estimate,
            jeffreys,
        }
    }
}

/// When each rule first said READY on one stream (`None`: never within the horizon).
#[derive(Default, Clone, Copy, Debug, PartialEq)]
struct FirstReady {
    policy: Option<u64>,
    point_estimate: Option<u64>,
    jeffreys: Option<u64>,
}

/// Draws from Binomial([`POLL_EVERY`], p) by inverting its distribution function: one
/// uniform number per look.
struct Binomial {
    cdf: Vec<f64>,
}

impl Binomial {
    fn new(p: f64) -> Self {
        let n = POLL_EVERY as i32;
        let mut cdf = Vec::new();
        let mut total = 0.0;
        let mut choose = 1.0;
        for j in 0..=n {
            if j > 0 {
                choose *= f64::from(n - j + 1) / f64::from(j);
            }
            total += choose * p.powi(j) * (1.0 - p).powi(n - j);
            cdf.push(total);
        }
        Self { cdf }
    }

    fn draw(&self, rng: &mut Rng) -> u64 {
        let u = (rng.next() >> 11) as f64 / (1u64 << 53) as f64;
        self.cdf
            .iter()
            .position(|&c| u < c)
            .unwrap_or(self.cdf.len() - 1) as u64
    }
}

/// One stream: `(k, n)` at each look, and when each rule first said READY.
fn run_stream(
    rules: &Rules,
    bad: &Binomial,
    seed: u64,
    mut look: impl FnMut(u64, u64),
) -> FirstReady {
    let mut rng = Rng(seed);
    let mut first = FirstReady::default();
    let mut k = 0u64;
    for (i, n) in (POLL_EVERY..=HORIZON)
        .step_by(POLL_EVERY as usize)
        .enumerate()
    {
        k += bad.draw(&mut rng);
        look(k, n);
        let ready = |table: &[i64]| k as i64 <= table[i];
        if first.policy.is_none() && ready(&rules.policy) {
            first.policy = Some(n);
        }
        if first.point_estimate.is_none() && ready(&rules.point_estimate) {
            first.point_estimate = Some(n);
        }
        if first.jeffreys.is_none() && ready(&rules.jeffreys) {
            first.jeffreys = Some(n);
        }
        if first.policy.is_some() && first.point_estimate.is_some() && first.jeffreys.is_some() {
            break;
        }
    }
    first
}

fn streams(rules: &Rules, p: f64, count: u64) -> Vec<FirstReady> {
    let bad = Binomial::new(p);
    (0..count)
        .map(|i| run_stream(rules, &bad, 0x5eed_0000 + i * 7919, |_, _| {}))
        .collect()
}

fn fraction(results: &[FirstReady], pick: fn(&FirstReady) -> Option<u64>) -> f64 {
    results.iter().filter(|r| pick(r).is_some()).count() as f64 / results.len() as f64
}

/// The median first-READY request count (streams never READY count as beyond the
/// horizon).
fn median(results: &[FirstReady], pick: fn(&FirstReady) -> Option<u64>) -> u64 {
    let mut v: Vec<u64> = results
        .iter()
        .map(|r| pick(r).unwrap_or(u64::MAX))
        .collect();
    v.sort_unstable();
    v[v.len() / 2]
}

const CRITERIA: [Criterion; 3] = [Criterion::ErrorRate, Criterion::P99, Criterion::Mismatch];

#[test]
fn ever_ready_at_the_limit_and_time_to_ready_at_half_of_it() {
    const AT_LIMIT: u64 = 10_000;
    const AT_HALF: u64 = 1_000;
    println!(
        "| criterion | streams at the limit | ever READY: policy | point estimate | Jeffreys >= 95% at every look | streams at half | READY within 100,000 | median requests to READY at half the limit: policy | fixed-sample Jeffreys |"
    );
    println!("|---|---|---|---|---|---|---|---|---|");
    for criterion in CRITERIA {
        let rules = Rules::of(criterion);
        let limit = criterion.limit();
        let at_limit = streams(&rules, limit, AT_LIMIT);
        let at_half = streams(&rules, limit / 2.0, AT_HALF);
        let ever = fraction(&at_limit, |r| r.policy);
        let ever_point = fraction(&at_limit, |r| r.point_estimate);
        let ever_jeffreys = fraction(&at_limit, |r| r.jeffreys);
        let median_policy = median(&at_half, |r| r.policy);
        let median_jeffreys = median(&at_half, |r| r.jeffreys);
        let reached = fraction(&at_half, |r| r.policy);
        println!(
            "| {} | {AT_LIMIT} | {:.2}% | {:.1}% | {:.1}% | {AT_HALF} | {:.1}% | {median_policy} | {median_jeffreys} |",
            criterion.name(),
            100.0 * ever,
            100.0 * ever_point,
            100.0 * ever_jeffreys,
            100.0 * reached,
        );
        assert!(ever <= 1.0 - REQUIRED, "{criterion:?}: {ever}");
        // The rule before: READY at the limit in most streams, sooner or later.
        assert!(ever_point > 0.5, "{criterion:?}: {ever_point}");
        // Nearly every stream at half the limit gets there, later than a single
        // fixed-sample look would (the price of looking as often as one likes).
        assert!(reached >= 0.95, "{criterion:?}: {reached}");
        assert!(median_policy > median_jeffreys, "{criterion:?}");
        assert!(
            median_policy < HORIZON / 2,
            "{criterion:?}: {median_policy}"
        );
    }
}

/// The tables are the policy: streams judged by calling `verdicts` at every look say
/// READY exactly when the table does.
#[test]
fn tables_agree_with_the_policy_at_every_look() {
    for criterion in CRITERIA {
        let rules = Rules::of(criterion);
        let criteria = criterion.criteria();
        for (p, seed) in [
            (criterion.limit(), 11),
            (criterion.limit() / 2.0, 12),
            (criterion.limit() * 0.8, 13),
        ] {
            let bad = Binomial::new(p);
            let mut direct: Option<u64> = None;
            let first = run_stream(&rules, &bad, seed, |k, n| {
                if direct.is_none() && verdicts(&criterion.snapshot(k, n), &criteria).overall.ready
                {
                    direct = Some(n);
                }
            });
            assert_eq!(
                first.policy.is_some(),
                direct.is_some(),
                "{criterion:?} at {p}"
            );
            if let Some(n) = first.policy {
                assert_eq!(Some(n), direct, "{criterion:?} at {p}");
            }
        }
    }
}
