//! Recent samples of one measure (replication lag, the delay gating added) and their
//! quantiles: what the lag metrics and the readiness criterion read.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// Most samples kept, whatever the window: at one round per millisecond, one minute.
const MAX_SAMPLES: usize = 60_000;

/// Quantiles of a window's samples.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Summary {
    pub samples: u64,
    pub p50: f64,
    pub p99: f64,
    pub max: f64,
}

/// The samples of the last `span`.
#[derive(Debug)]
pub struct Window {
    span: Duration,
    samples: VecDeque<(Instant, f64)>,
}

impl Window {
    pub fn new(span: Duration) -> Window {
        Window {
            span,
            samples: VecDeque::new(),
        }
    }

    pub fn record(&mut self, at: Instant, value: f64) {
        if self.samples.len() == MAX_SAMPLES {
            self.samples.pop_front();
        }
        self.samples.push_back((at, value));
    }

    /// Forgets the samples older than the window before `now`.
    fn trim(&mut self, now: Instant) {
        while let Some(&(at, _)) = self.samples.front() {
            if now.saturating_duration_since(at) <= self.span {
                break;
            }
            self.samples.pop_front();
        }
    }

    /// The quantiles of the samples of the window before `now` (nearest rank).
    pub fn summary(&mut self, now: Instant) -> Summary {
        self.trim(now);
        let mut values: Vec<f64> = self.samples.iter().map(|&(_, v)| v).collect();
        if values.is_empty() {
            return Summary::default();
        }
        values.sort_by(f64::total_cmp);
        let rank =
            |q: f64| values[((q * values.len() as f64).ceil() as usize).clamp(1, values.len()) - 1];
        Summary {
            samples: values.len() as u64,
            p50: rank(0.5),
            p99: rank(0.99),
            max: values[values.len() - 1],
        }
    }

    pub fn clear(&mut self) {
        self.samples.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_of_the_recent_samples() {
        let t0 = Instant::now();
        let mut w = Window::new(Duration::from_secs(5));
        assert_eq!(w.summary(t0), Summary::default());
        for i in 1..=100 {
            w.record(t0, f64::from(i));
        }
        let s = w.summary(t0);
        assert_eq!((s.samples, s.p50, s.p99, s.max), (100, 50.0, 99.0, 100.0));
        // Six seconds on, they are out of the window.
        w.record(t0 + Duration::from_secs(6), 7.0);
        let s = w.summary(t0 + Duration::from_secs(6));
        assert_eq!((s.samples, s.p50, s.max), (1, 7.0, 7.0));
    }
}
