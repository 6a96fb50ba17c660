//! The statistics behind blame: Pearson correlation on aligned points, an effective sample
//! size that discounts autocorrelated series, a one-sided p-value (Fisher's z), partial
//! correlation, and a before/after step test. Pure functions on slices.

/// Pearson correlation of paired points, with what its significance needs.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Paired {
    /// The coefficient, in [-1, 1].
    pub r: f64,
    /// Points used.
    pub n: usize,
    /// Effective number of independent points after discounting the lag-1
    /// autocorrelation of both series (Bretherton et al. 1999), at most `n`.
    pub n_eff: f64,
    /// Coefficient of variation (std / |mean|) of the second series.
    pub cv_b: f64,
}

/// Mean and population variance.
fn moments(x: impl Iterator<Item = f64> + Clone) -> (f64, f64) {
    let n = x.clone().count().max(1) as f64;
    let mean = x.clone().sum::<f64>() / n;
    let var = x.map(|v| (v - mean) * (v - mean)).sum::<f64>() / n;
    (mean, var)
}

/// A variance indistinguishable from rounding noise of the mean.
fn flat(var: f64, mean: f64) -> bool {
    var <= 1e-12 * mean * mean + f64::MIN_POSITIVE
}

/// Lag-1 autocorrelation of a series (0 when it cannot be estimated).
pub fn lag1(x: &[f64]) -> f64 {
    if x.len() < 3 {
        return 0.0;
    }
    let (mean, var) = moments(x.iter().copied());
    if flat(var, mean) {
        return 0.0;
    }
    let cov = x
        .windows(2)
        .map(|w| (w[0] - mean) * (w[1] - mean))
        .sum::<f64>()
        / x.len() as f64;
    (cov / var).clamp(-1.0, 1.0)
}

/// Pearson correlation of `a` and `b` (same length). `None` with fewer than three points
/// or when either series is constant.
pub fn pearson(a: &[f64], b: &[f64]) -> Option<Paired> {
    let n = a.len().min(b.len());
    if n < 3 {
        return None;
    }
    let (a, b) = (&a[..n], &b[..n]);
    let (ma, va) = moments(a.iter().copied());
    let (mb, vb) = moments(b.iter().copied());
    if flat(va, ma) || flat(vb, mb) {
        return None;
    }
    let cov = a
        .iter()
        .zip(b)
        .map(|(x, y)| (x - ma) * (y - mb))
        .sum::<f64>()
        / n as f64;
    let r = (cov / (va.sqrt() * vb.sqrt())).clamp(-1.0, 1.0);
    // Only persistence shared by both series inflates the variance of r; a negative
    // product (one alternating, one persistent) is not credited with extra points.
    let rho = (lag1(a) * lag1(b)).clamp(0.0, 0.99);
    let n_eff = (n as f64 * (1.0 - rho) / (1.0 + rho)).min(n as f64);
    let cv_b = if mb.abs() > f64::EPSILON {
        vb.sqrt() / mb.abs()
    } else {
        f64::INFINITY
    };
    Some(Paired { r, n, n_eff, cv_b })
}

/// Upper tail of the standard normal, `P(Z > z)` (Abramowitz & Stegun 7.1.26 on erfc,
/// absolute error below 1.5e-7).
pub fn normal_sf(z: f64) -> f64 {
    if z < 0.0 {
        return 1.0 - normal_sf(-z);
    }
    let x = z / std::f64::consts::SQRT_2;
    let t = 1.0 / (1.0 + 0.327_591_1 * x);
    let poly = t
        * (0.254_829_592
            + t * (-0.284_496_736
                + t * (1.421_413_741 + t * (-1.453_152_027 + t * 1.061_405_429))));
    0.5 * poly * (-x * x).exp()
}

/// One-sided p-value of a positive correlation `r` over `n_eff` effective points, by
/// Fisher's z: `P(Z > atanh(r) * sqrt(n_eff - 3))`. 1 when `n_eff <= 3` (nothing can be
/// concluded) or `r <= 0`.
pub fn p_positive(r: f64, n_eff: f64) -> f64 {
    if n_eff <= 3.0 || r <= 0.0 || !r.is_finite() {
        return 1.0;
    }
    let z = r.min(0.999_999).atanh() * (n_eff - 3.0).sqrt();
    normal_sf(z)
}

/// One-sided p-value that a correlation `r` over `n_eff` effective points is above the bar
/// `bar` (a placebo's correlation; a bar at or below 0 is 0), by Fisher's z:
/// `P(Z > (atanh(r) − atanh(bar)) × sqrt(n_eff − 3))`. With a bar of 0 it is
/// [`p_positive`].
pub fn p_above(r: f64, bar: f64, n_eff: f64) -> f64 {
    if n_eff <= 3.0 || r <= 0.0 || !r.is_finite() || !bar.is_finite() {
        return 1.0;
    }
    let z = |x: f64| x.clamp(0.0, 0.999_999).atanh();
    normal_sf((z(r) - z(bar)) * (n_eff - 3.0).sqrt())
}

/// Partial correlation of `v` and `q` controlling for `m`, from the three pairwise
/// correlations. `None` when `m` explains `v` or `q` completely.
pub fn partial(r_vq: f64, r_vm: f64, r_qm: f64) -> Option<f64> {
    let d = (1.0 - r_vm * r_vm) * (1.0 - r_qm * r_qm);
    (d > 1e-9).then(|| ((r_vq - r_vm * r_qm) / d.sqrt()).clamp(-1.0, 1.0))
}

/// A level shift across an onset: before and after levels (medians), and how many robust
/// standard deviations of the before-period (1.4826 × its median absolute deviation,
/// floored at 5% of its level) the shift is. Medians keep one ramping point at the edge of
/// the before-period from hiding a step.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Step {
    /// Level (median) before the onset.
    pub before: f64,
    /// Level (median) after the onset.
    pub after: f64,
    /// `(after - before) / max(1.4826 × MAD_before, 0.05 × |before|)`.
    pub z: f64,
}

/// The median of `x` (non-empty).
fn median(x: &[f64]) -> f64 {
    let mut v = x.to_vec();
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// The step of `after` over `before`; `None` without at least three points before and one
/// after. A pod absent before the onset (no points) steps up from zero: pass `[0.0; 3]`.
pub fn step(before: &[f64], after: &[f64]) -> Option<Step> {
    if before.len() < 3 || after.is_empty() {
        return None;
    }
    let mb = median(before);
    let mad = median(&before.iter().map(|v| (v - mb).abs()).collect::<Vec<_>>());
    let ma = median(after);
    let scale = (1.4826 * mad).max(0.05 * mb.abs()).max(1e-12);
    Some(Step {
        before: mb,
        after: ma,
        z: (ma - mb) / scale,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_normal_tail_matches_known_values() {
        for (z, p) in [
            (0.0, 0.5),
            (1.0, 0.158_655),
            (1.959_964, 0.025),
            (3.0, 0.001_35),
        ] {
            assert!((normal_sf(z) - p).abs() < 1e-5, "{z}: {}", normal_sf(z));
        }
        assert!((normal_sf(-1.0) - 0.841_345).abs() < 1e-5);
    }

    #[test]
    fn persistence_shrinks_the_effective_sample() {
        let steps: Vec<f64> = (0..30).map(|i| if i < 20 { 1.0 } else { 5.0 }).collect();
        let walk: Vec<f64> = (0..30)
            .map(|i| (i as f64 * 0.3).sin() * 3.0 + i as f64)
            .collect();
        let c = pearson(&steps, &walk).unwrap();
        assert!(c.r > 0.7, "{c:?}");
        assert!(
            c.n_eff < 6.0,
            "two persistent series are few independent points: {c:?}"
        );
        assert!(p_positive(c.r, c.n_eff) > 1e-3);
        // Alternating data keeps its points.
        let a: Vec<f64> = (0..30).map(|i| ((i * 7) % 5) as f64).collect();
        let b: Vec<f64> = a.iter().map(|x| 2.0 * x + 1.0).collect();
        let c = pearson(&a, &b).unwrap();
        assert!(c.n_eff > 15.0 && p_positive(c.r, c.n_eff) < 1e-9, "{c:?}");
        assert_eq!(pearson(&a, &[3.0; 30]), None);
    }

    #[test]
    fn partial_correlation_removes_a_shared_driver() {
        // q only follows m; v follows m: controlling for m leaves nothing.
        assert!(partial(0.8, 0.9, 0.9).unwrap() < 0.0);
        assert!(partial(0.5, 0.0, 0.0).unwrap() == 0.5);
        assert_eq!(partial(0.9, 1.0, 0.5), None);
    }

    #[test]
    fn a_correlation_must_clear_the_placebos_bar() {
        // No common mode: the bar is 0 and the test is the correlation's own.
        assert_eq!(p_above(0.6, 0.0, 30.0), p_positive(0.6, 30.0));
        assert_eq!(p_above(0.6, -0.4, 30.0), p_positive(0.6, 30.0));
        // An antagonist clears a placebo that follows the victim a little.
        assert!(p_above(0.9, 0.3, 28.0) < 1e-5);
        // Common mode: the placebo follows the victim about as closely as the pod.
        assert!(p_above(0.91, 0.89, 28.0) > 0.1);
        assert!(p_above(0.8, 0.9, 28.0) > 0.5);
        assert_eq!(p_above(0.99, 0.0, 3.0), 1.0);
    }

    #[test]
    fn a_step_is_measured_against_the_spread_before() {
        let s = step(&[1.0, 1.1, 0.9, 1.0], &[4.0, 4.2]).unwrap();
        assert!(s.z > 30.0, "{s:?}");
        assert!(step(&[1.0, 3.0, 0.0, 2.0], &[2.5]).unwrap().z < 1.0);
        assert_eq!(step(&[1.0], &[2.0]), None);
        // One ramping point at the end of the before-period does not hide the step.
        let s = step(&[1.0, 1.1, 0.9, 1.0, 1.05, 3.0], &[4.0, 4.2]).unwrap();
        assert!(s.z > 30.0, "{s:?}");
    }
}
