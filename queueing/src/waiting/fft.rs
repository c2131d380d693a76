//! A small radix-2 complex FFT for the lattice solve of [`super`] (power-of-two sizes only).
//!
//! Iterative decimation in time with a bit-reversal permutation and one contiguous twiddle table
//! per stage. The twiddles `e^{−2πij/n}` are computed with `sin_cos` on one octant and filled
//! in by symmetry, so they are correctly rounded to within an ulp; the transform's round-off is
//! then `O(ε log n)` relative to the largest coefficient.

/// A transform plan for one size `n = 2^k`.
#[derive(Debug, Clone)]
pub(crate) struct Fft {
    n: usize,
    /// `e^{−2πij/n}` for `j < n/2`: real and imaginary parts.
    root_re: Vec<f64>,
    root_im: Vec<f64>,
    /// Per-stage twiddles, stage with half-length `m` at offset `m − 1` (`m = 1, 2, 4, …`).
    stage_re: Vec<f64>,
    stage_im: Vec<f64>,
}

impl Fft {
    /// A plan for `n` points; `n` must be a power of two `≥ 2`.
    pub(crate) fn new(n: usize) -> Self {
        debug_assert!(n >= 2 && n.is_power_of_two());
        let half = n / 2;
        let mut root_re = vec![0.0; half];
        let mut root_im = vec![0.0; half];
        // Octant [0, n/8] by sin_cos, the rest of [0, n/2) by the symmetries of the circle.
        let eighth = n / 8;
        let quarter = n / 4;
        let step = std::f64::consts::TAU / n as f64;
        if n >= 8 {
            for j in 0..=eighth {
                let (s, c) = (step * j as f64).sin_cos();
                // angle θ = 2πj/n: e^{−iθ} = (c, −s)
                root_re[j] = c;
                root_im[j] = -s;
                // π/2 − θ: (s, −c)
                root_re[quarter - j] = s;
                root_im[quarter - j] = -c;
                // π/2 + θ: (−s, −c)
                if quarter + j < half {
                    root_re[quarter + j] = -s;
                    root_im[quarter + j] = -c;
                }
                // π − θ: (−c, −s)
                if j > 0 {
                    root_re[half - j] = -c;
                    root_im[half - j] = -s;
                }
            }
        } else {
            for j in 0..half {
                let (s, c) = (step * j as f64).sin_cos();
                root_re[j] = c;
                root_im[j] = -s;
            }
        }
        let mut stage_re = Vec::with_capacity(n);
        let mut stage_im = Vec::with_capacity(n);
        let mut m = 1;
        while m < n {
            let stride = n / (2 * m);
            for j in 0..m {
                stage_re.push(root_re[j * stride]);
                stage_im.push(root_im[j * stride]);
            }
            m *= 2;
        }
        Fft {
            n,
            root_re,
            root_im,
            stage_re,
            stage_im,
        }
    }

    /// `ω^k = e^{−2πik/n}` for any `k < n`.
    pub(crate) fn root(&self, k: usize) -> (f64, f64) {
        let half = self.n / 2;
        if k < half {
            (self.root_re[k], self.root_im[k])
        } else {
            (-self.root_re[k - half], -self.root_im[k - half])
        }
    }

    /// In-place forward transform `X_k = Σ_j x_j e^{−2πijk/n}`.
    pub(crate) fn forward(&self, re: &mut [f64], im: &mut [f64]) {
        debug_assert!(re.len() == self.n && im.len() == self.n);
        bit_reverse(re, im);
        let n = self.n;
        let mut m = 1;
        if n >= 4 {
            // The first two stages together (twiddles 1 and −i): a radix-4 pass.
            for (r, i) in re.chunks_exact_mut(4).zip(im.chunks_exact_mut(4)) {
                let (s01r, s01i) = (r[0] + r[1], i[0] + i[1]);
                let (d01r, d01i) = (r[0] - r[1], i[0] - i[1]);
                let (s23r, s23i) = (r[2] + r[3], i[2] + i[3]);
                let (d23r, d23i) = (r[2] - r[3], i[2] - i[3]);
                // −i·d23 = (d23i, −d23r)
                r[0] = s01r + s23r;
                i[0] = s01i + s23i;
                r[2] = s01r - s23r;
                i[2] = s01i - s23i;
                r[1] = d01r + d23i;
                i[1] = d01i - d23r;
                r[3] = d01r - d23i;
                i[3] = d01i + d23r;
            }
            m = 4;
        }
        while m < n {
            let wr = &self.stage_re[m - 1..2 * m - 1];
            let wi = &self.stage_im[m - 1..2 * m - 1];
            for (r, i) in re.chunks_exact_mut(2 * m).zip(im.chunks_exact_mut(2 * m)) {
                let (lo_re, hi_re) = r.split_at_mut(m);
                let (lo_im, hi_im) = i.split_at_mut(m);
                for ((((lr, li), hr), hi), (w_r, w_i)) in lo_re
                    .iter_mut()
                    .zip(lo_im.iter_mut())
                    .zip(hi_re.iter_mut())
                    .zip(hi_im.iter_mut())
                    .zip(wr.iter().zip(wi))
                {
                    let tr = *hr * w_r - *hi * w_i;
                    let ti = *hr * w_i + *hi * w_r;
                    let (ur, ui) = (*lr, *li);
                    *lr = ur + tr;
                    *li = ui + ti;
                    *hr = ur - tr;
                    *hi = ui - ti;
                }
            }
            m *= 2;
        }
    }

    /// In-place inverse transform without the `1/n` factor: `x_j = Σ_k X_k e^{+2πijk/n}`.
    pub(crate) fn inverse_unscaled(&self, re: &mut [f64], im: &mut [f64]) {
        // conj(FFT(conj(X))) = n · IFFT(X); conjugation of both ends = swapping re and im.
        self.forward(im, re);
    }
}

/// Bit-reversal permutation of both arrays.
fn bit_reverse(re: &mut [f64], im: &mut [f64]) {
    let n = re.len();
    let mut j = 0usize;
    for i in 1..n {
        let mut bit = n >> 1;
        while j & bit != 0 {
            j ^= bit;
            bit >>= 1;
        }
        j |= bit;
        if i < j {
            re.swap(i, j);
            im.swap(i, j);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_a_direct_dft() {
        for &n in &[2usize, 4, 8, 16, 64, 256] {
            let x_re: Vec<f64> = (0..n).map(|j| ((j * 7 + 3) % 11) as f64 - 5.0).collect();
            let x_im: Vec<f64> = (0..n).map(|j| ((j * 5 + 1) % 13) as f64 * 0.5).collect();
            let (mut re, mut im) = (x_re.clone(), x_im.clone());
            let f = Fft::new(n);
            f.forward(&mut re, &mut im);
            for k in 0..n {
                let (mut sr, mut si) = (0.0, 0.0);
                for j in 0..n {
                    let th = -std::f64::consts::TAU * (j * k % n) as f64 / n as f64;
                    let (s, c) = th.sin_cos();
                    sr += x_re[j] * c - x_im[j] * s;
                    si += x_re[j] * s + x_im[j] * c;
                }
                assert!(
                    (re[k] - sr).abs() < 1e-11 && (im[k] - si).abs() < 1e-11,
                    "n={n} k={k}"
                );
                let (wr, wi) = f.root(k);
                let th = -std::f64::consts::TAU * k as f64 / n as f64;
                assert!((wr - th.cos()).abs() < 1e-15 && (wi - th.sin()).abs() < 1e-15);
            }
            f.inverse_unscaled(&mut re, &mut im);
            for j in 0..n {
                assert!((re[j] / n as f64 - x_re[j]).abs() < 1e-12);
                assert!((im[j] / n as f64 - x_im[j]).abs() < 1e-12);
            }
        }
    }
}
