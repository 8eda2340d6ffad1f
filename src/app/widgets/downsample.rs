//! Pure helpers that keep long loss curves cheap to draw: EMA smoothing and min/max decimation.

/// Min/max decimation for drawing: of the points of `(xs, ys)` (sorted by x) that fall in
/// `x_range` (plus one neighbour on each side, so lines reach the edges), keeps per each of
/// `columns` equal-width x buckets the first, lowest, highest and last point, in x order. The
/// drawn envelope is unchanged at that resolution, and the output has at most `4 · columns + 2`
/// points however long the input. Points with a non-finite y are skipped.
pub fn downsample_minmax(
    xs: &[f64],
    ys: &[f64],
    x_range: Option<(f64, f64)>,
    columns: usize,
) -> Vec<[f64; 2]> {
    let n = xs.len().min(ys.len());
    if n == 0 {
        return Vec::new();
    }
    let (lo, hi) = match x_range {
        Some((a, b)) if a.is_finite() && b.is_finite() && a <= b => {
            let lo = xs[..n].partition_point(|&x| x < a).saturating_sub(1);
            let hi = (xs[..n].partition_point(|&x| x <= b) + 1).min(n);
            (lo, hi.max(lo))
        }
        _ => (0, n),
    };
    let columns = columns.max(1);
    let finite = |i: usize| ys[i].is_finite();
    if hi - lo <= 4 * columns {
        return (lo..hi).filter(|&i| finite(i)).map(|i| [xs[i], ys[i]]).collect();
    }
    let (x0, x1) = (xs[lo], xs[hi - 1]);
    let width = (x1 - x0) / columns as f64;
    let bucket_of = |x: f64| {
        if width > 0.0 {
            (((x - x0) / width) as usize).min(columns - 1)
        } else {
            0
        }
    };
    let mut out = Vec::with_capacity(4 * columns + 2);
    let mut bucket = usize::MAX;
    // first, min, max, last of the current bucket (indices)
    let mut acc: Option<[usize; 4]> = None;
    let flush = |acc: [usize; 4], out: &mut Vec<[f64; 2]>| {
        let mut idx = acc;
        idx.sort_unstable();
        let mut prev = usize::MAX;
        for i in idx {
            if i != prev {
                out.push([xs[i], ys[i]]);
                prev = i;
            }
        }
    };
    for i in lo..hi {
        if !finite(i) {
            continue;
        }
        let b = bucket_of(xs[i]);
        if b != bucket {
            if let Some(a) = acc.take() {
                flush(a, &mut out);
            }
            bucket = b;
            acc = Some([i; 4]);
            continue;
        }
        if let Some(a) = acc.as_mut() {
            if ys[i] < ys[a[1]] {
                a[1] = i;
            }
            if ys[i] > ys[a[2]] {
                a[2] = i;
            }
            a[3] = i;
        }
    }
    if let Some(a) = acc {
        flush(a, &mut out);
    }
    out
}

/// Exponential moving average with bias correction (the first values are not pulled to 0):
/// `s_t = α s_{t−1} + (1 − α) x_t`, reported as `s_t / (1 − α^t)`. Extends `out` (already
/// smoothed over `ys[..out.len()]`) to cover all of `ys`, so appending is O(new points).
/// Non-finite inputs are passed through and do not disturb the average.
pub fn ema_extend(ys: &[f64], alpha: f64, state: &mut EmaState, out: &mut Vec<f64>) {
    let alpha = alpha.clamp(0.0, 0.9999);
    for &y in &ys[out.len().min(ys.len())..] {
        if !y.is_finite() {
            out.push(y);
            continue;
        }
        state.acc = alpha * state.acc + (1.0 - alpha) * y;
        state.weight = alpha * state.weight + (1.0 - alpha);
        out.push(if state.weight > 0.0 { state.acc / state.weight } else { y });
    }
}

/// Running sums of [`ema_extend`].
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct EmaState {
    acc: f64,
    weight: f64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn downsampling_keeps_extremes_ends_and_order_within_budget() {
        let n = 100_000;
        let xs: Vec<f64> = (0..n).map(|i| i as f64).collect();
        let mut ys: Vec<f64> = xs.iter().map(|x| (x / 5000.0).sin() + 0.1 * ((x * 7.3).sin())).collect();
        ys[31_337] = 50.0; // a spike must survive
        ys[77_000] = -40.0;
        ys[500] = f64::NAN;
        let cols = 800;
        let out = downsample_minmax(&xs, &ys, None, cols);
        assert!(out.len() <= 4 * cols + 2, "{} points", out.len());
        assert!(out.len() > cols, "every column keeps something");
        assert_eq!(out.first().unwrap()[0], 0.0);
        assert_eq!(out.last().unwrap()[0], (n - 1) as f64);
        assert!(out.windows(2).all(|w| w[0][0] < w[1][0]), "x stays sorted and unique");
        assert!(out.iter().any(|p| p[1] == 50.0));
        assert!(out.iter().any(|p| p[1] == -40.0));
        assert!(out.iter().all(|p| p[1].is_finite()));

        // A visible range: only points in it (and one neighbour each side).
        let part = downsample_minmax(&xs, &ys, Some((1000.0, 1100.0)), cols);
        assert_eq!(part.first().unwrap()[0], 999.0);
        assert_eq!(part.last().unwrap()[0], 1101.0);
        assert_eq!(part.len(), 103);

        // Short series come back whole.
        assert_eq!(downsample_minmax(&xs[..10], &ys[..10], None, cols).len(), 10);
        assert!(downsample_minmax(&[], &[], None, cols).is_empty());
    }

    #[test]
    fn ema_is_incremental_and_unbiased() {
        let ys = [10.0, 10.0, 10.0, f64::NAN, 10.0];
        let mut s = EmaState::default();
        let mut out = Vec::new();
        ema_extend(&ys[..2], 0.9, &mut s, &mut out);
        ema_extend(&ys, 0.9, &mut s, &mut out);
        assert_eq!(out.len(), 5);
        assert!(out[0] == 10.0 && (out[4] - 10.0).abs() < 1e-9);
        assert!(out[3].is_nan());
        let mut s = EmaState::default();
        let mut raw = Vec::new();
        ema_extend(&[1.0, 5.0], 0.0, &mut s, &mut raw);
        assert_eq!(raw, vec![1.0, 5.0]);
    }
}
