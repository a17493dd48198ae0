//! Special functions for confidence scores: `ln Γ` and the regularised incomplete beta
//! function `I_x(a, b)`, i.e. the CDF of a Beta(a, b) distribution at `x`.
//!
//! Policies use it for posterior probabilities: with `e` errors in `n` attempts and a
//! Jeffreys prior, the error rate `p` is Beta(e + ½, n − e + ½) distributed, so
//! `P(p ≤ limit) = I_limit(e + ½, n − e + ½)`.
//!
//! [`anytime`] turns counts into anytime-valid confidence that a rate is within a limit
//! (the readiness criteria of the bundled policy).
//!
//! Maths, not interface: it used to sit in `pgdog-plugin-api` as `math`, and moved here so
//! that the ABI crate holds only what crosses the plugin boundary. The bundled policies
//! (`mirror-stats`, `strict-readiness`) depend on it; so can any plugin, by path, git or
//! version, with no effect on the plugin ABI.

pub mod anytime;

/// `ln Γ(x)` for `x > 0` (Lanczos approximation, g = 7, 9 terms; ~15 significant digits).
pub fn ln_gamma(x: f64) -> f64 {
    const G: f64 = 7.0;
    const COEF: [f64; 9] = [
        0.999_999_999_999_809_9,
        676.520_368_121_885_1,
        -1_259.139_216_722_402_8,
        771.323_428_777_653_1,
        -176.615_029_162_140_6,
        12.507_343_278_686_905,
        -0.138_571_095_265_720_12,
        9.984_369_578_019_572e-6,
        1.505_632_735_149_311_6e-7,
    ];
    if x < 0.5 {
        // Reflection: Γ(x)Γ(1−x) = π / sin(πx).
        let pi = std::f64::consts::PI;
        return (pi / (pi * x).sin()).ln() - ln_gamma(1.0 - x);
    }
    let x = x - 1.0;
    let mut sum = COEF[0];
    for (i, c) in COEF.iter().enumerate().skip(1) {
        sum += c / (x + i as f64);
    }
    let t = x + G + 0.5;
    0.5 * (2.0 * std::f64::consts::PI).ln() + (x + 0.5) * t.ln() - t + sum.ln()
}

/// The regularised incomplete beta function `I_x(a, b)` for `a, b > 0`, `x` in [0, 1].
///
/// Evaluated with the continued fraction for the incomplete beta (modified Lentz
/// method), using the symmetry `I_x(a, b) = 1 − I_{1−x}(b, a)` on the side where the
/// fraction converges quickly.
pub fn incomplete_beta(a: f64, b: f64, x: f64) -> f64 {
    if x.is_nan() || a <= 0.0 || b <= 0.0 {
        return f64::NAN;
    }
    if x <= 0.0 {
        return 0.0;
    }
    if x >= 1.0 {
        return 1.0;
    }
    // x^a (1−x)^b / B(a, b), in logs to survive large a and b.
    let ln_front = ln_gamma(a + b) - ln_gamma(a) - ln_gamma(b) + a * x.ln() + b * (1.0 - x).ln();
    let front = ln_front.exp();
    if x < (a + 1.0) / (a + b + 2.0) {
        front * incomplete_beta_fraction(a, b, x) / a
    } else {
        1.0 - front * incomplete_beta_fraction(b, a, 1.0 - x) / b
    }
}

/// The continued fraction `1 / (1 + d1 / (1 + d2 / (1 + ...)))` of the incomplete beta.
pub(crate) fn incomplete_beta_fraction(a: f64, b: f64, x: f64) -> f64 {
    const TINY: f64 = 1e-300;
    const EPS: f64 = 1e-15;
    // Convergence takes O(sqrt(max(a, b))) terms; this covers counts far beyond 10^9.
    const MAX_TERMS: u32 = 200_000;
    let guard = |v: f64| if v.abs() < TINY { TINY } else { v };

    let mut c = 1.0;
    let mut d = 1.0 / guard(1.0 - (a + b) * x / (a + 1.0));
    let mut h = d;
    for m in 1..=MAX_TERMS {
        let m = f64::from(m);
        let two_m = 2.0 * m;
        // Even step: d_{2m} = m (b − m) x / ((a + 2m − 1)(a + 2m)).
        let num = m * (b - m) * x / ((a + two_m - 1.0) * (a + two_m));
        d = 1.0 / guard(1.0 + num * d);
        c = guard(1.0 + num / c);
        h *= d * c;
        // Odd step: d_{2m+1} = −(a + m)(a + b + m) x / ((a + 2m)(a + 2m + 1)).
        let num = -(a + m) * (a + b + m) * x / ((a + two_m) * (a + two_m + 1.0));
        d = 1.0 / guard(1.0 + num * d);
        c = guard(1.0 + num / c);
        let delta = d * c;
        h *= delta;
        if (delta - 1.0).abs() < EPS {
            break;
        }
    }
    h
}

/// `P(p ≤ limit)` for a success/failure rate `p` after `failures` in `failures + successes`
/// trials, under the Jeffreys prior Beta(½, ½).
pub fn jeffreys_prob_at_most(failures: u64, successes: u64, limit: f64) -> f64 {
    incomplete_beta(failures as f64 + 0.5, successes as f64 + 0.5, limit)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64, tol: f64) -> bool {
        (a - b).abs() <= tol
    }

    #[test]
    fn ln_gamma_known_values() {
        assert!(close(ln_gamma(1.0), 0.0, 1e-13));
        assert!(close(ln_gamma(2.0), 0.0, 1e-13));
        assert!(close(ln_gamma(5.0), 24f64.ln(), 1e-12));
        // Γ(½) = √π
        assert!(close(
            ln_gamma(0.5),
            std::f64::consts::PI.sqrt().ln(),
            1e-13
        ));
        // ln Γ(100) = ln 99!
        let ln_99_fact: f64 = (1..100).map(|k| (k as f64).ln()).sum();
        assert!(close(ln_gamma(100.0), ln_99_fact, 1e-9));
        assert!(close(ln_gamma(0.1), 2.252_712_651_734_206, 1e-12));
    }

    #[test]
    fn incomplete_beta_closed_forms() {
        for &x in &[0.001, 0.05, 0.3, 0.5, 0.77, 0.999] {
            // I_x(1, 1) = x
            assert!(close(incomplete_beta(1.0, 1.0, x), x, 1e-13));
            // I_x(a, 1) = x^a
            assert!(close(incomplete_beta(3.5, 1.0, x), x.powf(3.5), 1e-12));
            // I_x(1, b) = 1 − (1 − x)^b
            let v = 1.0 - (1.0 - x).powf(42.0);
            assert!(close(incomplete_beta(1.0, 42.0, x), v, 1e-12));
            // I_x(½, ½) = (2/π) asin(√x)
            let v = 2.0 / std::f64::consts::PI * x.sqrt().asin();
            assert!(close(incomplete_beta(0.5, 0.5, x), v, 1e-12));
        }
        // Symmetric case.
        assert!(close(incomplete_beta(7.3, 7.3, 0.5), 0.5, 1e-13));
        assert!(close(incomplete_beta(5000.5, 5000.5, 0.5), 0.5, 1e-10));
    }

    /// I_p(k, n − k + 1) = P(X ≥ k) for X ~ Binomial(n, p).
    #[test]
    fn incomplete_beta_matches_binomial_tail() {
        let (n, p) = (100u64, 0.05f64);
        let ln_choose = |n: u64, k: u64| {
            ln_gamma(n as f64 + 1.0) - ln_gamma(k as f64 + 1.0) - ln_gamma((n - k) as f64 + 1.0)
        };
        for k in [1u64, 3, 5, 8, 20] {
            let tail: f64 = (k..=n)
                .map(|j| {
                    (ln_choose(n, j) + j as f64 * p.ln() + (n - j) as f64 * (1.0 - p).ln()).exp()
                })
                .sum();
            let ib = incomplete_beta(k as f64, (n - k + 1) as f64, p);
            assert!(close(ib, tail, 1e-10), "k={k}: {ib} vs {tail}");
        }
    }

    #[test]
    fn incomplete_beta_edges() {
        assert_eq!(incomplete_beta(2.0, 3.0, 0.0), 0.0);
        assert_eq!(incomplete_beta(2.0, 3.0, 1.0), 1.0);
        assert!(incomplete_beta(0.0, 3.0, 0.5).is_nan());
        // Huge counts stay in range and monotone.
        let lo = incomplete_beta(0.5, 1_000_000.5, 1e-7);
        let hi = incomplete_beta(0.5, 1_000_000.5, 1e-5);
        assert!((0.0..=1.0).contains(&lo) && lo < hi && hi > 0.99);
    }
}
