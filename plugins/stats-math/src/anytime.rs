//! Anytime-valid evidence that a rate is within a limit, from two counts.
//!
//! A readiness criterion such as "the mirror's error rate is at most 5 %" is judged again
//! and again: an operator re-runs `SHOW MIRROR READINESS`, a deploy gate polls
//! `/readiness` every few seconds. A fixed-sample test (a p-value, a posterior
//! probability) read that way says "within the limit" sooner or later for a mirror that
//! sits exactly at it: each look is another chance to be fooled. The statistic here stays
//! valid however often, and whenever, it is read.
//!
//! With `k` bad outcomes (errors, latencies over the bound, drops, mismatches) in `n`
//! trials and a limit `L`, test the hypothesis "not ready", `H0: p ≥ L`, with the
//! e-process
//!
//! ```text
//!            ∫₀ᴸ pᵏ (1−p)ⁿ⁻ᵏ π(p) dp                B(k+½, n−k+½) · I_L(k+½, n−k+½)
//!  E(k, n) = ────────────────────────────  =  ──────────────────────────────────────    (k < nL)
//!             sup_{q ≥ L} qᵏ (1−q)ⁿ⁻ᵏ            2·asin(√L) · Lᵏ (1−L)ⁿ⁻ᵏ
//! ```
//!
//! and `E = 0` when `k ≥ nL` (the data are no evidence for the limit). `π` is the Jeffreys
//! prior Beta(½, ½) restricted to the rates within the limit, `[0, L]` (its mass there is
//! `I_L(½, ½) = (2/π) asin √L`, and `B(½, ½) = π`), `B` the beta function and `I` the
//! regularised incomplete beta function. For every `p₀ ≥ L` the mixture divided by
//! `p₀ᵏ (1−p₀)ⁿ⁻ᵏ` is a non-negative martingale with mean 1 under `p₀`, and `E` is at most
//! that ratio, so by Ville's inequality, whatever the true `p₀ ≥ L`,
//!
//! ```text
//!  P( E(kₙ, n) ≥ 1/α  for some n ) ≤ α.
//! ```
//!
//! The **confidence** is `max(0, 1 − 1/E)`: "confidence ≥ 95 %" is "E ≥ 20", and the
//! chance that a rate truly at or over its limit ever shows that, over the whole run, is at
//! most 5 %. It depends on `(k, n, L)` only, so it can be rebuilt from counters (summed over
//! a fleet of proxies by Prometheus) as well as from one process's memory. The method is a
//! one-sided mixture e-process in the sense of Howard, Ramdas, McAuliffe and Sekhon
//! ("Time-uniform, nonparametric, nonasymptotic confidence sequences", Ann. Statist. 2021)
//! and of the sequential tests for count data of Lindon et al.; the price of the
//! guarantee is more trials than a fixed-sample test needs (figures in `docs/plugins.md`).
//!
//! Assumption: trials are exchangeable (each has the same chance of being bad). Bursts
//! (a mirror that fails for a minute, then recovers) violate it; no count-based method
//! can see them, which is why readiness also asks for a minimum observation window.

use crate::{incomplete_beta_fraction, ln_gamma};

/// `ln I_x(a, b)`, accurate in both tails (`I` close to 0 and close to 1).
pub fn ln_incomplete_beta(a: f64, b: f64, x: f64) -> f64 {
    if x.is_nan() || a <= 0.0 || b <= 0.0 {
        return f64::NAN;
    }
    if x <= 0.0 {
        return f64::NEG_INFINITY;
    }
    if x >= 1.0 {
        return 0.0;
    }
    let ln_front = -ln_beta(a, b) + a * x.ln() + b * (-x).ln_1p();
    if x < (a + 1.0) / (a + b + 2.0) {
        ln_front + (incomplete_beta_fraction(a, b, x) / a).ln()
    } else {
        let upper = ln_front.exp() * incomplete_beta_fraction(b, a, 1.0 - x) / b;
        (-upper.min(1.0)).ln_1p()
    }
}

/// `ln B(a, b) = ln Γ(a) + ln Γ(b) − ln Γ(a + b)`.
pub fn ln_beta(a: f64, b: f64) -> f64 {
    ln_gamma(a) + ln_gamma(b) - ln_gamma(a + b)
}

/// `ln E` for `bad` of `trials` against `limit` (see the module docs), for a limit
/// strictly between 0 and 1; `-∞` when the observed rate is at or over the limit.
pub fn ln_e_value(bad: u64, trials: u64, limit: f64) -> f64 {
    ln_e_value_real(bad as f64, trials as f64, limit)
}

/// [`ln_e_value`] for real-valued counts (used to extrapolate at a given rate).
fn ln_e_value_real(k: f64, n: f64, limit: f64) -> f64 {
    if !(limit > 0.0 && limit < 1.0) || k >= n * limit {
        return f64::NEG_INFINITY;
    }
    let upper = ln_likelihood_ratio_bound(k, n, limit);
    if upper <= 0.0 {
        // E is at most the maximum likelihood ratio, here ≤ 1: no evidence at all.
        return upper.min(0.0);
    }
    let (a, b) = (k + 0.5, n - k + 0.5);
    let ln_mixture =
        ln_beta(a, b) + ln_incomplete_beta(a, b, limit) - (2.0 * limit.sqrt().asin()).ln();
    let ln_null = k * limit.ln() + (n - k) * (-limit).ln_1p();
    // The mixture cannot beat the best rate within the limit (rounding aside).
    (ln_mixture - ln_null).min(upper)
}

/// `ln` of the largest likelihood ratio of any rate `≤ L` against `L`: an upper bound of
/// `ln E`, cheap to compute (`k ln(p̂/L) + (n−k) ln((1−p̂)/(1−L))`, `p̂ = k/n`).
fn ln_likelihood_ratio_bound(k: f64, n: f64, limit: f64) -> f64 {
    if n <= 0.0 {
        return 0.0;
    }
    let rate = k / n;
    let bad = if k > 0.0 {
        k * (rate / limit).ln()
    } else {
        0.0
    };
    bad + (n - k) * ((-rate).ln_1p() - (-limit).ln_1p())
}

/// The anytime-valid confidence, in [0, 1], that the true rate is within `limit` after
/// `bad` of `trials`: `max(0, 1 − 1/E)`. A limit of 0 is a hard rule (1 without a bad
/// outcome, 0 with any); a limit of 1 or more always holds.
pub fn confidence_within(bad: u64, trials: u64, limit: f64) -> f64 {
    if limit >= 1.0 {
        return 1.0;
    }
    if limit <= 0.0 || limit.is_nan() {
        return if bad == 0 { 1.0 } else { 0.0 };
    }
    confidence_of(ln_e_value(bad, trials, limit))
}

fn confidence_of(ln_e: f64) -> f64 {
    if ln_e <= 0.0 {
        0.0
    } else {
        // 1 − 1/E = 1 − e^(−ln E), without cancellation for E close to 1.
        -(-ln_e).exp_m1()
    }
}

/// Trials after which, if bad outcomes kept coming at the rate seen so far, the
/// confidence would reach `target`: `Some(trials)` when already reached, `None` when the
/// observed rate is not below the limit (more of the same never convinces). An estimate
/// for the reader ("about 400 more requests"), not a promise.
pub fn trials_needed(bad: u64, trials: u64, limit: f64, target: f64) -> Option<u64> {
    if limit >= 1.0 || confidence_within(bad, trials, limit) >= target {
        return Some(trials);
    }
    if limit <= 0.0 || target >= 1.0 || trials == 0 || bad as f64 >= trials as f64 * limit {
        return None;
    }
    let rate = bad as f64 / trials as f64;
    let reaches = |n: f64| confidence_of(ln_e_value_real(rate * n, n, limit)) >= target;
    let (mut low, mut high) = (trials as f64, trials as f64 * 2.0);
    while !reaches(high) {
        low = high;
        high *= 2.0;
        if high > 1e15 {
            return None;
        }
    }
    while high - low > 1.0 {
        let mid = ((low + high) / 2.0).floor();
        if reaches(mid) {
            high = mid;
        } else {
            low = mid;
        }
    }
    Some(high as u64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::incomplete_beta;

    fn close(a: f64, b: f64, tol: f64) -> bool {
        (a - b).abs() <= tol
    }

    #[test]
    fn log_incomplete_beta_agrees_and_keeps_its_tails() {
        for &(a, b, x) in &[
            (0.5, 0.5, 0.05),
            (3.5, 97.5, 0.05),
            (10.5, 990.5, 0.01),
            (0.5, 300.5, 0.01),
            (250.5, 5.5, 0.9),
        ] {
            let direct = incomplete_beta(a, b, x);
            assert!(
                close(ln_incomplete_beta(a, b, x).exp(), direct, 1e-12),
                "{a} {b} {x}"
            );
        }
        // Far in the tails the direct value underflows or rounds to 1; the log does not.
        let tiny = ln_incomplete_beta(500.5, 500.5, 0.01);
        assert!(tiny < -1000.0 && tiny.is_finite(), "{tiny}");
        let near_one = ln_incomplete_beta(0.5, 1e6, 0.01);
        assert!(near_one <= 0.0 && near_one > -1e-300, "{near_one}");
    }

    /// Zero bad outcomes: the mixture has a closed form through the Jeffreys prior,
    /// `M = B(½, n+½) I_L(½, n+½) / (2 asin √L)`; checked by numerical integration.
    #[test]
    fn e_value_matches_numerical_integration() {
        for &(k, n, limit) in &[
            (0u64, 100u64, 0.05),
            (3, 400, 0.05),
            (0, 300, 0.01),
            (2, 1000, 0.01),
        ] {
            // ∫₀ᴸ p^(k−½) (1−p)^(n−k−½) dp / (2 asin √L), substituting p = L s² to remove the
            // singularity at 0.
            let steps = 200_000;
            let mut integral = 0.0;
            for i in 0..steps {
                let s = (i as f64 + 0.5) / steps as f64;
                let p = limit * s * s;
                let dp = 2.0 * limit * s / steps as f64;
                integral += (p.powf(k as f64 - 0.5) * (1.0 - p).powf((n - k) as f64 - 0.5)) * dp;
            }
            let mixture = integral / (2.0 * limit.sqrt().asin());
            let null = limit.powi(k as i32) * (1.0 - limit).powi((n - k) as i32);
            let expected = (mixture / null).ln();
            let got = ln_e_value(k, n, limit);
            assert!(
                close(got, expected, 1e-6),
                "{k}/{n} at {limit}: {got} vs {expected}"
            );
        }
    }

    #[test]
    fn confidence_figures() {
        // 5 errors in 100 against 5 %: the observed rate is the limit, no evidence.
        assert_eq!(confidence_within(5, 100, 0.05), 0.0);
        assert_eq!(confidence_within(20, 100, 0.05), 0.0);
        // 0 in 100 against 5 %: E ≈ 66.
        let c = confidence_within(0, 100, 0.05);
        assert!((0.98..0.99).contains(&c), "{c}");
        // 0 in 300 against 1 %: not yet 95 % (any method needs ≥ 299 for that), 0 in 500 is.
        let c = confidence_within(0, 300, 0.01);
        assert!((0.85..0.95).contains(&c), "{c}");
        assert!(confidence_within(0, 500, 0.01) > 0.95);
        // 1 % errors in 1,000 against 5 %: overwhelming.
        assert!(confidence_within(10, 1000, 0.05) > 0.999_999);
        // Limits 0 and 1.
        assert_eq!(confidence_within(0, 0, 0.0), 1.0);
        assert_eq!(confidence_within(1, 10, 0.0), 0.0);
        assert_eq!(confidence_within(10, 10, 1.0), 1.0);
        // No trials, no evidence.
        assert_eq!(confidence_within(0, 0, 0.05), 0.0);
    }

    #[test]
    fn more_of_the_same_raises_confidence_and_huge_counts_stay_finite() {
        let mut previous = 0.0;
        for n in [100u64, 1_000, 10_000, 100_000, 1_000_000, 1_000_000_000] {
            let c = confidence_within(n / 50, n, 0.05); // 2 % against 5 %
            assert!(c >= previous && c <= 1.0, "{n}: {c}");
            previous = c;
        }
        assert_eq!(previous, 1.0);
        // A billion requests at 4.99 % against 5 %: finite, and clear evidence.
        let ln_e = ln_e_value(49_900_000, 1_000_000_000, 0.05);
        assert!(ln_e.is_finite() && ln_e > 10.0, "{ln_e}");
        // A hair under the limit is no evidence yet, and stays finite.
        let ln_e = ln_e_value(49_999_999, 1_000_000_000, 0.05);
        assert!(ln_e.is_finite() && ln_e < 0.0, "{ln_e}");
    }

    #[test]
    fn trials_needed_extrapolates_the_rate() {
        // 0 of 300 against 1 %: a few hundred requests more.
        let n = trials_needed(0, 300, 0.01, 0.95).unwrap();
        assert!((330..600).contains(&n), "{n}");
        assert!(confidence_within(0, n, 0.01) >= 0.95);
        assert!(confidence_within(0, n - 1, 0.01) < 0.95);
        // Already there.
        assert_eq!(trials_needed(0, 10_000, 0.05, 0.95), Some(10_000));
        // At or over the limit: never.
        assert_eq!(trials_needed(5, 100, 0.05, 0.95), None);
    }
}
