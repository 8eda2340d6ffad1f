//! Built-in datasets with known factors of variation, drawn in code (no download):
//!
//! - `builtin:shapes`: dSprites-like sprites on a 32×32 grey canvas. Five factors on a full
//!   grid: shape (square, ellipse, heart) × scale (4) × rotation (8) × x (8) × y (8) = 6,144
//!   images. 32×32 rather than dSprites' 64×64 keeps an MLP β-VAE's epoch on two CPU cores to
//!   seconds while a sprite still spans 8–14 pixels, so every factor stays visible.
//! - `builtin:shapes2`: a disc of radius 3 at 32 × 32 positions (x, y): 1,024 images, two
//!   factors, for a first look at what a latent traversal should find.
//!
//! Rotation follows each shape's symmetry: its 8 values divide the shape's own period (square
//! 90°, ellipse 180°, heart 360°), so that no two rotation values draw the same image. dSprites
//! spans 360° for every shape, which makes the square's and the ellipse's rotations partly
//! unidentifiable; here every factor value can in principle be read back from the pixels.
//!
//! Pixels are the shape's coverage of the pixel, estimated with 4×4 supersamples, so that
//! position and scale move the image smoothly (sub-pixel steps change grey levels, not
//! jumps of whole pixels).

use std::f32::consts::PI;

use serde::{Deserialize, Serialize};

use super::{DataSource, Dataset, ImageShape};

/// Side of the canvas.
pub const SIZE: usize = 32;
/// Supersamples per pixel side.
const SUPER: usize = 4;
/// Values of the scale factor: the radius (pixels) of the circle the shape fits in.
const SCALES: [f32; 4] = [4.0, 5.0, 6.0, 7.0];
const ROTATIONS: usize = 8;
const POSITIONS: usize = 8;
/// Positions of `shapes2`'s disc per axis.
const DISC_POSITIONS: usize = 32;
const DISC_RADIUS: f32 = 3.0;
/// The disc's index for [`inside`] (after the three named shapes).
const DISC: usize = 3;
/// How far (in radii) the shapes reach from their centre: the heart's lobes, 1.03.
const EXTENT: f32 = 1.03;

/// Ground-truth factors of variation of a dataset: for each image, one value index per factor.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Factors {
    /// One name per factor ("shape", "scale", …).
    pub names: Vec<String>,
    /// Number of values each factor takes; a value index is below its factor's size.
    pub sizes: Vec<usize>,
    /// `[n, k]` row-major (k = number of factors): image `i`'s index for factor `j` is at
    /// `i * k + j`.
    pub values: Vec<u32>,
}

impl Factors {
    /// Number of factors.
    pub fn k(&self) -> usize {
        self.names.len()
    }

    /// Number of images described.
    pub fn len(&self) -> usize {
        self.values.len() / self.k().max(1)
    }

    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    /// The factor value indices of image `i` (`k` values).
    pub fn of(&self, i: usize) -> &[u32] {
        let k = self.k();
        &self.values[i * k..(i + 1) * k]
    }

    /// The rows at `indices`, in that order.
    pub fn gather(&self, indices: &[usize]) -> Factors {
        let mut values = Vec::with_capacity(indices.len() * self.k());
        for &i in indices {
            values.extend_from_slice(self.of(i));
        }
        Factors { names: self.names.clone(), sizes: self.sizes.clone(), values }
    }
}

/// Which generated dataset.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum SyntheticSet {
    /// Square, ellipse or heart × scale × rotation × x × y.
    Shapes,
    /// One disc at (x, y).
    Shapes2,
}

impl SyntheticSet {
    /// The CLI name after `builtin:`.
    pub fn key(self) -> &'static str {
        match self {
            SyntheticSet::Shapes => "shapes",
            SyntheticSet::Shapes2 => "shapes2",
        }
    }

    /// Display name of the dataset.
    pub fn title(self) -> &'static str {
        match self {
            SyntheticSet::Shapes => "Shapes (built-in, 5 factors)",
            SyntheticSet::Shapes2 => "Disc at x, y (built-in, 2 factors)",
        }
    }

    pub fn from_key(key: &str) -> Option<Self> {
        [SyntheticSet::Shapes, SyntheticSet::Shapes2].into_iter().find(|s| s.key() == key)
    }
}

/// The shapes of `builtin:shapes`, in factor-value order.
pub const SHAPE_NAMES: [&str; 3] = ["square", "ellipse", "heart"];

/// Generates a dataset; deterministic (no randomness at all).
pub fn load(set: SyntheticSet) -> Dataset {
    match set {
        SyntheticSet::Shapes => shapes(),
        SyntheticSet::Shapes2 => shapes2(),
    }
}

/// Whether point (u, v) of the shape's own frame (unit circle = the shape's extent, v up) is
/// inside shape `s`.
fn inside(s: usize, u: f32, v: f32) -> bool {
    match s {
        0 => u.abs() <= 0.72 && v.abs() <= 0.72,
        1 => u * u + (v / 0.5) * (v / 0.5) <= 1.0,
        DISC => u * u + v * v <= 1.0,
        _ => {
            // The classic heart (x² + y² − 1)³ ≤ x² y³, which spans x ∈ ±1.14 and
            // y ∈ [−1, 1.25]: shrunk and shifted so that its centroid is the origin (then it
            // reaches 1.03 from it).
            let x = u / 0.8;
            let y = v / 0.8 + 0.3;
            let r = x * x + y * y - 1.0;
            r * r * r <= x * x * y * y * y
        }
    }
}

/// Symmetry period of shape `s` (radians): rotations divide it.
fn period(s: usize) -> f32 {
    match s {
        0 => PI / 2.0,
        1 => PI,
        _ => 2.0 * PI,
    }
}

/// Centre (pixels) of position index `i` out of `n`, keeping a shape of radius `margin`
/// inside the canvas.
fn position(i: usize, n: usize, margin: f32) -> f32 {
    // The outer ring of pixels stays empty.
    let lo = margin + 1.2;
    let hi = SIZE as f32 - lo;
    lo + (hi - lo) * i as f32 / (n - 1) as f32
}

/// Draws one sprite: shape `s` fitting radius `radius` (pixels), turned by `angle` radians
/// counter-clockwise, centred at (`cx`, `cy`) pixels (y down). Returns SIZE×SIZE coverages.
fn draw(s: usize, radius: f32, angle: f32, cx: f32, cy: f32, out: &mut [f32]) {
    let (sin, cos) = angle.sin_cos();
    // Only the pixels of the bounding square can be touched.
    let reach = radius * EXTENT + 1.0;
    let y0 = (cy - reach).floor().max(0.0) as usize;
    let y1 = ((cy + reach).ceil() as usize).min(SIZE);
    let x0 = (cx - reach).floor().max(0.0) as usize;
    let x1 = ((cx + reach).ceil() as usize).min(SIZE);
    let w = 1.0 / (SUPER * SUPER) as f32;
    for py in y0..y1 {
        for px in x0..x1 {
            let mut hits = 0;
            for sy in 0..SUPER {
                for sx in 0..SUPER {
                    let dx = px as f32 + (sx as f32 + 0.5) / SUPER as f32 - cx;
                    let dy = cy - (py as f32 + (sy as f32 + 0.5) / SUPER as f32);
                    // Into the shape's frame: rotate by −angle, scale to the unit circle.
                    let u = (cos * dx + sin * dy) / radius;
                    let v = (-sin * dx + cos * dy) / radius;
                    hits += inside(s, u, v) as usize;
                }
            }
            out[py * SIZE + px] = hits as f32 * w;
        }
    }
}

fn shapes() -> Dataset {
    let shape = ImageShape::new(1, SIZE, SIZE);
    let n = SHAPE_NAMES.len() * SCALES.len() * ROTATIONS * POSITIONS * POSITIONS;
    let mut images = vec![0f32; n * shape.len()];
    let mut values = Vec::with_capacity(n * 5);
    let mut labels = Vec::with_capacity(n);
    let margin = SCALES[SCALES.len() - 1] * EXTENT;
    let mut i = 0;
    for s in 0..SHAPE_NAMES.len() {
        for (sc, &radius) in SCALES.iter().enumerate() {
            for r in 0..ROTATIONS {
                let angle = period(s) * r as f32 / ROTATIONS as f32;
                for x in 0..POSITIONS {
                    for y in 0..POSITIONS {
                        let (cx, cy) = (position(x, POSITIONS, margin), position(y, POSITIONS, margin));
                        draw(s, radius, angle, cx, cy, &mut images[i * shape.len()..(i + 1) * shape.len()]);
                        values.extend([s, sc, r, x, y].map(|v| v as u32));
                        labels.push(s as u32);
                        i += 1;
                    }
                }
            }
        }
    }
    let factors = Factors {
        names: ["shape", "scale", "rotation", "x", "y"].map(String::from).to_vec(),
        sizes: vec![SHAPE_NAMES.len(), SCALES.len(), ROTATIONS, POSITIONS, POSITIONS],
        values,
    };
    Dataset {
        name: SyntheticSet::Shapes.title().into(),
        source: DataSource::Synthetic(SyntheticSet::Shapes),
        shape,
        images,
        labels: Some(labels),
        class_names: Some(SHAPE_NAMES.map(String::from).to_vec()),
        fixed_split: None,
        factors: Some(factors),
    }
}

fn shapes2() -> Dataset {
    let shape = ImageShape::new(1, SIZE, SIZE);
    let n = DISC_POSITIONS * DISC_POSITIONS;
    let mut images = vec![0f32; n * shape.len()];
    let mut values = Vec::with_capacity(n * 2);
    for x in 0..DISC_POSITIONS {
        for y in 0..DISC_POSITIONS {
            let i = x * DISC_POSITIONS + y;
            let (cx, cy) =
                (position(x, DISC_POSITIONS, DISC_RADIUS), position(y, DISC_POSITIONS, DISC_RADIUS));
            draw(DISC, DISC_RADIUS, 0.0, cx, cy, &mut images[i * shape.len()..(i + 1) * shape.len()]);
            values.extend([x as u32, y as u32]);
        }
    }
    let factors =
        Factors { names: vec!["x".into(), "y".into()], sizes: vec![DISC_POSITIONS, DISC_POSITIONS], values };
    Dataset {
        name: SyntheticSet::Shapes2.title().into(),
        source: DataSource::Synthetic(SyntheticSet::Shapes2),
        shape,
        images,
        labels: None,
        class_names: None,
        fixed_split: None,
        factors: Some(factors),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Ink, centre of mass (x, y) in pixels.
    fn moments(img: &[f32]) -> (f32, f32, f32) {
        let (mut m, mut mx, mut my) = (0.0, 0.0, 0.0);
        for (i, &p) in img.iter().enumerate() {
            m += p;
            mx += p * ((i % SIZE) as f32 + 0.5);
            my += p * ((i / SIZE) as f32 + 0.5);
        }
        (m, mx / m, my / m)
    }

    /// Index of the image with factor values `f` (the generation order).
    fn index(d: &Dataset, f: &[u32]) -> usize {
        let sizes = &d.factors.as_ref().unwrap().sizes;
        f.iter().zip(sizes).fold(0, |acc, (&v, &n)| acc * n + v as usize)
    }

    #[test]
    fn shapes_are_deterministic_and_cover_the_grid_once() {
        let a = load(SyntheticSet::Shapes);
        let b = load(SyntheticSet::Shapes);
        assert_eq!(a.images, b.images);
        assert_eq!(a.factors, b.factors);
        assert_eq!(a.len(), 3 * 4 * 8 * 8 * 8);
        assert_eq!(a.shape, ImageShape::new(1, 32, 32));
        let f = a.factors.as_ref().unwrap();
        assert_eq!(f.len(), a.len());
        assert_eq!(f.sizes, vec![3, 4, 8, 8, 8]);
        for i in 0..a.len() {
            assert_eq!(index(&a, f.of(i)), i, "row {i} is not the grid's");
            assert_eq!(a.labels.as_ref().unwrap()[i], f.of(i)[0], "labels are the shape factor");
        }
        assert!(a.images.iter().all(|p| (0.0..=1.0).contains(p)));
        // Every sprite lies wholly inside the canvas: the outer ring of pixels is empty.
        for i in 0..a.len() {
            let img = a.image(i);
            let border = (0..SIZE).any(|k| {
                img[k] > 0.0
                    || img[(SIZE - 1) * SIZE + k] > 0.0
                    || img[k * SIZE] > 0.0
                    || img[k * SIZE + SIZE - 1] > 0.0
            });
            assert!(!border, "image {i} ({:?}) touches the border", f.of(i));
        }
        assert_eq!(DataSource::parse("builtin:shapes"), DataSource::Synthetic(SyntheticSet::Shapes));
        assert_eq!(DataSource::parse(&a.source.to_string()), a.source);
    }

    #[test]
    fn centre_of_mass_follows_x_and_y_and_ink_follows_scale() {
        let d = load(SyntheticSet::Shapes);
        let margin = SCALES[3] * EXTENT;
        for s in 0..3u32 {
            for sc in 0..4u32 {
                for r in 0..8u32 {
                    for x in 0..8u32 {
                        for y in 0..8u32 {
                            let (_, cx, cy) = moments(d.image(index(&d, &[s, sc, r, x, y])));
                            let (nx, ny) = (position(x as usize, 8, margin), position(y as usize, 8, margin));
                            let off = (cx - nx).hypot(cy - ny);
                            assert!(off < 0.3, "{s} {sc} {r} {x} {y}: centroid {off} px off");
                            if x > 0 {
                                let (_, px, _) = moments(d.image(index(&d, &[s, sc, r, x - 1, y])));
                                assert!(cx - px > 1.5, "x index {x} moved the centre by {}", cx - px);
                            }
                            if y > 0 {
                                let (_, _, py) = moments(d.image(index(&d, &[s, sc, r, x, y - 1])));
                                assert!(cy - py > 1.5, "y index {y} moved the centre by {}", cy - py);
                            }
                        }
                    }
                    // Ink grows as the radius squared (within the supersampling's error).
                    let ink = |sc: u32| moments(d.image(index(&d, &[s, sc, r, 3, 4]))).0;
                    for sc in 1..4u32 {
                        let want = (SCALES[sc as usize] / SCALES[sc as usize - 1]).powi(2);
                        let got = ink(sc) / ink(sc - 1);
                        assert!(
                            (got / want - 1.0).abs() < 0.08,
                            "shape {s} scale {sc}: ratio {got} vs {want}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn every_rotation_draws_a_different_image() {
        let d = load(SyntheticSet::Shapes);
        for s in 0..3u32 {
            for a in 0..8u32 {
                for b in a + 1..8 {
                    let (ia, ib) =
                        (d.image(index(&d, &[s, 3, a, 4, 4])), d.image(index(&d, &[s, 3, b, 4, 4])));
                    let l1: f32 = ia.iter().zip(ib).map(|(p, q)| (p - q).abs()).sum();
                    assert!(l1 > 2.0, "shape {s}: rotations {a} and {b} differ by only {l1}");
                }
            }
        }
    }

    #[test]
    fn the_disc_sits_where_its_factors_say() {
        let d = load(SyntheticSet::Shapes2);
        assert_eq!(d.len(), 32 * 32);
        let f = d.factors.as_ref().unwrap();
        assert_eq!(f.names, vec!["x", "y"]);
        let ink0 = moments(d.image(0)).0;
        for i in 0..d.len() {
            let (m, cx, cy) = moments(d.image(i));
            let (x, y) = (f.of(i)[0] as usize, f.of(i)[1] as usize);
            assert!((cx - position(x, 32, DISC_RADIUS)).abs() < 0.05, "image {i}: x {cx}");
            assert!((cy - position(y, 32, DISC_RADIUS)).abs() < 0.05, "image {i}: y {cy}");
            assert!((m / ink0 - 1.0).abs() < 0.05, "image {i}: the disc's ink changed to {m}");
        }
        assert_eq!(DataSource::parse("builtin:shapes2").to_string(), "builtin:shapes2");
    }
}
