// The Newton loop of mlejax's batched logistic kernel, one fit after another,
// as an XLA FFI custom call on CPU (see mlejax/_native.py, which compiles
// this file once per machine and falls back to the XLA loop without it).
//
// It is the while_loop of mlejax._batched_kernel.chunk_kernel, statement for
// statement (start at 0, a fresh Hessian every pass, Armijo halving after one
// re-measure, the same stopping rules and status codes); each fit runs its
// own loop over its rows, which stay in L1, four rows to a vector (GCC vector
// extensions, a branch-free exp).
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <string>
#include <utility>
#include <vector>

#include "xla/ffi/api/c_api.h"

#ifndef MLEJAX_P
#define MLEJAX_P 5
#endif

namespace {

constexpr int kMaxHalvings = 40;  // mlejax._batched_kernel.MAX_HALVINGS
constexpr double kSeparationMargin = 20.0;  // ..._batched_kernel.SEPARATION_MARGIN
// mlejax.status.Status
constexpr int64_t kConverged = 0, kMaxIter = 1, kLineSearch = 2, kNonFinite = 3;

// mlejax._math.exp_nonpos: exp(x) for x <= 0, Cody-Waite reduction and the
// degree-13 Taylor polynomial by Estrin's scheme, 2**k from the exponent bits
// in two factors; on four lanes, branch-free.
typedef double v4 __attribute__((vector_size(32)));
typedef int64_t v4i __attribute__((vector_size(32)));

static inline v4 load4(const double* p) {
  v4 v;
  __builtin_memcpy(&v, p, sizeof(v));
  return v;
}

static inline void store4(double* p, v4 v) { __builtin_memcpy(p, &v, sizeof(v)); }

static inline v4 splat(double a) { return v4{a, a, a, a}; }

static inline double hsum(v4 v) { return (v[0] + v[1]) + (v[2] + v[3]); }

static inline v4 exp_nonpos4(v4 x) {
  const v4 magic = splat(6755399441055744.0);
  v4 xc = x > splat(-746.0) ? x : splat(-746.0);
  v4 kf = (xc * splat(1.4426950408889634) + magic) - magic;
  v4i k = (v4i)(kf + magic) - 0x4338000000000000LL;
  v4 r = (xc - kf * splat(0.6931471803691238)) - kf * splat(1.9082149292705877e-10);
  v4 r2 = r * r, r4 = r2 * r2;
  v4 q0 = splat(1.0) + splat(1.0) * r;
  v4 q1 = splat(0.5) + splat(0.16666666666666666) * r;
  v4 q2 = splat(0.041666666666666664) + splat(0.008333333333333333) * r;
  v4 q3 = splat(0.001388888888888889) + splat(0.0001984126984126984) * r;
  v4 q4 = splat(2.48015873015873e-05) + splat(2.7557319223985893e-06) * r;
  v4 q5 = splat(2.755731922398589e-07) + splat(2.505210838544172e-08) * r;
  v4 q6 = splat(2.08767569878681e-09) + splat(1.6059043836821613e-10) * r;
  v4 u0 = (q0 + q1 * r2) + (q2 + q3 * r2) * r4;
  v4 u1 = (q4 + q5 * r2) + q6 * r4;
  v4 poly = u0 + u1 * (r4 * r4);
  v4i k1 = k >> 1;
  v4 s1 = (v4)((k1 + 1023) << 52);
  v4 s2 = (v4)((k - k1 + 1023) << 52);
  v4 out = (poly * s1) * s2;
  out = x < splat(-746.0) ? splat(0.0) : out;
  return x != x ? x : out;
}

// One fit's data and scratch. Rows are padded to a multiple of 4 (N) with
// X = 0, w = 0, y = 0, offset = 0: such a row adds nothing to any sum.
template <int P>
struct Fit {
  static constexpr int Q = P * (P + 1) / 2;
  int n, N;  // rows, padded rows
  bool unit;  // every weight 0 or 1: sum log1p as the logs of four lanes'
              // products (rounding at most n eps)
  double* Xt;  // (P, N)
  const double *y, *w, *off;  // (N,)
  double *w0, *wy;  // (N,)
  double *eta, *e, *et, *ebest, *scr;  // (N,)

  // The NLL at eta_t = eta - t X d (written to et, its exp(-|eta_t|) to
  // e_out) given lin_t = sum(wy eta_t): sum w0 log1p(e) + sum w0 max(eta_t, 0)
  // - lin_t (without weights, the log1p sum is one log of a product).
  double value_at(const double* d, double t, double lin_t, double* e_out) const {
    const v4 zero = splat(0.0), one = splat(1.0), tv = splat(t);
    v4 posv = zero;
    double s = 0.0;
    // every factor of a lane's product is at most 2: a log every 1023 of them
    for (int b = 0; b < N; b += 4 * 1023) {
      const int end = b + 4 * 1023 < N ? b + 4 * 1023 : N;
      v4 prodv = one;
      for (int i = b; i < end; i += 4) {
        v4 xd = zero;
        for (int a = 0; a < P; ++a) xd += splat(d[a]) * load4(Xt + a * N + i);
        v4 v = load4(eta + i) - tv * xd;
        store4(et + i, v);
        v4 e = exp_nonpos4(v < zero ? v : -v);
        store4(e_out + i, e);
        v4 w0v = load4(w0 + i);
        posv += w0v * (v > zero ? v : zero);
        prodv *= w0v > zero ? one + e : one;
      }
      if (unit)
        s += (std::log(prodv[0]) + std::log(prodv[1])) +
             (std::log(prodv[2]) + std::log(prodv[3]));
    }
    if (!unit)
      for (int i = 0; i < n; ++i) s += w0[i] * std::log1p(e_out[i]);
    return s + hsum(posv) - lin_t;
  }

  // gradient (P) and packed Hessian (Q) at eta / e, in one pass over the
  // rows, four rows to a vector and every sum its own accumulator
  void grad_hess(double* g, double* Hp) const {
    v4 ag[P], ah[Q];
    for (int a = 0; a < P; ++a) ag[a] = splat(0.0);
    for (int k = 0; k < Q; ++k) ah[k] = splat(0.0);
    const v4 one = splat(1.0), zero = splat(0.0);
    for (int i = 0; i < N; i += 4) {
      v4 ev = load4(e + i), w0v = load4(w0 + i);
      v4 inv = one / (one + ev);
      v4 mu = (load4(eta + i) >= zero ? one : ev) * inv;
      v4 wr = w0v * (mu - load4(y + i));
      v4 wh = w0v * (ev * inv * inv);
      v4 x[P];
      for (int a = 0; a < P; ++a) x[a] = load4(Xt + a * N + i);
      int k = 0;
      for (int a = 0; a < P; ++a) {
        ag[a] += x[a] * wr;
        v4 t = x[a] * wh;
        for (int b = a; b < P; ++b) ah[k++] += t * x[b];
      }
    }
    for (int a = 0; a < P; ++a) g[a] = hsum(ag[a]);
    for (int k = 0; k < Q; ++k) Hp[k] = hsum(ah[k]);
  }

  // packed sum_i wts_i x_i x_i' (the robust covariance's meat)
  void gram(const double* wts, double* out) const {
    v4 ah[Q];
    for (int k = 0; k < Q; ++k) ah[k] = splat(0.0);
    for (int i = 0; i < N; i += 4) {
      v4 wv = load4(wts + i);
      v4 x[P];
      for (int a = 0; a < P; ++a) x[a] = load4(Xt + a * N + i);
      int k = 0;
      for (int a = 0; a < P; ++a) {
        v4 t = x[a] * wv;
        for (int b = a; b < P; ++b) ah[k++] += t * x[b];
      }
    }
    for (int k = 0; k < Q; ++k) out[k] = hsum(ah[k]);
  }
};

// H^-1 g by a Cholesky of the packed upper triangle Hp (the order of
// mlejax._batched_kernel._chol_step); NaN on a non-positive pivot.
template <int P>
static void chol_step(const double* Hp, const double* g, double* d) {
  double L[P][P];
  int pos[P][P];
  for (int i = 0, k = 0; i < P; ++i)
    for (int j = i; j < P; ++j) pos[i][j] = k++;
  const double nan = std::numeric_limits<double>::quiet_NaN();
  for (int j = 0; j < P; ++j) {
    double s = 0.0;
    for (int k = 0; k < j; ++k) s += L[j][k] * L[j][k];
    double acc = Hp[pos[j][j]] - s;
    L[j][j] = std::sqrt(acc > 0 ? acc : nan);
    for (int i = j + 1; i < P; ++i) {
      double s2 = 0.0;
      for (int k = 0; k < j; ++k) s2 += L[i][k] * L[j][k];
      L[i][j] = (Hp[pos[j][i]] - s2) / L[j][j];
    }
  }
  double z[P];
  for (int i = 0; i < P; ++i) {
    double s = 0.0;
    for (int k = 0; k < i; ++k) s += L[i][k] * z[k];
    z[i] = (g[i] - s) / L[i][i];
  }
  for (int i = P - 1; i >= 0; --i) {
    double s = 0.0;
    for (int k = i + 1; k < P; ++k) s += L[k][i] * d[k];
    d[i] = (z[i] - s) / L[i][i];
  }
}

// stats columns (see mlejax._batched_kernel._native_loop)
enum { kNobs, kNpos, kSw, kSwy, kSwo, kF0, kOk, kNearSep, kHasConst, kNoOff, kNullDev, kStats };

struct Out {
  double *x, *cov, *f, *trace, *rcov, *stats;
  int64_t *n_iter, *status;
};

// mlejax.inference.inverse_information: the inverse of the packed H by one
// Cholesky of its equilibration D H D (D = diag(H)^-1/2); all NaN when H is
// not positive definite or numerically singular (a pivot^2 <= 64 P eps).
template <int P>
static void inverse_info(const double* Hp, double* cov) {
  const double nan = std::numeric_limits<double>::quiet_NaN();
  double A[P][P], L[P][P] = {}, Li[P][P] = {}, dd[P];
  for (int i = 0, k = 0; i < P; ++i)
    for (int j = i; j < P; ++j, ++k) A[i][j] = A[j][i] = Hp[k];
  bool ok = true;
  for (int i = 0; i < P; ++i) {
    ok = ok && A[i][i] > 0;
    dd[i] = A[i][i] > 0 ? 1.0 / std::sqrt(A[i][i]) : nan;
  }
  double piv = INFINITY;
  for (int j = 0; j < P && ok; ++j) {
    double s = A[j][j] * dd[j] * dd[j];
    for (int k = 0; k < j; ++k) s -= L[j][k] * L[j][k];
    if (!(s > 0)) {
      ok = false;
      break;
    }
    L[j][j] = std::sqrt(s);
    piv = L[j][j] < piv ? L[j][j] : piv;
    for (int i = j + 1; i < P; ++i) {
      double t = A[i][j] * dd[i] * dd[j];
      for (int k = 0; k < j; ++k) t -= L[i][k] * L[j][k];
      L[i][j] = t / L[j][j];
    }
  }
  ok = ok && !(piv * piv <= 64 * P * std::numeric_limits<double>::epsilon());
  if (!ok) {
    for (int k = 0; k < P * P; ++k) cov[k] = nan;
    return;
  }
  for (int j = 0; j < P; ++j) {  // Li = L^-1, column by column
    Li[j][j] = 1.0 / L[j][j];
    for (int i = j + 1; i < P; ++i) {
      double t = 0.0;
      for (int k = j; k < i; ++k) t += L[i][k] * Li[k][j];
      Li[i][j] = -t / L[i][i];
    }
  }
  for (int i = 0; i < P; ++i)  // (D H D)^-1 = Li' Li, scaled back by D
    for (int j = 0; j < P; ++j) {
      double t = 0.0;
      for (int k = (i > j ? i : j); k < P; ++k) t += Li[k][i] * Li[k][j];
      cov[i * P + j] = t * dd[i] * dd[j];
    }
}

// cov M cov for the packed meat M (the robust sandwich)
template <int P>
static void sandwich(const double* cov, const double* Mp, double* out) {
  double M[P][P], T[P][P];
  for (int i = 0, k = 0; i < P; ++i)
    for (int j = i; j < P; ++j, ++k) M[i][j] = M[j][i] = Mp[k];
  for (int i = 0; i < P; ++i)
    for (int j = 0; j < P; ++j) {
      double t = 0.0;
      for (int k = 0; k < P; ++k) t += cov[i * P + k] * M[k][j];
      T[i][j] = t;
    }
  for (int i = 0; i < P; ++i)
    for (int j = 0; j < P; ++j) {
      double t = 0.0;
      for (int k = 0; k < P; ++k) t += T[i][k] * cov[k * P + j];
      out[i * P + j] = t;
    }
}

// The intercept-only NLL at eta = off + c (mlejax._batched_kernel._nll_rows)
static double null_nll(const double* off, const double* w0, const double* wy, int n,
                       double c) {
  double s = 0.0;
  for (int i = 0; i < n; ++i) {
    const double eta = off[i] + c;
    s += w0[i] * (std::log1p(std::exp(-std::fabs(eta))) + (eta > 0 ? eta : 0.0)) -
         wy[i] * eta;
  }
  return s;
}

// mlejax._batched_kernel._null_deviance for one fit: 2 f0 without a constant
// column; logit(ybar) in closed form without an offset; else the general
// path's safeguarded scalar Newton on the intercept.
static double null_deviance(const double* off, const double* w0, const double* wy,
                            int n, double sw, double swy, double swo, double nobs,
                            double f0, bool has_const, bool no_off) {
  if (!has_const) return 2.0 * f0;
  const double ybar = swy / sw;
  double c = std::log(ybar) - std::log1p(-ybar);
  c = std::isfinite(c) ? c - swo / nobs : 0.0;
  if (no_off)
    return 2.0 * (sw * (std::log1p(std::exp(-std::fabs(c))) + (c > 0 ? c : 0.0))) -
           2.0 * c * swy;
  double t = 1.0, fc = null_nll(off, w0, wy, n, c);
  for (int k = 0; k < 30; ++k) {
    double g = 0.0, h = 0.0;
    for (int i = 0; i < n; ++i) {
      const double mu = 1.0 / (1.0 + std::exp(-(off[i] + c)));
      g += w0[i] * mu - wy[i];
      h += w0[i] * (mu * (1.0 - mu));
    }
    const double d = -g / (h > 0 ? h : std::fabs(g) + 1.0);
    const double cn = c + t * d;
    const double fn = null_nll(off, w0, wy, n, cn);
    const bool ok = std::isfinite(fn) && fn <= fc;
    const bool small = std::fabs(t * d) <= 1e-12 * (1.0 + std::fabs(c));
    if (ok) c = cn, fc = fn;
    t = ok ? (2.0 * t < 1.0 ? 2.0 * t : 1.0) : 0.25 * t;
    if (small || !std::isfinite(d)) break;
  }
  return 2.0 * null_nll(off, w0, wy, n, c);
}

template <int P>
static void fit_one(Fit<P>& F, double tol, int64_t max_iter, bool robust, Out o) {
  const int N = F.N;
  const double eps = std::numeric_limits<double>::epsilon();
  const double nan = std::numeric_limits<double>::quiet_NaN();
  for (int64_t k = 0; k <= max_iter; ++k) o.trace[k] = nan;
  double x[P] = {0}, g[P], d[P], gy[P], H[Fit<P>::Q], meat[Fit<P>::Q];
  // the data's summaries (diagnostics.input_ok, the null deviance's sums)
  const v4 zero = splat(0.0), one = splat(1.0);
  v4 nobs = zero, npos = zero, sw = zero, swy = zero, swo = zero, lin4 = zero;
  v4i badr = {0, 0, 0, 0}, offr = {0, 0, 0, 0}, w01 = {0, 0, 0, 0};
  for (int i = 0; i < N; i += 4) {
    v4 wv = load4(F.w + i), yv = load4(F.y + i), ov = load4(F.off + i);
    v4i pos = wv > zero;
    v4 w0 = pos ? wv : zero, wy = pos ? wv * yv : zero;
    store4(F.w0 + i, w0);
    store4(F.wy + i, wy);
    nobs += wv;
    npos += pos ? one : zero;
    sw += w0;
    swy += wy;
    swo += pos ? wv * ov : zero;
    lin4 += wy * ov;
    // finite: x - x == 0 (NaN and inf give NaN)
    v4i fin = ((ov - ov) == zero) & ((wv - wv) == zero) & (wv >= zero);
    v4i yok = ~pos | (yv == zero) | (yv == one);
    badr |= ~(fin & yok);
    w01 |= (wv != zero) & (wv != one);
    offr |= pos & (ov != zero);
  }
  const bool ok = !(badr[0] | badr[1] | badr[2] | badr[3]);
  F.unit = !(w01[0] | w01[1] | w01[2] | w01[3]);
  const bool no_off = !(offr[0] | offr[1] | offr[2] | offr[3]);
  int first = 0;
  for (int i = 0; i < F.n; ++i)
    if (F.w[i] > 0) {
      first = i;
      break;
    }
  bool has_const = false;
  for (int a = 0; a < P; ++a) {
    const double* xa = F.Xt + a * N;
    const v4 r0 = splat(xa[first]);
    v4i differ = {0, 0, 0, 0};
    v4 s = zero;
    for (int i = 0; i < N; i += 4) {
      v4 xv = load4(xa + i), wv = load4(F.w + i);
      differ |= (wv > zero) & (xv != r0);
      s += xv * load4(F.wy + i);
    }
    gy[a] = hsum(s);
    has_const = has_const || (!(differ[0] | differ[1] | differ[2] | differ[3]) && xa[first] != 0);
  }
  std::memcpy(F.eta, F.off, sizeof(double) * N);
  double lin = hsum(lin4);
  for (int a = 0; a < P; ++a) d[a] = 0.0;
  double f = F.value_at(d, 0.0, lin, F.e);
  const double f0 = f;
  double rel = INFINITY;
  bool tiny = false, ls_fail = false, bad = false;
  int64_t n_iter = 0, status = kMaxIter;
  for (int64_t k = 0;; ++k) {
    F.grad_hess(g, H);
    bool conv = (n_iter > 0) && (((rel <= tol) && !ls_fail) || tiny) && !bad;
    bool stop = conv || ls_fail || bad || (n_iter >= max_iter);
    double gs = 0.0;
    for (int a = 0; a < P; ++a) gs += g[a];
    bool nonfinite = !std::isfinite(f) || !std::isfinite(gs) || bad;
    status = conv ? kConverged : nonfinite ? kNonFinite : ls_fail ? kLineSearch : kMaxIter;
    o.trace[k] = f;
    if (stop || nonfinite) break;
    chol_step<P>(H, g, d);
    double ds = 0.0;
    for (int a = 0; a < P; ++a) ds += d[a];
    bool d_ok = std::isfinite(ds);
    if (!d_ok)
      for (int a = 0; a < P; ++a) d[a] = 0.0;
    double slope = 0.0, dy = 0.0;
    for (int a = 0; a < P; ++a) slope += g[a] * d[a], dy += d[a] * gy[a];
    const double slack = 256 * eps * std::fabs(f);
    auto armijo = [&](double t, double fn, double fr) {
      return (fn <= fr - 1e-4 * t * slope + slack) && std::isfinite(fn);
    };
    double t = 1.0, f_ref = f;
    double f_new = F.value_at(d, 1.0, lin - dy, F.ebest);
    int j = 0;
    bool measured = false;
    while (!armijo(t, f_new, f_ref) && j < kMaxHalvings) {
      if (measured) {
        t = 0.5 * t;
        f_new = F.value_at(d, t, lin - t * dy, F.ebest);
        ++j;
      } else {
        f_ref = F.value_at(d, 0.0, lin, F.scr);  // the re-measure at t = 0
      }
      measured = true;
    }
    bool ls_ok = (j < kMaxHalvings) || armijo(t, f_new, f_ref);
    double x_new[P];
    double r = 0.0;
    for (int a = 0; a < P; ++a) {
      x_new[a] = ls_ok ? x[a] - t * d[a] : x[a];
      double v = std::fabs(x_new[a] - x[a]) / (1.0 + std::fabs(x[a]));
      r = (v > r || v != v) ? v : r;
    }
    tiny = d_ok && (0.5 * std::fabs(slope) <= 64 * eps * (1.0 + std::fabs(f)));
    if (ls_ok) {
      // the accepted point: et holds the last value_at's eta, the accepted
      // t's unless the re-measure at 0 came last (then evaluate t again)
      if (measured && j == 0) f_new = F.value_at(d, t, lin - t * dy, F.ebest);
      std::swap(F.eta, F.et);  // (et, ebest are scratch again)
      std::swap(F.e, F.ebest);
      f = f_new;
      lin = lin - t * dy;
      for (int a = 0; a < P; ++a) x[a] = x_new[a];
    }
    rel = r;
    ls_fail = !ls_ok;
    bad = !d_ok;
    ++n_iter;
  }
  for (int a = 0; a < P; ++a) o.x[a] = x[a];
  *o.f = f;
  *o.n_iter = n_iter;
  *o.status = status;
  // the separation margin at the final eta; the meat at the final mean
  v4i near = {0, 0, 0, 0};
  for (int i = 0; i < N; i += 4) {
    v4 yv = load4(F.y + i);
    v4 sgn = load4(F.w + i) > zero ? splat(2.0) * yv - one : zero;
    near |= (sgn * load4(F.eta + i)) >= splat(kSeparationMargin);
  }
  const bool near_sep = near[0] | near[1] | near[2] | near[3];
  if (robust) {
    for (int i = 0; i < N; i += 4) {
      v4 ev = load4(F.e + i);
      v4 inv = one / (one + ev);
      v4 mu = (load4(F.eta + i) >= zero ? one : ev) * inv;
      v4 r = mu - load4(F.y + i);
      store4(F.scr + i, load4(F.w0 + i) * r * r);  // w0 r^2
    }
    F.gram(F.scr, meat);
  }
  inverse_info<P>(H, o.cov);  // at the stopping pass's (final) point
  if (robust) {
    sandwich<P>(o.cov, meat, o.rcov);
  } else {
    for (int k = 0; k < P * P; ++k) o.rcov[k] = 0.0;
  }
  double* st = o.stats;
  st[kNobs] = hsum(nobs);
  st[kNpos] = hsum(npos);
  st[kSw] = hsum(sw);
  st[kSwy] = hsum(swy);
  st[kSwo] = hsum(swo);
  st[kF0] = f0;
  st[kOk] = ok;
  st[kNearSep] = near_sep;
  st[kHasConst] = has_const;
  st[kNoOff] = no_off;
  st[kNullDev] = null_deviance(F.off, F.w0, F.wy, F.n, st[kSw], st[kSwy], st[kSwo],
                               st[kNobs], f0, has_const, no_off);
}

// The inputs' strides between fits: 0 for an argument shared by every fit.
struct Strides {
  int64_t X, y, w, off;
};

template <int P>
static void run(const double* X, const double* y, const double* w, const double* off,
                const double* tol, Strides sd, int64_t C, int64_t n, int64_t max_iter,
                bool robust, double* x, double* cov, double* f, int64_t* n_iter,
                int64_t* status, double* trace, double* rcov, double* stats) {
  const int N = (int)((n + 3) / 4 * 4);
  std::vector<double> buf((size_t)(P + 10) * N, 0.0);
  Fit<P> F;
  F.n = (int)n;
  F.N = N;
  double* s = buf.data();
  F.Xt = s;
  s += (size_t)P * N;
  double *yb = s, *wb = s + N, *ob = s + 2 * N;  // padded copies (n % 4 != 0)
  s += 3 * N;
  for (double** b : {&F.w0, &F.wy, &F.eta, &F.e, &F.et, &F.ebest, &F.scr}) {
    *b = s;
    s += N;
  }
  for (int64_t c = 0; c < C; ++c) {
    const double* Xc = X + c * sd.X;
    if (c == 0 || sd.X != 0)
      for (int64_t i = 0; i < n; ++i)
        for (int a = 0; a < P; ++a) F.Xt[a * N + i] = Xc[i * P + a];
    if (N == n) {  // no padding: the inputs themselves
      F.y = y + c * sd.y;
      F.w = w + c * sd.w;
      F.off = off + c * sd.off;
    } else {
      std::memcpy(yb, y + c * sd.y, sizeof(double) * n);
      std::memcpy(wb, w + c * sd.w, sizeof(double) * n);
      std::memcpy(ob, off + c * sd.off, sizeof(double) * n);
      F.y = yb;
      F.w = wb;
      F.off = ob;
    }
    Out o{x + c * P,           cov + c * P * P, f + c,      trace + c * (max_iter + 1),
          rcov + c * P * P,    stats + c * kStats, n_iter + c, status + c};
    fit_one<P>(F, tol[c], max_iter, robust, o);
  }
}

static XLA_FFI_Error* fail(const XLA_FFI_CallFrame* cf, const char* msg) {
  XLA_FFI_Error_Create_Args e;
  e.struct_size = XLA_FFI_Error_Create_Args_STRUCT_SIZE;
  e.extension_start = nullptr;
  e.message = msg;
  e.errc = XLA_FFI_Error_Code_INVALID_ARGUMENT;
  return cf->api->XLA_FFI_Error_Create(&e);
}

// XLA asks a handler for its API version by a call with the metadata
// extension: answer it (true) or go on (false).
static bool metadata(XLA_FFI_CallFrame* cf) {
  if (cf->extension_start == nullptr ||
      cf->extension_start->type != XLA_FFI_Extension_Metadata)
    return false;
  auto* ext = reinterpret_cast<XLA_FFI_Metadata_Extension*>(cf->extension_start);
  ext->metadata->api_version = XLA_FFI_Api_Version{
      XLA_FFI_Api_Version_STRUCT_SIZE, nullptr, XLA_FFI_API_MAJOR, XLA_FFI_API_MINOR};
  ext->metadata->traits = 0;
  ext->metadata->state_type_id = XLA_FFI_TypeId{0};
  return true;
}

}  // namespace

// exp_nonpos4 over a float64 buffer (of any shape), for its accuracy test
// against mpmath (tests/test_native.py): the kernel's own exp, not a copy.
extern "C" __attribute__((visibility("default"))) XLA_FFI_Error* MlejaxExpNonpos(
    XLA_FFI_CallFrame* cf) {
  if (metadata(cf)) return nullptr;
  if (cf->stage != XLA_FFI_ExecutionStage_EXECUTE) return fail(cf, "execute stage only");
  if (cf->args.size != 1 || cf->rets.size != 1) return fail(cf, "one arg, one result");
  auto* x = static_cast<XLA_FFI_Buffer*>(cf->args.args[0]);
  auto* out = static_cast<XLA_FFI_Buffer*>(cf->rets.rets[0]);
  if (x->dtype != XLA_FFI_DataType_F64 || out->dtype != XLA_FFI_DataType_F64)
    return fail(cf, "float64 only");
  int64_t size = 1;
  for (int64_t k = 0; k < x->rank; ++k) size *= x->dims[k];
  const double* in = static_cast<const double*>(x->data);
  double* o = static_cast<double*>(out->data);
  for (int64_t i = 0; i < size; i += 4) {
    double buf[4] = {0, 0, 0, 0};
    const int64_t m = size - i < 4 ? size - i : 4;
    for (int64_t j = 0; j < m; ++j) buf[j] = in[i + j];
    const v4 e = exp_nonpos4(load4(buf));
    for (int64_t j = 0; j < m; ++j) o[i + j] = e[j];
  }
  return nullptr;
}

// The handler, on XLA's C API (its C++ wrapper, ffi.h, costs seconds of
// compile): args X (C, n, p), y, w, offset (C, n), tol (C,), any of the first
// four with a leading 1 when shared; attrs max_iter (int64), robust (bool);
// rets x (C, p), cov (C, p, p), f (C,), n_iter, status (C,) int64, trace
// (C, max_iter + 1), robust cov (C, p, p), stats (C, kStats).
extern "C" __attribute__((visibility("default"))) XLA_FFI_Error* MlejaxLogitNewton(
    XLA_FFI_CallFrame* cf) {
  if (metadata(cf)) return nullptr;
  if (cf->stage != XLA_FFI_ExecutionStage_EXECUTE) return fail(cf, "execute stage only");
  if (cf->args.size != 5 || cf->rets.size != 8 || cf->attrs.size != 2)
    return fail(cf, "mlejax_logit_newton: 5 args, 8 results, 2 attributes");
  XLA_FFI_Buffer* in[5];
  for (int i = 0; i < 5; ++i) {
    if (cf->args.types[i] != XLA_FFI_ArgType_BUFFER) return fail(cf, "buffer args only");
    in[i] = static_cast<XLA_FFI_Buffer*>(cf->args.args[i]);
    if (in[i]->dtype != XLA_FFI_DataType_F64) return fail(cf, "float64 args only");
  }
  XLA_FFI_Buffer* out[8];
  for (int i = 0; i < 8; ++i) {
    if (cf->rets.types[i] != XLA_FFI_RetType_BUFFER) return fail(cf, "buffer results only");
    out[i] = static_cast<XLA_FFI_Buffer*>(cf->rets.rets[i]);
    const bool int_ret = i == 3 || i == 4;
    if (out[i]->dtype != (int_ret ? XLA_FFI_DataType_S64 : XLA_FFI_DataType_F64))
      return fail(cf, "result dtypes: float64, n_iter and status int64");
  }
  int64_t max_iter = -1;
  int robust = -1;
  for (int i = 0; i < 2; ++i) {  // sorted by name: max_iter, robust
    if (cf->attrs.types[i] != XLA_FFI_AttrType_SCALAR) return fail(cf, "scalar attributes");
    const XLA_FFI_ByteSpan* name = cf->attrs.names[i];
    const auto* sc = static_cast<const XLA_FFI_Scalar*>(cf->attrs.attrs[i]);
    const std::string key(name->ptr, name->len);
    if (key == "max_iter" && sc->dtype == XLA_FFI_DataType_S64)
      max_iter = *static_cast<const int64_t*>(sc->value);
    else if (key == "robust" && sc->dtype == XLA_FFI_DataType_PRED)
      robust = *static_cast<const bool*>(sc->value) ? 1 : 0;
  }
  if (max_iter < 0 || robust < 0)
    return fail(cf, "attributes: max_iter (int64 >= 0), robust (bool)");
  const XLA_FFI_Buffer *X = in[0], *y = in[1], *w = in[2], *off = in[3], *tol = in[4];
  if (X->rank != 3 || X->dims[2] != MLEJAX_P) return fail(cf, "X must be (C, n, p)");
  const int64_t n = X->dims[1], C = out[2]->dims[0];  // fits: f is (C,)
  for (const XLA_FFI_Buffer* b : {X, y, w, off})
    if (b->dims[0] != 1 && b->dims[0] != C) return fail(cf, "inputs must have C or 1 fits");
  auto stride = [&](const XLA_FFI_Buffer* b, int64_t per) -> int64_t {
    return b->dims[0] == 1 ? 0 : per;
  };
  Strides sd{stride(X, n * MLEJAX_P), stride(y, n), stride(w, n), stride(off, n)};
  auto f64 = [](XLA_FFI_Buffer* b) { return static_cast<double*>(b->data); };
  auto s64 = [](XLA_FFI_Buffer* b) { return static_cast<int64_t*>(b->data); };
  run<MLEJAX_P>(static_cast<const double*>(X->data), static_cast<const double*>(y->data),
                static_cast<const double*>(w->data), static_cast<const double*>(off->data),
                static_cast<const double*>(tol->data), sd, C, n, max_iter, robust != 0,
                f64(out[0]), f64(out[1]), f64(out[2]), s64(out[3]), s64(out[4]),
                f64(out[5]), f64(out[6]), f64(out[7]));
  return nullptr;
}
