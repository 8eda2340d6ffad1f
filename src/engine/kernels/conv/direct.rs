//! Stride-1 convolutions without im2col: k² products over shifted windows of a zero-bordered
//! copy of the input, the fused [`super::Conv2dAct`]'s path for every stride-1 geometry (the
//! diffusion U-Net's 3×3 pad-1 layers).
//!
//! A chunk of `m` images is copied channel-major into `[C, m·P + S]` with each image's plane
//! bordered to `(H + 2p) × (W + 2p)` (`P` values, row length `Wp`) and `S = (k − 1)(Wp + 1)`
//! values of slack. On that grid kernel offset `(i, j)` is a shift by `i·Wp + j`, so for every
//! grid position `q`
//!
//! ```text
//! y[co, q] = Σ_{i,j} Σ_ci W[co, ci, i, j] · xpad[ci, q + i·Wp + j]
//! ```
//!
//! is k² gemms `[q, Cout] += [q, Cin] · [Cin, Cout]` whose left operand is the bordered input
//! itself at an offset: nothing is rearranged. The outputs are the positions `q = b·P + o_h·Wp
//! + o_w` with `o_h < Hout`, `o_w < Wout`; the others (the last `k − 1` columns of each row and
//! the last `k − 1` rows of each plane, 15% of the grid at 28×28) are computed and dropped. The
//! backward pass runs the same shifts: `dW_ij = g · xpad_ijᵀ` and `dxpad_ij += W_ijᵀ g`, with
//! the gradient `g` zero at the dropped positions. im2col instead wrote each input value k²
//! times forward and twice more backward (an unfold for dW, a fold for dx): ~25% of a U-Net
//! step after its rows were vectorised.

use candle_core::{bail, Result};

use super::{sum_parts, Split};
use crate::engine::kernels::buffers::Scratch;
use crate::engine::kernels::gemm::gemm_strided;
use crate::engine::kernels::{fastmath, Epilogue, Geometry};

/// The bordered grid of one image plane for a stride-1 geometry.
#[derive(Clone, Copy, Debug)]
pub(super) struct Grid {
    k: usize,
    p: usize,
    h: usize,
    w: usize,
    wp: usize,
    ho: usize,
    wo: usize,
    /// Values of one bordered plane, `(h + 2p)·wp`.
    plane: usize,
    /// Values after the last plane that the largest shift reads, `(k − 1)(wp + 1)`.
    slack: usize,
}

impl Grid {
    pub(super) fn new(g: Geometry, h: usize, w: usize) -> Result<Self> {
        if g.stride != 1 {
            bail!("direct conv: stride {} (only stride 1)", g.stride)
        }
        let (k, p) = (g.kernel, g.pad);
        let (ho, wo) = (g.out_len(h)?, g.out_len(w)?);
        let wp = w + 2 * p;
        Ok(Self { k, p, h, w, wp, ho, wo, plane: (h + 2 * p) * wp, slack: (k - 1) * (wp + 1) })
    }

    /// Row length of a bordered chunk of `nb` images.
    fn ld(&self, nb: usize) -> usize {
        nb * self.plane + self.slack
    }

    /// The shift of kernel offset `(i, j)`.
    fn shift(&self, i: usize, j: usize) -> usize {
        i * self.wp + j
    }

    /// `m` images `x [m, C, h, w]` into the bordered `xpad [C, ld]` (borders and slack zero).
    fn pad_into(&self, x: &[f32], (m, c): (usize, usize), xpad: &mut [f32], ld: usize) {
        let (h, w, p, wp) = (self.h, self.w, self.p, self.wp);
        for (ci, row) in xpad[..c * ld].chunks_exact_mut(ld).enumerate() {
            row.fill(0.0);
            for bi in 0..m {
                let src = &x[(bi * c + ci) * h * w..][..h * w];
                let dst = &mut row[bi * self.plane..];
                for (r, line) in src.chunks_exact(w.max(1)).enumerate() {
                    dst[(r + p) * wp + p..][..w].copy_from_slice(line);
                }
            }
        }
    }
}

/// The operands of one stride-1 conv: `x [B, Cin, H, W]`, `w [Cout, Cin, k, k]` as values.
pub(super) struct Dims {
    pub(super) batch: usize,
    pub(super) cin: usize,
    pub(super) cout: usize,
    pub(super) grid: Grid,
}

impl Dims {
    fn split(&self) -> Split {
        Split::new((self.cin + self.cout) * self.grid.plane, self.batch)
    }
}

/// `out [B, Cout, Hout, Wout] = act(conv2d(x, w) + b)`; writes every value of `out`.
pub(super) fn forward(d: &Dims, x: &[f32], w: &[f32], b: &[f32], e: Epilogue, out: &mut [f32]) -> Result<()> {
    let Dims { cin, cout, grid: gr, .. } = *d;
    let (k, kk, l, img) = (gr.k, gr.k * gr.k, gr.ho * gr.wo, cin * gr.h * gr.w);
    let sp = d.split();
    let threads = sp.gemm_threads();
    sp.run(d.batch, out, cout * l, |first, n, out| {
        let nb = sp.nb;
        let (ldx, ldy) = (gr.ld(nb), nb * gr.plane);
        let mut xpad = Scratch::new(cin * ldx); // [Cin, ldx]
        let mut y = Scratch::new(cout * ldy); // [Cout, ldy], the whole grid
        for c0 in (0..n).step_by(nb) {
            let (m, b0) = (nb.min(n - c0), first + c0);
            gr.pad_into(&x[b0 * img..][..m * img], (m, cin), &mut xpad, ldx);
            let q = m * gr.plane;
            for i in 0..k {
                for j in 0..k {
                    // [q, Cout] (+)= xpad[:, shift..]ᵀ [q, Cin] · W[:, :, i, j]ᵀ [Cin, Cout]
                    gemm_strided(
                        (q, cout, cin),
                        &mut y,
                        (1, ldy),
                        i + j > 0,
                        &xpad[gr.shift(i, j)..],
                        (1, ldx),
                        &w[i * k + j..],
                        (kk, cin * kk),
                        threads,
                    );
                }
            }
            let outs = out[c0 * cout * l..][..m * cout * l].chunks_exact_mut(l);
            fastmath::with_simd(|| {
                for (plane, dst) in outs.enumerate() {
                    let (bi, co) = (plane / cout, plane % cout);
                    let src = &y[co * ldy + bi * gr.plane..];
                    let bias = b[co];
                    for (oh, row) in dst.chunks_exact_mut(gr.wo.max(1)).enumerate() {
                        e.map(row, &src[oh * gr.wp..][..gr.wo], |v| v + bias);
                    }
                }
            });
        }
        Ok(())
    })?;
    Ok(())
}

/// The gradients of [`forward`] from its output `yv` and the output's gradient `gv`: `dx`
/// written in full when `want_dx` (else empty), and `(dW, db)` (dW zero when not `want_dw`).
#[allow(clippy::too_many_arguments)]
pub(super) fn backward(
    d: &Dims,
    xv: &[f32],
    wv: &[f32],
    yv: &[f32],
    gv: &[f32],
    e: Epilogue,
    (want_dx, want_dw): (bool, bool),
    dx: &mut [f32],
) -> Result<(Vec<f32>, Vec<f32>)> {
    let Dims { cin, cout, grid: gr, .. } = *d;
    let (k, kk, l, hw) = (gr.k, gr.k * gr.k, gr.ho * gr.wo, gr.h * gr.w);
    let img = cin * hw;
    let sp = d.split();
    let threads = sp.gemm_threads();
    let parts = sp.run(d.batch, dx, img, |first, n, dx| {
        let nb = sp.nb;
        let (ldx, ldy) = (gr.ld(nb), nb * gr.plane);
        let mut xpad = Scratch::new(if want_dw { cin * ldx } else { 0 });
        let mut g = Scratch::new(cout * ldy); // [Cout, ldy]
        let mut dxpad = Scratch::new(if want_dx { cin * ldx } else { 0 });
        let (mut dw, mut db) = (vec![0f32; cout * cin * kk], vec![0f32; cout]);
        for c0 in (0..n).step_by(nb) {
            let (m, b0) = (nb.min(n - c0), first + c0);
            let q = m * gr.plane;
            // g = grad ⊙ act′(y) at the outputs, 0 at the dropped grid positions.
            let (ys, gs) = (&yv[b0 * cout * l..][..m * cout * l], &gv[b0 * cout * l..][..m * cout * l]);
            fastmath::with_simd(|| {
                for (co, row) in g.chunks_exact_mut(ldy).enumerate() {
                    row[..q].fill(0.0);
                    for bi in 0..m {
                        let at = (bi * cout + co) * l;
                        let (yp, gp) = (&ys[at..][..l], &gs[at..][..l]);
                        let dst = &mut row[bi * gr.plane..];
                        for oh in 0..gr.ho {
                            let r = oh * gr.wo..(oh + 1) * gr.wo;
                            db[co] += e.grad_into(&mut dst[oh * gr.wp..][..gr.wo], &yp[r.clone()], &gp[r]);
                        }
                    }
                }
            });
            if want_dw {
                gr.pad_into(&xv[b0 * img..][..m * img], (m, cin), &mut xpad, ldx);
                for i in 0..k {
                    for j in 0..k {
                        // dW[:, :, i, j] [Cout, Cin] += g [Cout, q] · xpad[:, shift..] [q, Cin]
                        gemm_strided(
                            (cout, cin, q),
                            &mut dw[i * k + j..],
                            (cin * kk, kk),
                            true,
                            &g,
                            (ldy, 1),
                            &xpad[gr.shift(i, j)..],
                            (1, ldx),
                            threads,
                        );
                    }
                }
            }
            if want_dx {
                dxpad[..cin * ldx].fill(0.0);
                for i in 0..k {
                    for j in 0..k {
                        // dxpad[:, shift..] [q, Cin] += gᵀ [q, Cout] · W[:, :, i, j] [Cout, Cin]
                        gemm_strided(
                            (q, cin, cout),
                            &mut dxpad[gr.shift(i, j)..],
                            (1, ldx),
                            true,
                            &g,
                            (1, ldy),
                            &wv[i * k + j..],
                            (cin * kk, kk),
                            threads,
                        );
                    }
                }
                // The inside of each bordered plane is the input's gradient.
                for (n_img, dimg) in dx[c0 * img..][..m * img].chunks_exact_mut(hw.max(1)).enumerate() {
                    let (bi, ci) = (n_img / cin, n_img % cin);
                    let src = &dxpad[ci * ldx + bi * gr.plane..];
                    for (r, line) in dimg.chunks_exact_mut(gr.w.max(1)).enumerate() {
                        line.copy_from_slice(&src[(r + gr.p) * gr.wp + gr.p..][..gr.w]);
                    }
                }
            }
        }
        Ok((dw, db))
    })?;
    Ok(sum_parts(parts))
}
