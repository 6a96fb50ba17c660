use super::*;

#[test]
fn series_buckets_average_and_expire() {
    let mut s = Series::new(50_000, 10_000);
    s.push(1_000, 1.0);
    s.push(9_000, 3.0);
    s.push(15_000, 10.0);
    assert_eq!(s.at(0), Some(2.0));
    assert_eq!(s.at(1), Some(10.0));
    assert_eq!(s.mean(19_999, 20_000), Some((6.0, 2)));
    // 6 slots: epoch 6 overwrites epoch 0.
    s.push(60_000, 5.0);
    assert_eq!(s.at(0), None);
    assert_eq!(s.at(6), Some(5.0));
    // A sample older than the slot's content is ignored.
    s.push(1_000, 100.0);
    assert_eq!(s.at(6), Some(5.0));
    assert_eq!(s.last_ts(), Some(60_000));
}

#[test]
fn correlation_of_linear_and_anti_linear_series() {
    let (mut a, mut b, mut c, mut flat) = (
        Series::new(100_000, 1_000),
        Series::new(100_000, 1_000),
        Series::new(100_000, 1_000),
        Series::new(100_000, 1_000),
    );
    for i in 0..20 {
        let ts = i * 1_000;
        let x = (i % 7) as f64;
        a.push(ts, x);
        b.push(ts, 2.0 * x + 1.0);
        c.push(ts, -x);
        flat.push(ts, 4.0);
    }
    let r = correlate(&a, &b, 19_000, 20_000).unwrap();
    assert!((r.r - 1.0).abs() < 1e-9 && r.points == 20);
    assert!((correlate(&a, &c, 19_000, 20_000).unwrap().r + 1.0).abs() < 1e-9);
    assert_eq!(correlate(&a, &flat, 19_000, 20_000), None);
    let mut nearly = Series::new(100_000, 1_000);
    for i in 0..20 {
        nearly.push(i * 1_000, 0.95);
    }
    assert_eq!(
        correlate(&nearly, &a, 19_000, 20_000),
        None,
        "rounding noise is not variation"
    );
    // Only the window counts.
    assert_eq!(correlate(&a, &b, 19_000, 5_000).unwrap().points, 5);
}

#[test]
fn moments_slide_with_the_window() {
    let mut m = Moments::new(32_000); // 1 s sub-buckets
    for i in 0..32 {
        m.push(i * 1_000, if i % 2 == 0 { 1.0 } else { 3.0 });
    }
    let b = m.baseline(31_000);
    assert_eq!(b.count, 32);
    assert!((b.mean - 2.0).abs() < 1e-12 && (b.std - 1.0).abs() < 1e-12);
    // 16 s later, half the window has slid out.
    let b = m.baseline(47_000);
    assert_eq!(b.count, 16);
    assert_eq!(m.baseline(100_000).count, 0);
}

/// The representation before the compact ring: a 24-byte bucket with its own epoch and an
/// `f64` sum per slot. The compact ring must agree with it within `f32` rounding.
struct Reference {
    width: i64,
    ring: Vec<(i64, f64, u32)>,
}

impl Reference {
    fn new(span: u64, width: u64) -> Self {
        let slots = (span.div_ceil(width) + 1).clamp(2, 4096) as usize;
        Self {
            width: width as i64,
            ring: vec![(i64::MIN, 0.0, 0); slots],
        }
    }

    fn push(&mut self, ts: i64, v: f64) {
        let epoch = ts.div_euclid(self.width);
        let len = self.ring.len() as i64;
        let slot = &mut self.ring[epoch.rem_euclid(len) as usize];
        if slot.0 == epoch {
            slot.1 += v;
            slot.2 += 1;
        } else if slot.0 < epoch {
            *slot = (epoch, v, 1);
        }
    }

    fn at(&self, epoch: i64) -> Option<f64> {
        let len = self.ring.len() as i64;
        let slot = self.ring[epoch.rem_euclid(len) as usize];
        (slot.0 == epoch).then(|| slot.1 / f64::from(slot.2))
    }
}

fn close(a: Option<f64>, b: Option<f64>) -> bool {
    match (a, b) {
        (Some(a), Some(b)) => (a - b).abs() <= 2e-7 * a.abs().max(b.abs()),
        (a, b) => a.is_none() && b.is_none(),
    }
}

proptest::proptest! {
    /// In order, out of order, with gaps and repeats: every bucket the ring spans holds
    /// what the per-slot-epoch ring held, to `f32` rounding.
    #[test]
    fn the_compact_ring_agrees_with_per_slot_epochs(
        steps in proptest::collection::vec((-40i64..60, 0.0f64..1e12), 1..200)
    ) {
        let (mut s, mut r) = (Series::new(60_000, 10_000), Reference::new(60_000, 10_000));
        let mut t = 0i64;
        let mut newest = i64::MIN;
        for (delta, v) in steps {
            t += delta * 1_000;
            s.push(t, v);
            r.push(t, v);
            newest = newest.max(t);
            let head = newest.div_euclid(10_000);
            for e in head - 6..=head + 1 {
                proptest::prop_assert!(close(s.at(e), r.at(e)), "epoch {e}: {:?} {:?}", s.at(e), r.at(e));
            }
            proptest::prop_assert_eq!(s.last_ts(), Some(newest));
        }
    }
}

#[test]
fn a_gap_longer_than_the_ring_empties_it() {
    let mut s = Series::new(50_000, 10_000); // 6 slots
    for i in 0..6 {
        s.push(i * 10_000, i as f64);
    }
    // A window holds at most `len - 1` buckets: epochs 1..=5.
    assert_eq!(s.mean(59_999, 60_000), Some((3.0, 5)));
    s.push(1_000_000, 7.0);
    assert_eq!(s.at(100), Some(7.0));
    for e in 0..6 {
        assert_eq!(s.at(e), None, "epoch {e} is gone");
    }
    assert_eq!(s.mean(1_000_000, 60_000), Some((7.0, 1)));
    // A gap shorter than the ring empties only the slots it passes.
    s.push(1_030_000, 8.0);
    assert_eq!(
        (s.at(100), s.at(101), s.at(103)),
        (Some(7.0), None, Some(8.0))
    );
    assert_eq!(
        s.window(1_030_000, 40_000)
            .filter(|(_, v)| v.is_some())
            .count(),
        2
    );
}

#[test]
fn out_of_order_samples_land_in_their_bucket_unless_older_than_the_ring() {
    let mut s = Series::new(50_000, 10_000);
    s.push(50_000, 5.0);
    s.push(20_000, 2.0); // an empty bucket inside the ring
    s.push(21_000, 4.0); // averaged with it
    assert_eq!(s.at(2), Some(3.0));
    s.push(51_000, 7.0);
    assert_eq!(s.at(5), Some(6.0));
    s.push(-10_000, 1.0); // older than the ring (epochs 0..=5): ignored
    assert_eq!(s.at(-1), None);
    assert_eq!(
        s.last_ts(),
        Some(51_000),
        "an older sample does not move the newest"
    );
    s.push(0, 9.0); // epoch 0 is the oldest the ring holds
    assert_eq!(s.at(0), Some(9.0));
}

#[test]
fn negative_and_extreme_timestamps() {
    let mut s = Series::new(50_000, 10_000);
    s.push(-1, 2.0);
    assert_eq!(
        (s.at(-1), s.at(0), s.last_ts()),
        (Some(2.0), None, Some(-1))
    );
    assert_eq!(s.mean(-1, 10_000), Some((2.0, 1)));
    s.push(-25_000, 4.0);
    assert_eq!(s.at(-3), Some(4.0));
    // A clock far ahead: the ring moves there, and the past is gone.
    s.push(i64::MAX - 5, 1.0);
    s.push(i64::MAX, 3.0);
    let head = i64::MAX.div_euclid(10_000);
    assert_eq!((s.at(head), s.at(-1)), (Some(2.0), None));
    assert_eq!(s.last_ts(), Some(i64::MAX));
    assert_eq!(s.mean(i64::MAX, 20_000), Some((2.0, 1)));
    // And the earliest representable instant.
    let mut early = Series::new(50_000, 1);
    early.push(i64::MIN, 1.0);
    assert_eq!(
        (early.at(i64::MIN), early.last_ts()),
        (Some(1.0), Some(i64::MIN))
    );
    early.push(i64::MIN + 3, 2.0);
    assert_eq!(early.at(i64::MIN), Some(1.0));
}

#[test]
fn values_are_stored_as_f32_and_clamped_to_its_range() {
    let mut s = Series::new(50_000, 10_000);
    s.push(0, 0.1);
    let v = s.at(0).expect("held");
    assert_ne!(v, 0.1, "stored as f32");
    assert!((v - 0.1).abs() < 1e-8);
    s.push(10_000, 1e39);
    s.push(20_000, -1e300);
    s.push(30_000, f64::INFINITY);
    s.push(40_000, f64::NAN);
    assert_eq!(s.at(1), Some(f64::from(f32::MAX)));
    assert_eq!(s.at(2), Some(-f64::from(f32::MAX)));
    assert_eq!(s.at(3), Some(f64::INFINITY), "an infinity stays one");
    assert_eq!(
        (s.at(4), s.last_ts()),
        (None, Some(30_000)),
        "NaN is ignored"
    );
}

#[test]
fn counts_appear_with_a_second_sample_in_a_bucket_and_saturate() {
    let mut s = Series::new(50_000, 10_000);
    s.push(0, 1.0);
    s.push(10_000, 2.0);
    let single = s.heap_bytes();
    assert_eq!(single, 6 * 4, "one f32 per slot");
    s.push(11_000, 4.0);
    assert!(s.heap_bytes() > single, "counts are allocated");
    assert_eq!((s.at(0), s.at(1)), (Some(1.0), Some(3.0)));
    s.push(12_000, 6.0);
    assert_eq!(s.at(1), Some(4.0));
    // A new bucket starts at one sample.
    s.push(20_000, 10.0);
    s.push(20_001, 20.0);
    assert_eq!(s.at(2), Some(15.0));
    let mut full = Series::new(20_000, 10_000);
    for i in 0..u16::MAX {
        full.push(i64::from(i % 10_000), 1.0);
    }
    full.push(0, 1e6); // the 65,536th sample of the bucket
    assert_eq!(full.at(0), Some(1.0));
}

#[test]
fn moments_ignore_samples_older_than_the_ring_and_empty_on_a_long_gap() {
    let mut m = Moments::new(32_000); // 1 s sub-buckets
    m.push(40_000, 2.0);
    m.push(8_000, 100.0); // 32 sub-buckets back: outside the ring (it holds 9..=40)
    m.push(9_000, 4.0); // the oldest it holds
    let b = m.baseline(40_000);
    assert_eq!((b.count, b.mean), (2, 3.0));
    m.push(-5_000, 100.0);
    assert_eq!(m.baseline(40_000).count, 2);
    // A gap longer than the window leaves only the new sample.
    m.push(1_000_000, 7.0);
    let b = m.baseline(1_000_000);
    assert_eq!((b.count, b.mean, b.std), (1, 7.0, 0.0));
    // Negative time works like any other.
    let mut neg = Moments::new(32_000);
    neg.push(-1, 1.0);
    neg.push(-2_500, 3.0);
    assert_eq!(neg.baseline(-1).count, 2);
    assert_eq!(neg.baseline(40_000).count, 0);
}
