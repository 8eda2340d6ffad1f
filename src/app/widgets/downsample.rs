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
    downsample_minmax_by(xs, ys, x_range, columns, |y| y)
}

/// [`downsample_minmax`] of the points `(xs[i], f(ys[i]))`, with `f` applied on the fly (a log
/// scale, say) instead of to a copy of the whole series: points whose `f(y)` is not finite
/// are skipped.
pub fn downsample_minmax_by(
    xs: &[f64],
    ys: &[f64],
    x_range: Option<(f64, f64)>,
    columns: usize,
    f: impl Fn(f64) -> f64,
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
    if hi - lo <= 4 * columns {
        return (lo..hi)
            .filter_map(|i| {
                let y = f(ys[i]);
                y.is_finite().then_some([xs[i], y])
            })
            .collect();
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
    let mut acc: Option<Bucket> = None;
    for i in lo..hi {
        let y = f(ys[i]);
        if !y.is_finite() {
            continue;
        }
        let b = bucket_of(xs[i]);
        if b != bucket {
            if let Some(a) = acc.take() {
                a.push_into(xs, &mut out);
            }
            bucket = b;
            acc = Some(Bucket::new(i, y));
            continue;
        }
        if let Some(a) = acc.as_mut() {
            a.add(i, y);
        }
    }
    if let Some(a) = acc {
        a.push_into(xs, &mut out);
    }
    out
}

/// A decimation bucket's first, lowest, highest and last points, as (index, y).
#[derive(Clone, Copy, Debug)]
struct Bucket([(usize, f64); 4]);

impl Bucket {
    fn new(i: usize, y: f64) -> Self {
        Self([(i, y); 4])
    }

    fn add(&mut self, i: usize, y: f64) {
        let p = &mut self.0;
        if y < p[1].1 {
            p[1] = (i, y);
        }
        if y > p[2].1 {
            p[2] = (i, y);
        }
        p[3] = (i, y);
    }

    /// Appends the bucket's distinct points in x order.
    fn push_into(self, xs: &[f64], out: &mut Vec<[f64; 2]>) {
        let mut pts = self.0;
        pts.sort_unstable_by_key(|p| p.0);
        let mut prev = usize::MAX;
        for (i, y) in pts {
            if i != prev {
                out.push([xs[i], y]);
                prev = i;
            }
        }
    }
}

/// Min/max decimation of a series that only grows, kept across frames: buckets of a fixed
/// power-of-two width from x = 0, so that every bucket but the last is final and each frame
/// folds in only the new points. The width is the smallest power of two that gives at most
/// `columns` buckets over the series (at least `columns / 2`); it is rebuilt when that width
/// changes, when `key` changes (the series was cut, the transform or the smoothing changed),
/// or when the series is shorter than what was folded. Same output rules as
/// [`downsample_minmax`] per bucket (first, lowest, highest, last; non-finite skipped).
#[derive(Debug, Default)]
pub struct Decimation {
    key: u64,
    width: f64,
    /// Points folded so far.
    next: usize,
    /// Output of the closed buckets.
    closed: Vec<[f64; 2]>,
    /// The open bucket and its index.
    open: Option<(i64, Bucket)>,
}

impl Decimation {
    /// The decimated points of `(xs[i], f(ys[i]))` for an x-sorted, growing series.
    pub fn update(
        &mut self,
        key: u64,
        xs: &[f64],
        ys: &[f64],
        columns: usize,
        f: impl Fn(f64) -> f64,
    ) -> Vec<[f64; 2]> {
        let n = xs.len().min(ys.len());
        let span = if n > 1 { (xs[n - 1] - xs[0]).max(0.0) } else { 0.0 };
        let target = span / columns.max(1) as f64;
        let width =
            if target > 0.0 && target.is_finite() { 2f64.powi(target.log2().ceil() as i32) } else { 1.0 };
        if key != self.key || width != self.width || n < self.next {
            *self = Self { key, width, ..Self::default() };
        }
        for i in self.next..n {
            let y = f(ys[i]);
            if !y.is_finite() {
                continue;
            }
            let b = (xs[i] / width).floor() as i64;
            match self.open.as_mut() {
                Some((ob, a)) if *ob == b => a.add(i, y),
                _ => {
                    if let Some((_, a)) = self.open.take() {
                        a.push_into(xs, &mut self.closed);
                    }
                    self.open = Some((b, Bucket::new(i, y)));
                }
            }
        }
        self.next = n;
        let mut out = Vec::with_capacity(self.closed.len() + 4);
        out.extend_from_slice(&self.closed);
        if let Some((_, a)) = self.open {
            a.push_into(xs, &mut out);
        }
        out
    }
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

    /// Folding a growing series frame by frame gives what folding it whole gives, within the
    /// column budget, keeping every spike; a new key or a cut series starts over.
    #[test]
    fn incremental_decimation_matches_a_fresh_one() {
        let n = 100_000;
        let xs: Vec<f64> = (1..=n).map(|i| i as f64).collect();
        let mut ys: Vec<f64> = xs.iter().map(|x| (x / 3000.0).sin() + 0.05 * ((x * 3.1).cos())).collect();
        ys[40_000] = 9.0;
        ys[99_000] = -9.0;
        ys[123] = f64::NAN;
        let cols = 600;
        let mut live = Decimation::default();
        let mut shown = Vec::new();
        for end in (1..=n).step_by(777).chain([n]) {
            shown = live.update(7, &xs[..end], &ys[..end], cols, |y| y);
        }
        let fresh = Decimation::default().update(7, &xs, &ys, cols, |y| y);
        assert_eq!(shown, fresh);
        assert!(shown.len() <= 4 * cols && shown.len() >= cols / 2, "{} points", shown.len());
        assert!(shown.windows(2).all(|w| w[0][0] < w[1][0]));
        assert!(shown.iter().any(|p| p[1] == 9.0) && shown.iter().any(|p| p[1] == -9.0));
        assert_eq!((shown[0][0], shown[shown.len() - 1][0]), (1.0, n as f64));
        // Another key (say, the series was cut and regrown to the same length): rebuilt.
        let mut other = ys.clone();
        other[99_000] = 5.0;
        let redone = live.update(8, &xs, &other, cols, |y| y);
        assert!(redone.iter().any(|p| p[1] == 5.0) && !redone.iter().any(|p| p[1] == -9.0));
    }

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

        // A transform on the fly equals decimating the transformed copy.
        let logged: Vec<f64> = ys.iter().map(|&y| if y > 0.0 { y.log10() } else { f64::NAN }).collect();
        let by = downsample_minmax_by(&xs, &ys, None, cols, |y| if y > 0.0 { y.log10() } else { f64::NAN });
        assert_eq!(by, downsample_minmax(&xs, &logged, None, cols));
        assert!(by.iter().all(|p| p[1].is_finite()) && by.iter().any(|p| p[1] == 50f64.log10()));

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
