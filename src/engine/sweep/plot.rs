//! The sweep's figure as a self-contained SVG (no plotting dependency): MIG, test
//! reconstruction loss and active units against β, one panel each; every run is a dot, the
//! mean over seeds a line with ± sd bars. β values sit at even spacing in the order given
//! (they are usually doublings, so this is a log axis for them), each labelled.

use std::fmt::Write;

use super::{summarise, BetaSummary, Spread, SweepRow};

const PANEL_W: f64 = 300.0;
const PANEL_H: f64 = 230.0;
const MARGIN_L: f64 = 52.0;
const MARGIN_R: f64 = 14.0;
const MARGIN_T: f64 = 28.0;
const MARGIN_B: f64 = 40.0;

/// The three panels for `rows`; `title` goes above them.
pub fn svg(rows: &[SweepRow], title: &str) -> String {
    let summary = summarise(rows);
    type Pick = fn(&SweepRow) -> f64;
    type PickSum = fn(&BetaSummary) -> Spread;
    let panels: [(&str, Pick, PickSum); 3] = [
        ("MIG", |r| r.mig, |b| b.mig),
        ("reconstruction loss (test, nats)", |r| r.recon, |b| b.recon),
        ("active units", |r| r.active_units as f64, |b| b.active_units),
    ];
    let width = PANEL_W * panels.len() as f64;
    let height = PANEL_H + 24.0;
    let mut out = String::new();
    let _ = write!(
        out,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="11">"#
    );
    let _ = write!(out, r#"<rect width="{width}" height="{height}" fill="white"/>"#);
    let _ = write!(
        out,
        r#"<text x="{}" y="16" text-anchor="middle" font-size="13">{}</text>"#,
        width / 2.0,
        escape(title)
    );
    for (p, (name, pick, pick_sum)) in panels.iter().enumerate() {
        panel(&mut out, p as f64 * PANEL_W, 24.0, name, rows, &summary, *pick, *pick_sum);
    }
    out += "</svg>\n";
    out
}

#[allow(clippy::too_many_arguments)]
fn panel(
    out: &mut String,
    x0: f64,
    y0: f64,
    name: &str,
    rows: &[SweepRow],
    summary: &[BetaSummary],
    pick: fn(&SweepRow) -> f64,
    pick_sum: fn(&BetaSummary) -> Spread,
) {
    let (l, r) = (x0 + MARGIN_L, x0 + PANEL_W - MARGIN_R);
    let (t, b) = (y0 + MARGIN_T, y0 + PANEL_H - MARGIN_B);
    let mut values: Vec<f64> = rows.iter().map(pick).filter(|v| v.is_finite()).collect();
    for s in summary.iter().map(pick_sum) {
        values.extend([s.mean - s.sd, s.mean + s.sd].into_iter().filter(|v| v.is_finite()));
    }
    let (mut lo, mut hi) =
        values.iter().fold((f64::INFINITY, f64::NEG_INFINITY), |(a, z), v| (a.min(*v), z.max(*v)));
    if !lo.is_finite() {
        (lo, hi) = (0.0, 1.0);
    }
    let pad = ((hi - lo) * 0.08).max(1e-6);
    let (lo, hi) = (lo - pad, hi + pad);
    let n = summary.len().max(1);
    let x_of =
        |i: usize| if n == 1 { (l + r) / 2.0 } else { l + 12.0 + (r - l - 24.0) * i as f64 / (n - 1) as f64 };
    let y_of = |v: f64| b - (b - t) * (v - lo) / (hi - lo);
    let _ = write!(
        out,
        r#"<text x="{}" y="{}" text-anchor="middle" font-size="12">{}</text>"#,
        (l + r) / 2.0,
        t - 8.0,
        escape(name)
    );
    let _ = write!(
        out,
        r##"<rect x="{l}" y="{t}" width="{}" height="{}" fill="none" stroke="#888"/>"##,
        r - l,
        b - t
    );
    for k in 0..=4 {
        let v = lo + (hi - lo) * k as f64 / 4.0;
        let y = y_of(v);
        let _ = write!(out, r##"<line x1="{}" y1="{y}" x2="{l}" y2="{y}" stroke="#888"/>"##, l - 4.0);
        let _ = write!(
            out,
            r#"<text x="{}" y="{}" text-anchor="end">{}</text>"#,
            l - 6.0,
            y + 4.0,
            tick(v, hi - lo)
        );
    }
    for (i, s) in summary.iter().enumerate() {
        let x = x_of(i);
        let _ = write!(out, r#"<text x="{x}" y="{}" text-anchor="middle">{}</text>"#, b + 15.0, s.beta);
    }
    let _ = write!(out, r#"<text x="{}" y="{}" text-anchor="middle">β</text>"#, (l + r) / 2.0, b + 31.0);
    for row in rows {
        let (Some(i), v) = (summary.iter().position(|s| s.beta == row.beta), pick(row)) else { continue };
        if v.is_finite() {
            let _ = write!(out, r##"<circle cx="{}" cy="{}" r="2.5" fill="#9ab"/>"##, x_of(i) + 5.0, y_of(v));
        }
    }
    let mut path = String::new();
    for (i, s) in summary.iter().enumerate() {
        let m = pick_sum(s);
        if !m.mean.is_finite() {
            continue;
        }
        let (x, y) = (x_of(i), y_of(m.mean));
        let _ = write!(path, "{}{x:.1},{y:.1} ", if path.is_empty() { "M" } else { "L" });
        if m.sd.is_finite() && m.sd > 0.0 {
            let (ya, yb) = (y_of(m.mean - m.sd), y_of(m.mean + m.sd));
            let _ = write!(out, r##"<line x1="{x}" y1="{ya}" x2="{x}" y2="{yb}" stroke="#c33"/>"##);
        }
        let _ = write!(out, r##"<circle cx="{x}" cy="{y}" r="3.5" fill="#c33"/>"##);
    }
    let _ = write!(out, r##"<path d="{}" fill="none" stroke="#c33" stroke-width="1.5"/>"##, path.trim_end());
}

/// A tick label with as many decimals as the axis's range needs.
fn tick(v: f64, range: f64) -> String {
    let decimals = if range >= 20.0 {
        0
    } else if range >= 2.0 {
        1
    } else if range >= 0.2 {
        2
    } else {
        3
    };
    format!("{v:.decimals$}")
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}
