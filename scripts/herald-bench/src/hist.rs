//! Latency histogram: log-linear buckets (32 per power of two, about 3 %
//! precision) with an exact maximum. One histogram per worker thread, written
//! with relaxed atomics that no other thread touches while the run is on, so
//! recording a delivery costs a few nanoseconds and no lock; merged at the end.

use std::cell::Cell;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};

const SUB_BITS: u32 = 5;
const SUB: usize = 1 << SUB_BITS;
const BUCKETS: usize = 64 * SUB;
const SLOTS: usize = 16;

pub struct Hist {
    buckets: [AtomicU64; BUCKETS],
    max: AtomicU64,
}

impl Hist {
    const fn new() -> Self {
        Hist { buckets: [const { AtomicU64::new(0) }; BUCKETS], max: AtomicU64::new(0) }
    }
}

static HISTS: [Hist; SLOTS] = [const { Hist::new() }; SLOTS];
static NEXT_SLOT: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    static SLOT: Cell<usize> = const { Cell::new(usize::MAX) };
}

fn index(v: u64) -> usize {
    if v < SUB as u64 {
        return v as usize;
    }
    let e = 63 - v.leading_zeros(); // >= SUB_BITS
    let m = (v >> (e - SUB_BITS)) as usize & (SUB - 1);
    (e - SUB_BITS + 1) as usize * SUB + m
}

/// The middle of bucket `i`.
fn value(i: usize) -> u64 {
    if i < SUB {
        return i as u64;
    }
    let e = (i / SUB) as u32 + SUB_BITS - 1;
    let m = (i % SUB) as u64;
    let lo = (SUB as u64 + m) << (e - SUB_BITS);
    lo + (1u64 << (e - SUB_BITS)) / 2
}

/// Records one latency (ns) in this thread's histogram.
pub fn record(v: u64) {
    let slot = SLOT.with(|s| {
        if s.get() == usize::MAX {
            s.set(NEXT_SLOT.fetch_add(1, Relaxed) % SLOTS);
        }
        s.get()
    });
    let h = &HISTS[slot];
    h.buckets[index(v)].fetch_add(1, Relaxed);
    if v > h.max.load(Relaxed) {
        h.max.fetch_max(v, Relaxed);
    }
}

/// Merged view of every thread's histogram.
pub struct Summary {
    counts: Vec<u64>,
    pub count: u64,
    pub max: u64,
}

pub fn summary() -> Summary {
    let mut counts = vec![0u64; BUCKETS];
    let mut max = 0;
    for h in &HISTS {
        for (c, b) in counts.iter_mut().zip(h.buckets.iter()) {
            *c += b.load(Relaxed);
        }
        max = max.max(h.max.load(Relaxed));
    }
    let count = counts.iter().sum();
    Summary { counts, count, max }
}

/// Clears every histogram (between measured phases).
pub fn reset() {
    for h in &HISTS {
        for b in h.buckets.iter() {
            b.store(0, Relaxed);
        }
        h.max.store(0, Relaxed);
    }
}

impl Summary {
    /// The q-quantile (0..=1) in ns; the exact maximum for q = 1.
    pub fn quantile(&self, q: f64) -> u64 {
        if self.count == 0 {
            return 0;
        }
        if q >= 1.0 {
            return self.max;
        }
        let rank = ((q * self.count as f64).ceil() as u64).max(1);
        let mut seen = 0;
        for (i, &c) in self.counts.iter().enumerate() {
            seen += c;
            if seen >= rank {
                return value(i).min(self.max);
            }
        }
        self.max
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_monotonic_and_precise() {
        let mut last = 0;
        for v in (0..2_000_000u64).step_by(7).chain([u64::MAX / 4, 1 << 40]) {
            let i = index(v);
            assert!(i < BUCKETS);
            assert!(i >= last || v == u64::MAX / 4 || v == 1 << 40);
            last = i;
            let back = value(i);
            let err = (back as f64 - v as f64).abs() / (v.max(1) as f64);
            assert!(err <= 0.04 || v < SUB as u64 * 2, "{v} -> {back}");
        }
    }
}
