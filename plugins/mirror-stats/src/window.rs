//! Latency of the most recent mirrored requests: the `mirror{stat=...}` gauges.
//!
//! Like PgBouncer's `stats_period`, these describe recent traffic, not the lifetime
//! (that is the histogram in the snapshot). A ring of one-second slots, each holding
//! count, sum and max of the latencies of requests the mirror executed successfully in
//! that second; reading sums the slots younger than the window. Fixed memory, O(window)
//! per read, O(1) per event.

/// One second of successful mirror latencies.
#[derive(Debug, Clone, Copy, Default)]
struct Slot {
    /// Unix second this slot holds; a slot from an older lap of the ring is stale.
    second: u64,
    count: u64,
    sum_us: u64,
    max_us: u64,
}

/// Latency over the last `secs` seconds.
#[derive(Debug, Clone)]
pub struct Window {
    slots: Vec<Slot>,
}

/// What a window read returns.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct WindowStats {
    pub samples: u64,
    /// Mean latency in ms, rounded to the microsecond (0 when no samples).
    pub avg_ms: f64,
    /// Highest latency in ms (0 when no samples).
    pub max_ms: f64,
}

impl Window {
    /// A window of `secs` seconds (at least one).
    pub fn new(secs: u64) -> Self {
        Self {
            slots: vec![Slot::default(); secs.max(1) as usize],
        }
    }

    pub fn secs(&self) -> u64 {
        self.slots.len() as u64
    }

    /// Records one successful request that finished at `at_unix_us`.
    pub fn record(&mut self, at_unix_us: u64, latency_us: u64) {
        let second = at_unix_us / 1_000_000;
        let len = self.secs();
        let slot = &mut self.slots[(second % len) as usize];
        if slot.second != second {
            if slot.second > second {
                // Older than the slot's current second: already outside any window
                // that still holds this slot (late events from a previous lap).
                return;
            }
            *slot = Slot {
                second,
                ..Slot::default()
            };
        }
        slot.count += 1;
        slot.sum_us = slot.sum_us.saturating_add(latency_us);
        slot.max_us = slot.max_us.max(latency_us);
    }

    /// Requests of the last `secs` seconds up to `now_unix_us` (the current, partial
    /// second included).
    pub fn read(&self, now_unix_us: u64) -> WindowStats {
        let now = now_unix_us / 1_000_000;
        let oldest = (now + 1).saturating_sub(self.secs());
        let (mut count, mut sum_us, mut max_us) = (0u64, 0u64, 0u64);
        for s in self
            .slots
            .iter()
            .filter(|s| s.count > 0 && (oldest..=now).contains(&s.second))
        {
            count += s.count;
            sum_us = sum_us.saturating_add(s.sum_us);
            max_us = max_us.max(s.max_us);
        }
        if count == 0 {
            return WindowStats::default();
        }
        WindowStats {
            samples: count,
            avg_ms: (sum_us as f64 / count as f64).round() / 1000.0,
            max_ms: max_us as f64 / 1000.0,
        }
    }

    pub fn clear(&mut self) {
        self.slots.fill(Slot::default());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: u64 = 1_000_000;

    #[test]
    fn only_the_last_seconds_count() {
        let mut w = Window::new(5);
        // A hundred fast requests at t = 100 s...
        for _ in 0..100 {
            w.record(100 * S, 1_000);
        }
        // ...then ten slow ones six seconds later.
        for _ in 0..10 {
            w.record(106 * S + 500, 100_400);
        }
        let r = w.read(106 * S + 900_000);
        assert_eq!(r.samples, 10);
        assert_eq!(r.avg_ms, 100.4);
        assert_eq!(r.max_ms, 100.4);
        // Both groups inside a window that reaches back far enough.
        let r = w.read(104 * S);
        assert_eq!(r.samples, 100);
        assert_eq!(r.avg_ms, 1.0);
        // Nothing after the window has passed.
        assert_eq!(w.read(120 * S), WindowStats::default());
    }

    #[test]
    fn ring_reuse_and_late_events() {
        let mut w = Window::new(2);
        w.record(10 * S, 2_000);
        w.record(12 * S, 4_000); // same slot, newer second: replaces
        w.record(10 * S, 9_000_000); // late event from an older lap: ignored
        let r = w.read(12 * S);
        assert_eq!((r.samples, r.avg_ms, r.max_ms), (1, 4.0, 4.0));
        w.clear();
        assert_eq!(w.read(12 * S).samples, 0);
        assert_eq!(Window::new(0).secs(), 1);
    }

    #[test]
    fn averages_round_to_the_microsecond() {
        let mut w = Window::new(5);
        for us in [1_000, 1_000, 1_001] {
            w.record(50 * S, us);
        }
        assert_eq!(w.read(50 * S).avg_ms, 1.0); // 1000.33 us
    }
}
