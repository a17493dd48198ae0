//! The exposition, assembled in name order from families written as their data arrives.

use std::sync::atomic::Ordering;

use super::scrape::{Scrape, Source, View};
use super::text::Writer;
use super::Metrics;

/// An exposition being written: each family is handed to `emit` as soon as it is
/// written and its turn in name order has come; one written earlier waits aside (the
/// pool families, say, wait for the mirror ones, whose data comes later).
pub struct Assembly<'m, E: FnMut(Vec<u8>)> {
    metrics: &'m Metrics,
    aside: Vec<Option<Vec<u8>>>,
    /// The first family not handed out yet.
    next: usize,
    emit: E,
}

impl<'m, E: FnMut(Vec<u8>)> Assembly<'m, E> {
    pub fn new(metrics: &'m Metrics, emit: E) -> Self {
        Self {
            metrics,
            aside: metrics.entries.iter().map(|_| None).collect(),
            next: 0,
            emit,
        }
    }

    /// Writes the families of `source` and hands out those whose turn has come.
    pub fn write(&mut self, scrape: &Scrape, source: Source) {
        let view = View::new(scrape, source);
        for (i, entry) in self.metrics.entries.iter().enumerate() {
            if entry.source() == source {
                let size = &self.metrics.last_sizes[i];
                let mut w = Writer::from(Vec::with_capacity(size.load(Ordering::Relaxed) + 256));
                entry.write(&mut w, &view);
                size.store(w.len(), Ordering::Relaxed);
                self.aside[i] = Some(w.into_bytes());
            }
        }
        while let Some(part) = self.aside.get_mut(self.next).and_then(Option::take) {
            self.hand_out(part);
            self.next += 1;
        }
    }

    /// Hands out the rest, once no more data will come (families whose data never
    /// came, say without a readiness plugin, are left out).
    pub fn finish(mut self) {
        for i in self.next..self.aside.len() {
            if let Some(part) = self.aside[i].take() {
                self.hand_out(part);
            }
        }
    }

    fn hand_out(&mut self, part: Vec<u8>) {
        if !part.is_empty() {
            (self.emit)(part);
        }
    }
}
