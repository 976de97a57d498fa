//! Latency histogram: log-linear buckets (128 per power of two, so any reported value is within
//! 0.8% of a recorded one), exact count/min/max/sum, mergeable so every task records into its own
//! histogram and the scenario merges them at the end. Values are nanoseconds.

use serde::Serialize;

/// Sub-buckets per power of two, as a bit count.
const SUB_BITS: u32 = 7;
const SUB: u64 = 1 << SUB_BITS;
/// Values are clamped to 2^40 ns (about 18 minutes): far beyond any bounded run.
const MAX_EXP: u32 = 40;
const BUCKETS: usize = ((MAX_EXP - SUB_BITS + 2) as usize) * SUB as usize;

/// A mergeable latency histogram of nanosecond values.
#[derive(Clone)]
pub struct Histogram {
    counts: Vec<u64>,
    count: u64,
    min: u64,
    max: u64,
    sum: u128,
}

/// The percentiles a report shows, in microseconds.
#[derive(Debug, Clone, Copy, Serialize, PartialEq)]
pub struct Summary {
    pub count: u64,
    pub p50_us: f64,
    pub p90_us: f64,
    pub p99_us: f64,
    pub max_us: f64,
    pub mean_us: f64,
}

impl Default for Histogram {
    fn default() -> Self {
        Self::new()
    }
}

fn bucket_of(v: u64) -> usize {
    let v = v.min((1u64 << (MAX_EXP + 1)) - 1);
    if v < SUB {
        return v as usize;
    }
    let exp = 63 - v.leading_zeros(); // >= SUB_BITS
    let shift = exp - SUB_BITS;
    ((shift as u64 + 1) * SUB + ((v >> shift) - SUB)) as usize
}

/// The value a bucket stands for: the middle of its range.
fn value_of(bucket: usize) -> u64 {
    let b = bucket as u64;
    if b < SUB {
        return b;
    }
    let shift = b / SUB - 1;
    let low = (SUB + b % SUB) << shift;
    low + ((1u64 << shift) >> 1)
}

impl Histogram {
    pub fn new() -> Self {
        Histogram {
            counts: vec![0; BUCKETS],
            count: 0,
            min: u64::MAX,
            max: 0,
            sum: 0,
        }
    }

    pub fn record(&mut self, v: u64) {
        self.counts[bucket_of(v)] += 1;
        self.count += 1;
        self.min = self.min.min(v);
        self.max = self.max.max(v);
        self.sum += v as u128;
    }

    pub fn merge(&mut self, other: &Histogram) {
        for (a, b) in self.counts.iter_mut().zip(&other.counts) {
            *a += *b;
        }
        self.count += other.count;
        self.min = self.min.min(other.min);
        self.max = self.max.max(other.max);
        self.sum += other.sum;
    }

    pub fn count(&self) -> u64 {
        self.count
    }

    /// The value at quantile `q` (0.0..=1.0), clamped to the observed min and max;
    /// `None` when nothing was recorded.
    pub fn quantile(&self, q: f64) -> Option<u64> {
        if self.count == 0 {
            return None;
        }
        if q >= 1.0 {
            return Some(self.max);
        }
        let rank = ((q.clamp(0.0, 1.0) * self.count as f64).ceil() as u64).max(1);
        let mut seen = 0;
        for (i, c) in self.counts.iter().enumerate() {
            seen += c;
            if seen >= rank {
                return Some(value_of(i).clamp(self.min, self.max));
            }
        }
        Some(self.max)
    }

    pub fn summary(&self) -> Summary {
        let us = |v: Option<u64>| v.map_or(0.0, |n| n as f64 / 1000.0);
        Summary {
            count: self.count,
            p50_us: us(self.quantile(0.50)),
            p90_us: us(self.quantile(0.90)),
            p99_us: us(self.quantile(0.99)),
            max_us: if self.count == 0 {
                0.0
            } else {
                self.max as f64 / 1000.0
            },
            mean_us: if self.count == 0 {
                0.0
            } else {
                (self.sum / self.count as u128) as f64 / 1000.0
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: u64, b: u64) -> bool {
        let (a, b) = (a as f64, b as f64);
        (a - b).abs() <= b * 0.008 + 1.0
    }

    #[test]
    fn empty_histogram_has_no_quantiles() {
        let h = Histogram::new();
        assert_eq!(h.quantile(0.5), None);
        assert_eq!(h.summary().count, 0);
        assert_eq!(h.summary().max_us, 0.0);
    }

    #[test]
    fn small_values_are_exact() {
        let mut h = Histogram::new();
        for v in [3, 1, 2] {
            h.record(v);
        }
        assert_eq!(h.quantile(0.0), Some(1));
        assert_eq!(h.quantile(0.5), Some(2));
        assert_eq!(h.quantile(1.0), Some(3));
    }

    #[test]
    fn uniform_values_give_percentiles_within_one_percent() {
        let mut h = Histogram::new();
        for v in 1..=100_000u64 {
            h.record(v * 1000);
        }
        assert!(close(h.quantile(0.5).unwrap(), 50_000_000));
        assert!(close(h.quantile(0.9).unwrap(), 90_000_000));
        assert!(close(h.quantile(0.99).unwrap(), 99_000_000));
        assert_eq!(h.quantile(1.0), Some(100_000_000));
        let s = h.summary();
        assert_eq!(s.max_us, 100_000.0);
        assert!((s.mean_us - 50_000.5).abs() < 1.0);
    }

    #[test]
    fn every_bucket_maps_back_into_itself() {
        for v in [
            127u64,
            128,
            129,
            255,
            256,
            1_000,
            65_535,
            1 << 30,
            (1 << 41) - 1,
        ] {
            let b = bucket_of(v);
            assert_eq!(bucket_of(value_of(b)), b, "value {v}");
        }
        assert!(bucket_of(u64::MAX) < BUCKETS);
    }

    #[test]
    fn merge_adds_counts_and_keeps_extremes() {
        let mut a = Histogram::new();
        let mut b = Histogram::new();
        a.record(10_000);
        b.record(5);
        b.record(1_000_000);
        a.merge(&b);
        assert_eq!(a.count(), 3);
        assert_eq!(a.quantile(0.0), Some(5));
        assert_eq!(a.quantile(1.0), Some(1_000_000));
        assert!(close(a.quantile(0.5).unwrap(), 10_000));
    }
}
