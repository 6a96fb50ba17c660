//! OTLP exponential histograms as explicit buckets, so they share the explicit
//! histograms' intervals and quantiles (`rates.rs`). Bucket `i` of scale `s` covers
//! `(base^i, base^(i+1)]` with `base = 2^(2^-s)`; negative buckets mirror it below zero, and
//! the zero bucket (`|x| <= zero_threshold`) sits between them.
//!
//! The explicit form, in ascending bounds: the negative buckets (upper bound `-base^i`),
//! the zero bucket (upper bound `zero_threshold`), an empty bucket up to the lowest
//! positive bucket's lower bound (so interpolation starts there, not at zero), the positive
//! buckets (upper bound `base^(i+1)`), and an empty overflow bucket.

use fulcrum_engine::sample::Problem;
use opentelemetry_proto::tonic::metrics::v1::ExponentialHistogramDataPoint;

/// Buckets per point at most (the SDKs default to 160 per sign).
pub const MAX_BUCKETS: usize = 4096;

/// Fills `bounds` and `counts` (`bounds.len() + 1` of them) with `p`'s buckets, or names
/// the field that makes it unusable.
pub fn buckets(
    p: &ExponentialHistogramDataPoint,
    bounds: &mut Vec<f64>,
    counts: &mut Vec<u64>,
) -> Result<(), (&'static str, Problem)> {
    bounds.clear();
    counts.clear();
    let (positive, negative) = (p.positive.as_ref(), p.negative.as_ref());
    let sizes = positive.map_or(0, |b| b.bucket_counts.len())
        + negative.map_or(0, |b| b.bucket_counts.len());
    if sizes > MAX_BUCKETS {
        return Err((
            "positive.bucketCounts",
            Problem::WrongType {
                expected: "at most 4096 buckets",
                got: "more",
            },
        ));
    }
    // log2 of the base; base^i = 2^(i * width).
    let width = (-f64::from(p.scale)).exp2();
    let edge = |i: i64| (i as f64 * width).exp2();
    if let Some(neg) = negative {
        for (k, &count) in neg.bucket_counts.iter().enumerate().rev() {
            bounds.push(-edge(i64::from(neg.offset) + k as i64));
            counts.push(count);
        }
    }
    let zero = if p.zero_threshold.is_finite() {
        p.zero_threshold.max(0.0)
    } else {
        0.0
    };
    bounds.push(zero);
    counts.push(p.zero_count);
    if let Some(pos) = positive.filter(|b| !b.bucket_counts.is_empty()) {
        let offset = i64::from(pos.offset);
        let lowest = edge(offset);
        if lowest > zero {
            bounds.push(lowest);
            counts.push(0);
        }
        for (k, &count) in pos.bucket_counts.iter().enumerate() {
            bounds.push(edge(offset + k as i64 + 1));
            counts.push(count);
        }
    }
    counts.push(0);
    if bounds.iter().any(|b| !b.is_finite()) {
        return Err(("scale", Problem::NonFinite));
    }
    if bounds.windows(2).any(|w| w[0] >= w[1]) {
        return Err((
            "zeroThreshold",
            Problem::WrongType {
                expected: "a zero bucket below the positive buckets",
                got: "one overlapping them",
            },
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry_proto::tonic::metrics::v1::exponential_histogram_data_point::Buckets;

    #[test]
    fn buckets_are_laid_out_by_scale_and_offset() {
        let p = ExponentialHistogramDataPoint {
            scale: 1, // base sqrt(2)
            zero_count: 3,
            positive: Some(Buckets {
                offset: 2,
                bucket_counts: vec![4, 5],
            }),
            negative: Some(Buckets {
                offset: 0,
                bucket_counts: vec![1],
            }),
            ..Default::default()
        };
        let (mut b, mut c) = (Vec::new(), Vec::new());
        buckets(&p, &mut b, &mut c).unwrap();
        let s = 2f64.sqrt();
        let expected = [-1.0, 0.0, 2.0, 2.0 * s, 4.0];
        assert_eq!(b.len(), expected.len());
        assert!(
            b.iter().zip(expected).all(|(a, e)| (a - e).abs() < 1e-12),
            "{b:?}"
        );
        assert_eq!(c, [1, 3, 0, 4, 5, 0]);
    }

    #[test]
    fn unusable_points_name_their_field() {
        let p = ExponentialHistogramDataPoint {
            scale: -2000,
            positive: Some(Buckets {
                offset: 1_000_000,
                bucket_counts: vec![1],
            }),
            ..Default::default()
        };
        let (mut b, mut c) = (Vec::new(), Vec::new());
        assert_eq!(buckets(&p, &mut b, &mut c).unwrap_err().0, "scale");
    }
}
