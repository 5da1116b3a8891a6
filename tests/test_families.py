"""Families: log_prob against scipy.stats and mpmath, stability, jit/vmap, checks.

The references lie outside the code under test: ``scipy.stats`` log-densities
in float64, and the textbook densities in their usual parameters (mean, p,
NB ``r = 1/alpha``, Gamma ``theta = mu/shape``) evaluated by mpmath at 50
significant digits. mpmath covers the far tails, where scipy's probability
parameter rounds the answer away (``log(p)`` with ``p = 1 - 1e-13``).

Tolerance: ``|ours - ref| <= 1e-12 |ref| + 32 eps M``, where ``M`` is the size
of the largest term of the textbook sum (``cancellation_floor``). Where no term
cancels (Bernoulli, Categorical), ``M = 0`` and the comparison is purely
relative, down to log-probabilities of ``-1e-13``. Where a result near 0 comes
out of large terms (a log-density crossing 0, Poisson near its mode), no
float64 formula, scipy's included, does better than the rounding of those terms.
"""

from __future__ import annotations

import dataclasses
import functools

import chex
import jax
import jax.numpy as jnp
import mpmath as mp
import numpy as np
import pytest
import scipy.stats as st
from absl.testing import parameterized
from hypothesis import given, settings
from hypothesis import strategies as hs
from hypothesis.extra import numpy as hnp
from problems import EPS, EPS32
from scipy.special import expit, gammaln, softmax

import mlejax as mj

F = mj.families
N = 8  # every hypothesis example has this shape, so each function compiles once
K = 4  # classes of the Categorical under test
SAMPLE_NAMES = [
    "Gaussian",
    "Bernoulli",
    "Binomial",
    "Categorical",
    "Poisson",
    "Laplace",
    "StudentT",
    "StudentT_df3",
    "Gamma",
    "NegativeBinomial",
]


# -- references ---------------------------------------------------------------
def _bern_logs(e):
    """(log p, log(1 - p)) for p = 1/(1 + exp(-e)), exactly in mpmath."""
    return -mp.log1p(mp.exp(-e)), -mp.log1p(mp.exp(e))


def _mp_bernoulli(y, e):
    log_p, log_q = _bern_logs(e)
    return y * log_p + (1 - y) * log_q


def _mp_binomial(y, e, trials):
    log_p, log_q = _bern_logs(e)
    log_comb = mp.log(mp.binomial(trials, y))
    return log_comb + y * log_p + (trials - y) * log_q


def _mp_student(y, e, scale, df):
    z = (y - e) / scale
    return (
        mp.loggamma((df + 1) / 2)
        - mp.loggamma(df / 2)
        - mp.log(mp.sqrt(df * mp.pi) * scale)
        - (df + 1) / 2 * mp.log(1 + z * z / df)
    )


def _mp_gamma(y, e, shape):
    theta = mp.exp(e) / shape  # scale of the gamma distribution, mean shape*theta
    return (
        (shape - 1) * mp.log(y) - y / theta - mp.loggamma(shape) - shape * mp.log(theta)
    )


def _mp_negbin(y, e, alpha):
    r, mu = 1 / alpha, mp.exp(e)
    return (
        mp.loggamma(y + r)
        - mp.loggamma(r)
        - mp.loggamma(y + 1)
        + r * mp.log(r / (r + mu))
        + y * mp.log(mu / (r + mu))
    )


#: textbook log p(y | eta) in mpmath, keyed by family name
MP_LOGP = {
    "Gaussian": lambda y, e, scale: (
        -((y - e) ** 2) / (2 * scale**2) - mp.log(scale * mp.sqrt(2 * mp.pi))
    ),
    "Bernoulli": _mp_bernoulli,
    "Binomial": _mp_binomial,
    "Poisson": lambda y, e: y * e - mp.exp(e) - mp.loggamma(y + 1),
    "Laplace": lambda y, e, scale: -abs(y - e) / scale - mp.log(2 * scale),
    "StudentT": _mp_student,
    "Gamma": _mp_gamma,
    "NegativeBinomial": _mp_negbin,
}

#: textbook score d log p / d eta in mpmath
MP_SCORE = {
    "Gaussian": lambda y, e, scale: (y - e) / scale**2,
    "Bernoulli": lambda y, e: y - 1 / (1 + mp.exp(-e)),
    "Binomial": lambda y, e, trials: y - trials / (1 + mp.exp(-e)),
    "Poisson": lambda y, e: y - mp.exp(e),
    "Laplace": lambda y, e, scale: mp.sign(y - e) / scale,
    "StudentT": lambda y, e, scale, df: (
        (df + 1) * (y - e) / scale / (df * scale + (y - e) ** 2 / scale)
    ),
    "Gamma": lambda y, e, shape: shape * (y * mp.exp(-e) - 1),
    "NegativeBinomial": lambda y, e, alpha: (y - mp.exp(e)) / (1 + alpha * mp.exp(e)),
}


def _keywords(fam, extra):
    """extra plus a StudentT's fixed df, which the references take as an argument."""
    if isinstance(fam, F.StudentT) and fam.df is not None:
        return {**extra, "df": fam.df}
    return extra


def mp_reference(table, fam, y, eta, extra):
    """Elementwise ``table[fam.name](y, eta, **extra)`` at 50 digits, as float64."""
    if isinstance(fam, F.Categorical):
        return _mp_categorical(y, eta)[0 if table is MP_LOGP else 1]
    kw = _keywords(fam, extra)
    y, eta, *vals = np.broadcast_arrays(y, eta, *kw.values())
    f = table[fam.name]
    out = np.empty(y.shape)
    with mp.workdps(50):
        for i in np.ndindex(y.shape):
            args = {k: mp.mpf(float(v[i])) for k, v in zip(kw, vals, strict=True)}
            out[i] = float(f(mp.mpf(float(y[i])), mp.mpf(float(eta[i])), **args))
    return out


def _mp_categorical(y, eta):
    """log softmax([0, eta])[y] and its gradient in eta, row by row."""
    logp, score = np.empty(len(y)), np.empty(eta.shape)
    with mp.workdps(50):
        for i in range(len(y)):
            z = [mp.mpf(0)] + [mp.mpf(float(v)) for v in eta[i]]
            log_total = mp.log(mp.fsum(mp.exp(v) for v in z))
            logp[i] = float(z[int(y[i])] - log_total)
            for k in range(1, len(z)):
                score[i, k - 1] = float((int(y[i]) == k) - mp.exp(z[k] - log_total))
    return logp, score


def scipy_logp(fam, y, eta, extra):
    """scipy.stats log-density in its own parameters."""
    name, kw = fam.name, _keywords(fam, extra)
    if name == "Gaussian":
        return st.norm.logpdf(y, loc=eta, scale=kw["scale"])
    if name in ("Bernoulli", "Binomial"):
        # p(y | n, eta) = p(n - y | n, -eta): hand scipy the small probability
        # expit(-|eta|), which float64 holds accurately (1 - 1e-13 it does not).
        t = kw.get("trials", 1.0)
        return np.where(
            eta <= 0,
            st.binom.logpmf(y, t, expit(np.minimum(eta, 0))),
            st.binom.logpmf(t - y, t, expit(-np.maximum(eta, 0))),
        )
    if name == "Categorical":
        z = np.concatenate([np.zeros((len(y), 1)), eta], axis=1)
        onehot = np.eye(z.shape[1])[y.astype(int)]
        return st.multinomial.logpmf(onehot, 1, softmax(z, axis=1))
    if name == "Poisson":
        return st.poisson.logpmf(y, np.exp(eta))
    if name == "Laplace":
        return st.laplace.logpdf(y, loc=eta, scale=kw["scale"])
    if name == "StudentT":
        return st.t.logpdf(y, kw["df"], loc=eta, scale=kw["scale"])
    if name == "Gamma":
        k = kw["shape"]
        return st.gamma.logpdf(y, a=k, scale=np.exp(eta) / k)
    if name == "NegativeBinomial":
        a = kw["alpha"]
        return st.nbinom.logpmf(y, n=1 / a, p=1 / (1 + a * np.exp(eta)))
    raise AssertionError(name)


def cancellation_floor(fam, y, eta, extra):
    """Size of the largest term of log p: float64 cannot beat ~eps times it."""
    name, kw = fam.name, _keywords(fam, extra)
    if name in ("Bernoulli", "Categorical"):
        return 0.0
    if name == "Gaussian":
        z = (y - eta) / kw["scale"]
        return z * z / 2 + np.abs(np.log(kw["scale"])) + 1
    if name == "Binomial":
        t = kw["trials"]
        return (
            gammaln(t + 1) + gammaln(y + 1) + gammaln(t - y + 1) + t * (np.abs(eta) + 1)
        )
    if name == "Poisson":
        return y * np.abs(eta) + np.exp(eta) + gammaln(y + 1)
    if name == "Laplace":
        # log 2 and log(scale) are separate terms in scipy's logpdf: at
        # scale = 0.5 they cancel there to 0.0 and lose a |y|/scale of 1e-127
        return np.abs(y - eta) / kw["scale"] + np.log(2) + np.abs(np.log(kw["scale"]))
    if name == "StudentT":
        df, z = kw["df"], (y - eta) / kw["scale"]
        # lgamma((df+1)/2) - lgamma(df/2): a difference of lgammas for small df,
        # an asymptotic series ~ log(df/2)/2 (no cancellation) for large df
        lgamma_ratio = np.where(
            df > 40,
            np.abs(np.log(df / 2)) / 2,
            np.abs(gammaln((df + 1) / 2)) + np.abs(gammaln(df / 2)),
        )
        return (
            lgamma_ratio
            + np.abs(np.log(df * np.pi * kw["scale"] ** 2))
            + (df + 1) / 2 * np.log1p(z * z / df)
        )
    if name == "Gamma":
        k = kw["shape"]
        return (
            k * np.abs(np.log(k) - eta)
            + np.abs(k - 1) * np.abs(np.log(y))
            + k * y * np.exp(-eta)
            + np.abs(gammaln(k))
        )
    if name == "NegativeBinomial":
        a = kw["alpha"]
        r, t = 1 / a, eta + np.log(a)
        return (
            gammaln(y + r)
            + np.abs(gammaln(r))
            + gammaln(y + 1)
            + r * np.logaddexp(0, t)
            + y * np.logaddexp(0, -t)
        )
    raise AssertionError(name)


def score_floor(fam, y, eta, extra):
    """Size of the terms of the score that may cancel (y against the mean)."""
    name, kw = fam.name, _keywords(fam, extra)
    if name == "Gaussian":
        return (np.abs(y) + np.abs(eta)) / kw["scale"] ** 2
    if name == "Binomial":
        return y * expit(-eta) + (kw["trials"] - y) * expit(eta)
    if name == "Poisson":
        return y + np.exp(eta)
    if name == "Gamma":
        return kw["shape"] * (y * np.exp(-eta) + 1)
    if name == "NegativeBinomial":
        t = eta + np.log(kw["alpha"])  # (y + mu) / (1 + alpha mu), overflow-free
        return y * expit(-t) + expit(t) / kw["alpha"]
    return 0.0


def assert_close(actual, desired, floor=0.0, rtol=1e-12, eps=EPS):
    """``|actual - desired| <= rtol |desired| + 32 eps floor`` (equal infs pass)."""
    actual, desired = np.asarray(actual, np.float64), np.asarray(desired, np.float64)
    assert actual.shape == desired.shape, (actual.shape, desired.shape)
    err = np.abs(actual - desired)
    # + 1e-290: XLA on CPU flushes subnormal intermediates to zero
    tol = rtol * np.abs(desired) + 32 * eps * np.asarray(floor) + 1e-290
    ok = (actual == desired) | (err <= tol)
    if not ok.all():
        i = np.flatnonzero(~ok.ravel())[0]
        raise AssertionError(
            f"mismatch at flat index {i}: actual {actual.ravel()[i]!r}, "
            f"desired {desired.ravel()[i]!r}, |diff| {err.ravel()[i]:.3e} > "
            f"tol {np.broadcast_to(tol, err.shape).ravel()[i]:.3e}"
        )


@functools.partial(jax.jit, static_argnums=0)
def value_and_score(fam, y, eta, extra):
    """Jitted ``(log_prob, d sum(log_prob) / d eta)``, the family static."""

    def total(e):
        return jnp.sum(fam.log_prob(y, e, **extra))

    return fam.log_prob(y, eta, **extra), jax.grad(total)(eta)


# -- hypothesis draws (fixed shapes, varied values) -----------------------------
def _floats(lo, hi, shape=N):
    # no subnormals: XLA on CPU flushes them to zero, by design
    return hnp.arrays(
        np.float64, shape, elements=hs.floats(lo, hi, allow_subnormal=False)
    )


def _counts(hi):
    return hnp.arrays(np.int64, N, elements=hs.integers(0, hi)).map(
        lambda a: a.astype(np.float64)
    )


HALF = np.arange(N) % 2 == 0  # rows drawn in the tails; the rest near the mode

DRAWN = [
    "Gaussian",
    "Bernoulli",
    "Binomial",
    "Categorical",
    "Poisson",
    "Laplace",
    "StudentT",
    "StudentT_fixed",
    "Gamma",
    "NegativeBinomial",
]


@hs.composite
def family_case(draw, name, scipy_range=False):
    """(family, y, eta, extra) of shape (N,), eta in [-30, 30] with large y.

    ``scipy_range`` keeps the NegativeBinomial (eta >= -3) and the Categorical
    (|eta| <= 5) where scipy's ``p`` parameter still carries full precision,
    and the Laplace where scipy's ``log(pdf)`` does not underflow; mpmath
    covers their full range.
    """
    eta = draw(_floats(-30.0, 30.0))
    near = draw(_floats(-2.0, 2.0))
    if name == "Gaussian":
        return (
            F.Gaussian(),
            draw(_floats(-1e6, 1e6)),
            eta,
            {"scale": draw(hs.floats(1e-2, 1e2))},
        )
    if name == "Bernoulli":
        return F.Bernoulli(), draw(_counts(1)), eta, {}
    if name == "Binomial":
        trials = draw(_counts(500))
        y = np.minimum(np.floor(draw(_floats(0.0, 1.0)) * (trials + 1)), trials)
        p = (y + 0.5) / (trials + 1)
        eta = np.where(HALF, eta, np.log(p) - np.log1p(-p) + near)
        return F.Binomial(), y, eta, {"trials": trials}
    if name == "Categorical":
        bound = 5.0 if scipy_range else 30.0
        eta = draw(_floats(-bound, bound, (N, K - 1)))
        return F.Categorical(K), draw(_counts(K - 1)), eta, {}
    if name == "Poisson":
        y = draw(_counts(1000))
        return F.Poisson(), y, np.where(HALF, eta, np.log(y + 0.5) + near), {}
    if name == "Laplace":
        scale = draw(hs.floats(1e-2, 1e2))
        y = draw(_floats(-1e6, 1e6))
        if scipy_range:  # scipy takes log(pdf), which underflows past |z| ~ 700
            y = eta + np.clip(y, -700.0, 700.0) * scale
        return F.Laplace(), y, eta, {"scale": scale}
    if name in ("StudentT", "StudentT_fixed"):
        scale = draw(hs.floats(1e-2, 1e2))
        y = np.where(HALF, draw(_floats(-1e6, 1e6)), eta + near * scale)
        if name == "StudentT":
            return (
                F.StudentT(),
                y,
                eta,
                {"scale": scale, "df": draw(hs.floats(0.1, 200.0))},
            )
        df = draw(hs.sampled_from([0.5, 3.0, 30.0]))  # few values: few compiles
        return F.StudentT(df=df), y, eta, {"scale": scale}
    if name == "Gamma":
        log_y = draw(_floats(-10.0, 14.0))
        eta = np.where(HALF, eta, log_y + near)
        return F.Gamma(), np.exp(log_y), eta, {"shape": draw(hs.floats(0.05, 100.0))}
    if name == "NegativeBinomial":
        y = draw(_counts(1000))
        eta = np.where(
            HALF, np.maximum(eta, -3.0) if scipy_range else eta, np.log(y + 0.5) + near
        )
        return F.NegativeBinomial(), y, eta, {"alpha": draw(hs.floats(0.05, 20.0))}
    raise AssertionError(name)


@pytest.mark.parametrize("name", DRAWN)
@settings(max_examples=15)  # x 8 values x 10 families, plus the fixed tails
@given(data=hs.data())
def test_log_prob_matches_scipy(name, data):
    fam, y, eta, extra = data.draw(family_case(name, scipy_range=True))
    ours = fam.log_prob(y, eta, **extra)  # eager: the host checks run too
    assert ours.dtype == jnp.float64 and ours.shape == (N,)
    assert_close(
        ours, scipy_logp(fam, y, eta, extra), cancellation_floor(fam, y, eta, extra)
    )


@pytest.mark.parametrize("name", DRAWN)
@settings(max_examples=15)  # x 8 values x 10 families, plus the fixed tails
@given(data=hs.data())
def test_log_prob_and_score_match_mpmath(name, data):
    fam, y, eta, extra = data.draw(family_case(name))
    value, score = value_and_score(fam, y, eta, extra)
    assert_close(
        value,
        mp_reference(MP_LOGP, fam, y, eta, extra),
        cancellation_floor(fam, y, eta, extra),
    )
    assert_close(
        score,
        mp_reference(MP_SCORE, fam, y, eta, extra),
        score_floor(fam, y, eta, extra),
    )


# -- far tails and |eta| = 1e3 ----------------------------------------------------
def _case(fam, y, eta, **extra):
    """A fixed case, its rows repeated to length N to reuse compiled kernels."""
    y, eta = np.asarray(y, np.float64), np.asarray(eta, np.float64)
    rows = np.arange(N) % len(y)
    extra = {k: np.asarray(v)[rows] if np.ndim(v) else v for k, v in extra.items()}
    return fam, y[rows], eta[rows], extra


FAR_TAILS = {
    "Gaussian": _case(F.Gaussian(), [1e8, -3e7, 0.0], [-30.0, 30.0, 30.0], scale=0.5),
    "Bernoulli": _case(F.Bernoulli(), [1, 0, 1, 0], [30.0, -30.0, -30.0, 30.0]),
    "Binomial": _case(
        F.Binomial(),
        [1, 1e6, 0, 1e6 - 1],
        [30.0, 30.0, -30.0, 30.0],
        trials=np.full(4, 1e6),
    ),
    "Categorical": _case(
        F.Categorical(K),
        [0, 1, 2, 3],
        [
            [-30.0, -30.0, -30.0],
            [30.0, -30.0, 0.0],
            [30.0, 30.0, -30.0],
            [-30.0, 0.0, 30.0],
        ],
    ),
    "Poisson": _case(F.Poisson(), [0, 1e6, 1e6, 3], [-30.0, 30.0, 0.0, -30.0]),
    "Laplace": _case(F.Laplace(), [1e12, -1e12], [30.0, -30.0], scale=0.25),
    "StudentT": _case(
        F.StudentT(), [1e100, -1e50, 1e6], [0.0, 30.0, -30.0], scale=2.0, df=2.5
    ),
    "StudentT_df3": _case(F.StudentT(df=3.0), [1e100, 1e6], [0.0, -30.0], scale=0.5),
    # huge df: lgamma((df+1)/2) - lgamma(df/2) must not cancel
    "StudentT_df1e8": _case(
        F.StudentT(), [0.3, 5.0, -40.0], [0.0, 1.0, 2.0], scale=1.5, df=1e8
    ),
    "StudentT_df1e15": _case(
        F.StudentT(df=1e15), [0.3, 5.0, -40.0], [0.0, 1.0, 2.0], scale=1.5
    ),
    "Gamma": _case(F.Gamma(), [1e10, 1e-10, 1e6], [-30.0, 30.0, 30.0], shape=4.0),
    "NegativeBinomial": _case(
        F.NegativeBinomial(),
        [1e6, 0, 0, 5, 1e6],
        [30.0, -30.0, 30.0, -30.0, 0.0],
        alpha=0.5,
    ),
}


@pytest.mark.parametrize("name", list(FAR_TAILS))
def test_far_tails_match_mpmath(name):
    fam, y, eta, extra = FAR_TAILS[name]
    value, score = value_and_score(fam, y, eta, extra)
    assert_close(
        value,
        mp_reference(MP_LOGP, fam, y, eta, extra),
        cancellation_floor(fam, y, eta, extra),
    )
    assert_close(
        score,
        mp_reference(MP_SCORE, fam, y, eta, extra),
        score_floor(fam, y, eta, extra),
    )


def test_tiny_log_probabilities_keep_relative_accuracy():
    # log p(y=1 | eta=30) = -log1p(exp(-30)) = -9.357622968839737e-14: the
    # naive y*eta - softplus(eta) loses 1% of it to cancellation.
    want = float(-mp.log1p(mp.exp(-30)))
    got = F.Bernoulli().log_prob(jnp.array([1.0]), jnp.array([30.0]))
    np.testing.assert_allclose(got, [want], rtol=1e-14)
    got = F.Categorical(2).log_prob(jnp.array([1.0]), jnp.array([[30.0]]))
    np.testing.assert_allclose(got, [want], rtol=1e-14)


BIG = 1e3
HUGE_ETA = {
    "Gaussian": _case(F.Gaussian(), [0.0, 0.0, 3.0], [BIG, -BIG, BIG], scale=2.0),
    "Bernoulli": _case(F.Bernoulli(), [1, 0, 1, 0], [-BIG, -BIG, BIG, BIG]),
    "Binomial": _case(
        F.Binomial(), [2, 0, 5, 3], [-BIG, BIG, BIG, -BIG], trials=np.full(4, 5.0)
    ),
    "Categorical": _case(
        F.Categorical(K),
        [0, 1, 2, 3],
        [[BIG, -BIG, 0.0], [-BIG, -BIG, -BIG], [BIG, BIG, -BIG], [0.0, BIG, BIG]],
    ),
    "Poisson": _case(F.Poisson(), [0, 3, 1e6], [-BIG, -BIG, -BIG]),
    "Laplace": _case(F.Laplace(), [0.0, 5.0, BIG], [BIG, -BIG, BIG], scale=0.5),
    "StudentT": _case(
        F.StudentT(), [0.0, 2.0, 0.0], [BIG, -BIG, -BIG], scale=1.5, df=4.0
    ),
    "StudentT_df3": _case(F.StudentT(df=3.0), [0.0, 2.0], [BIG, -BIG], scale=1.5),
    "Gamma": _case(F.Gamma(), [0.5, 2.0, 1e300], [BIG, BIG, BIG], shape=3.0),
    "NegativeBinomial": _case(
        F.NegativeBinomial(), [0, 3, 0, 1000], [-BIG, -BIG, BIG, BIG], alpha=0.5
    ),
}


@pytest.mark.parametrize("name", list(HUGE_ETA))
def test_huge_eta_is_finite_and_correct(name):
    fam, y, eta, extra = HUGE_ETA[name]
    value, score = value_and_score(fam, y, eta, extra)
    assert np.isfinite(value).all() and np.isfinite(score).all(), (value, score)
    assert_close(
        value,
        mp_reference(MP_LOGP, fam, y, eta, extra),
        cancellation_floor(fam, y, eta, extra),
    )
    assert_close(
        score,
        mp_reference(MP_SCORE, fam, y, eta, extra),
        score_floor(fam, y, eta, extra),
    )


def test_huge_eta_closed_forms():
    # the brief's anchors, by hand: log(1/(1+exp(1000))) = -1000 - log1p(e^-1000)
    lp, g = value_and_score(F.Bernoulli(), jnp.array([1.0]), jnp.array([-BIG]), {})
    assert float(lp[0]) == -1000.0 and float(g[0]) == 1.0
    lp, g = value_and_score(F.Poisson(), jnp.array([3.0]), jnp.array([-BIG]), {})
    np.testing.assert_allclose(lp, [-3000.0 - np.log(6.0)], rtol=16 * EPS)
    np.testing.assert_allclose(g, [3.0], rtol=16 * EPS)
    lp, g = value_and_score(
        F.Gamma(), jnp.array([2.0]), jnp.array([BIG]), {"shape": 3.0}
    )
    np.testing.assert_allclose(
        lp, [3 * (np.log(3) - BIG) + 2 * np.log(2) - np.log(2)], rtol=16 * EPS
    )
    np.testing.assert_allclose(g, [-3.0], rtol=16 * EPS)


@pytest.mark.parametrize(
    ("fam", "y", "eta", "extra"),
    [
        (F.Poisson(), 3.0, BIG, {}),
        (F.Gamma(), 2.0, -BIG, {"shape": 3.0}),
    ],
    ids=["Poisson_eta+1e3", "Gamma_eta-1e3"],
)
def test_log_link_overflow_is_minus_inf_not_nan(fam, y, eta, extra):
    # mean exp(1e3) overflows float64, and so does log p ~ -exp(1e3): -inf is
    # the correctly rounded answer; a NaN would be a bug.
    value, _ = value_and_score(fam, jnp.array([y]), jnp.array([eta]), extra)
    assert float(value[0]) == -np.inf


EXTRA_GRAD_CASES = {
    "Gaussian": _case(F.Gaussian(), [0.3, -1.2, 4.0], [0.1, 0.5, -2.0], scale=1.7),
    "Laplace": _case(F.Laplace(), [0.3, -1.2, 4.0], [0.1, 0.5, -2.0], scale=0.6),
    "StudentT": _case(
        F.StudentT(), [0.3, -1.2, 4.0], [0.1, 0.5, -2.0], scale=1.3, df=3.7
    ),
    "StudentT_df3": _case(
        F.StudentT(df=3.0), [0.3, -1.2, 4.0], [0.1, 0.5, -2.0], scale=1.3
    ),
    "Gamma": _case(F.Gamma(), [0.5, 2.0, 7.0], [0.1, 0.5, 2.0], shape=2.2),
    "NegativeBinomial": _case(
        F.NegativeBinomial(), [0, 3, 12], [0.1, 0.5, 2.0], alpha=0.45
    ),
}


@pytest.mark.parametrize("name", list(EXTRA_GRAD_CASES))
def test_gradient_in_extra_parameters_matches_mpmath(name):
    fam, y, eta, extra = EXTRA_GRAD_CASES[name]
    f = MP_LOGP[fam.name]
    for key in extra:

        def total(v, key=key):
            return jnp.sum(fam.log_prob(y, eta, **{**extra, key: v}))

        got = jax.jit(jax.grad(total))(extra[key])
        kw = {k: mp.mpf(v) for k, v in _keywords(fam, extra).items()}
        with mp.workdps(50):
            want = sum(
                mp.diff(
                    lambda v, yi=yi, ei=ei, kw=kw, key=key: f(
                        mp.mpf(yi), mp.mpf(ei), **{**kw, key: v}
                    ),
                    kw[key],
                )
                for yi, ei in zip(y, eta, strict=True)
            )
        np.testing.assert_allclose(got, float(want), rtol=1e-12, err_msg=key)


def test_special_cases_agree_across_families():
    eta = np.linspace(-4.0, 4.0, N)
    y = (np.arange(N) % 2).astype(np.float64)
    bern = F.Bernoulli().log_prob(y, eta)
    # two formulas for one number: a few roundings of terms of size |eta| + 1
    floor = np.abs(eta) + 1.0
    assert_close(F.Categorical(2).log_prob(y, eta[:, None]), bern, floor, rtol=1e-14)
    assert_close(F.Binomial().log_prob(y, eta, trials=np.ones(N)), bern, floor, 1e-14)
    t = F.StudentT(df=1e300).log_prob(y, eta, scale=1.5)  # huge df tends to Gaussian
    np.testing.assert_allclose(t, F.Gaussian().log_prob(y, eta, scale=1.5), rtol=1e-12)


# -- jit, vmap, hashing -------------------------------------------------------------
class TestJitVariants(chex.TestCase):
    """``jit`` and eager give the same numbers (up to XLA's operation fusion)."""

    @pytest.fixture(autouse=True)
    def _samples(self, family_samples):
        self.samples = family_samples

    @chex.variants(with_jit=True, without_jit=True)
    @parameterized.named_parameters(*[(n, n) for n in SAMPLE_NAMES])
    def test_log_prob(self, name):
        fam, y, eta, extra = self.samples[name]
        got = self.variant(lambda y, eta, extra: fam.log_prob(y, eta, **extra))(
            y, eta, extra
        )
        want = fam.log_prob(y, eta, **extra)
        assert_close(got, want, cancellation_floor(fam, y, eta, extra), rtol=1e-14)

    @chex.variants(with_jit=True, without_jit=True)
    @parameterized.named_parameters(*[(n, n) for n in SAMPLE_NAMES])
    def test_score(self, name):
        fam, y, eta, extra = self.samples[name]

        def score(y, eta, extra):
            return jax.grad(lambda e: jnp.sum(fam.log_prob(y, e, **extra)))(eta)

        got = self.variant(score)(y, eta, extra)
        floor = score_floor(fam, y, eta, extra)
        assert_close(got, score(y, eta, extra), floor, rtol=1e-14)


@pytest.mark.parametrize("name", SAMPLE_NAMES)
def test_vmap_over_a_batch_equals_a_python_loop(name, family_samples):
    fam, y, eta, extra = family_samples[name]
    B = 3
    Y = np.stack([y] * B)
    E = np.stack([eta + 0.1 * b for b in range(B)])
    EX = {
        k: np.stack([v * (1.0 + 0.25 * b) if k != "trials" else v for b in range(B)])
        for k, v in extra.items()
    }
    got = jax.jit(jax.vmap(lambda y, e, ex: fam.log_prob(y, e, **ex)))(Y, E, EX)
    want = np.stack(
        [fam.log_prob(Y[b], E[b], **{k: v[b] for k, v in EX.items()}) for b in range(B)]
    )
    assert got.shape == (B, y.shape[0])
    floor = np.stack(
        [
            np.broadcast_to(
                cancellation_floor(fam, Y[b], E[b], {k: v[b] for k, v in EX.items()}),
                y.shape,
            )
            for b in range(B)
        ]
    )
    assert_close(got, want, floor, rtol=1e-14)


@pytest.mark.parametrize("name", SAMPLE_NAMES)
def test_family_is_a_hashable_static_argument(name, family_samples):
    fam, y, eta, extra = family_samples[name]
    twin = dataclasses.replace(fam)  # an equal, separately built instance
    chex.clear_trace_counter()
    assert twin == fam and hash(twin) == hash(fam)

    @functools.partial(jax.jit, static_argnums=0)
    @chex.assert_max_traces(n=1)
    def total(family, y, eta, extra):
        return jnp.sum(family.log_prob(y, eta, **extra))

    a = total(fam, y, eta, extra)
    b = total(twin, y, eta + 0.5, extra)  # equal family, new values: no retrace
    assert np.isfinite(a) and np.isfinite(b)


@pytest.mark.parametrize("name", SAMPLE_NAMES)
def test_float32_in_float32_out(name, family_samples):
    fam, y, eta, extra = family_samples[name]
    f = jax.jit(lambda y, eta, extra: fam.log_prob(y, eta, **extra))
    got = f(y.astype(np.float32), eta.astype(np.float32), extra)
    assert got.dtype == jnp.float32
    # float32 rounding of y, eta and of every term of log p (cancellation_floor)
    floor = cancellation_floor(fam, y, eta, extra) + 1.0
    assert_close(got, fam.log_prob(y, eta, **extra), floor, rtol=1e-5, eps=EPS32)


def test_loss_names():
    names = {
        F.Gaussian(): "mse",
        F.Bernoulli(): "bce_with_logits",
        F.Categorical(3): "softmax_cross_entropy",
        F.Poisson(): "poisson_nll",
        F.Laplace(): "l1",
        F.Binomial(): None,
        F.StudentT(): None,
        F.StudentT(df=3.0): None,
        F.Gamma(): None,
        F.NegativeBinomial(): None,
    }
    for fam, loss_name in names.items():
        assert fam.loss_name == loss_name, fam
        assert loss_name is None or loss_name in mj.losses.LOSSES


# -- bad input ---------------------------------------------------------------------
def _with(sample, *, y=None, eta=None, **extra):
    fam, y0, eta0, extra0 = sample
    return (
        fam,
        y0 if y is None else y,
        eta0 if eta is None else eta,
        {**extra0, **extra},
    )


@pytest.mark.parametrize("name", SAMPLE_NAMES)
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_y_or_eta_is_named(name, bad, family_samples):
    fam, y, eta, extra = family_samples[name]
    y_bad = y.copy()
    y_bad[1] = bad
    with pytest.raises(
        ValueError,
        match=rf"^{fam.name}: y has a non-finite value \({bad}\) at index 1;",
    ):
        fam.log_prob(y_bad, eta, **extra)
    eta_bad = eta.copy()
    eta_bad[1] = bad
    with pytest.raises(
        ValueError, match=rf"^{fam.name}: eta has a non-finite value \({bad}\)"
    ):
        fam.log_prob(y, eta_bad, **extra)


@pytest.mark.parametrize("name", SAMPLE_NAMES)
def test_non_positive_or_non_finite_extra_parameter_is_named(name, family_samples):
    fam, y, eta, extra = family_samples[name]
    for key in fam.extra_names:
        for bad in (0.0, -1.5):
            with pytest.raises(
                ValueError, match=rf"^{fam.name}: {key} must be positive; got {bad}"
            ):
                fam.log_prob(y, eta, **{**extra, key: bad})
        with pytest.raises(
            ValueError, match=rf"^{fam.name}: {key} has a non-finite value \(nan\)"
        ):
            fam.log_prob(y, eta, **{**extra, key: np.nan})


@pytest.mark.parametrize("name", SAMPLE_NAMES)
def test_mismatched_shapes_are_named(name, family_samples):
    fam, y, eta, extra = family_samples[name]
    with pytest.raises(
        ValueError, match=rf"^{fam.name}: y has shape \(7,\) but eta has shape"
    ):
        fam.log_prob(y[:7], eta, **extra)
    # (n,) against (n, 1) would broadcast to an (n, n) outer product
    with pytest.raises(ValueError, match=rf"^{fam.name}: y has shape \(8, 1\) but eta"):
        fam.log_prob(y[:, None], eta, **extra)
    # and the same under jit, where only shapes can be checked
    with pytest.raises(ValueError, match=rf"^{fam.name}: y has shape \(7,\)"):
        jax.jit(lambda y, eta, extra: fam.log_prob(y, eta, **extra))(y[:7], eta, extra)


@pytest.mark.parametrize("name", SAMPLE_NAMES)
def test_unknown_or_missing_keywords_are_named(name, family_samples):
    fam, y, eta, extra = family_samples[name]
    with pytest.raises(
        ValueError, match=rf"^{fam.name}\.log_prob takes keywords .*unknown \['bogus'\]"
    ):
        fam.log_prob(y, eta, **extra, bogus=1.0)
    for key in extra:
        rest = {k: v for k, v in extra.items() if k != key}
        with pytest.raises(
            ValueError, match=rf"^{fam.name}\.log_prob .*missing \['{key}'\]"
        ):
            fam.log_prob(y, eta, **rest)


BAD_SUPPORT = [
    (
        "Bernoulli",
        {"y": 2.0},
        r"Bernoulli: y has value 2\.0 at index 0; expected 0 or 1",
    ),
    ("Bernoulli", {"y": 0.5}, r"Bernoulli: y has value 0\.5 .*expected 0 or 1"),
    ("Poisson", {"y": -1.0}, r"Poisson: y has value -1\.0 .*non-negative integer"),
    ("Poisson", {"y": 2.5}, r"Poisson: y has value 2\.5 .*non-negative integer"),
    (
        "NegativeBinomial",
        {"y": -1.0},
        r"NegativeBinomial: y has value -1\.0 .*non-negative",
    ),
    ("NegativeBinomial", {"y": 2.5}, r"NegativeBinomial: y has value 2\.5 .*integer"),
    ("Gamma", {"y": 0.0}, r"Gamma: y has value 0\.0 .*strictly positive"),
    ("Gamma", {"y": -2.0}, r"Gamma: y has value -2\.0 .*strictly positive"),
    (
        "Categorical",
        {"y": 3.0},
        r"Categorical: y has value 3\.0 .*class label in 0\.\.2",
    ),
    ("Categorical", {"y": -1.0}, r"Categorical: y has value -1\.0 .*0\.\.2"),
    ("Categorical", {"y": 1.5}, r"Categorical: y has value 1\.5 .*0\.\.2"),
    (
        "Binomial",
        {"y": 6.0, "trials": 5.0},
        r"Binomial: y has value 6\.0 .*0\.\.trials",
    ),
    ("Binomial", {"y": -1.0}, r"Binomial: y has value -1\.0 .*0\.\.trials"),
    ("Binomial", {"y": 0.5}, r"Binomial: y has value 0\.5 .*0\.\.trials"),
    ("Binomial", {"trials": -1.0}, r"Binomial: trials must be non-negative integers"),
    ("Binomial", {"trials": 2.5}, r"Binomial: trials must be non-negative integers"),
    (
        "Binomial",
        {"trials": np.nan},
        r"Binomial: trials has a non-finite value \(nan\)",
    ),
]


@pytest.mark.parametrize(("name", "change", "match"), BAD_SUPPORT)
def test_support_violations_are_named(name, change, match, family_samples):
    fam, y, eta, extra = family_samples[name]
    y = y.copy()
    if "y" in change:
        y[0] = change["y"]
    if "trials" in change:
        extra = {"trials": np.full_like(extra["trials"], change["trials"])}
        y = np.minimum(y, 0.0) if "y" not in change else y
    with pytest.raises(ValueError, match=match):
        fam.log_prob(y, eta, **extra)


def test_integer_and_boolean_y_are_checked_too():
    with pytest.raises(ValueError, match=r"Bernoulli: y has value 2\.0 at index 2"):
        F.Bernoulli().log_prob(np.array([0, 1, 2]), np.zeros(3))
    np.testing.assert_allclose(
        F.Bernoulli().log_prob(np.array([False, True]), np.zeros(2)),
        [-np.log(2)] * 2,
        rtol=16 * EPS,
    )


def test_categorical_eta_needs_its_class_axis():
    with pytest.raises(
        ValueError, match=r"Categorical: eta must have a trailing axis of size 2"
    ):
        F.Categorical(3).log_prob(np.zeros(4), np.zeros(4))
    with pytest.raises(
        ValueError, match=r"Categorical: eta must have a trailing axis of size 2"
    ):
        F.Categorical(3).log_prob(np.zeros(4), np.zeros((4, 3)))
    # K=2 too: eta is (n, 1), never (n,)
    with pytest.raises(
        ValueError, match=r"Categorical: eta must have a trailing axis of size 1"
    ):
        F.Categorical(2).log_prob(np.zeros(4), np.zeros(4))


DF_MESSAGE = r"StudentT: df must be positive and finite, or None"


@pytest.mark.parametrize(
    ("make", "match"),
    [
        (
            lambda: F.Categorical(1),
            r"Categorical: n_classes must be an int >= 2; got 1",
        ),
        (
            lambda: F.Categorical(2.5),
            r"Categorical: n_classes must be an int >= 2; got 2\.5",
        ),
        (lambda: F.StudentT(df=0.0), rf"{DF_MESSAGE}; got 0\.0"),
        (lambda: F.StudentT(df=-2.0), rf"{DF_MESSAGE}; got -2\.0"),
        (lambda: F.StudentT(df=float("nan")), rf"{DF_MESSAGE}; got nan"),
        (lambda: F.StudentT(df=float("inf")), rf"{DF_MESSAGE}; got inf .*Gaussian"),
    ],
)
def test_bad_constructor_arguments(make, match):
    with pytest.raises(ValueError, match=match):
        make()


def test_value_checks_are_skipped_under_jit():
    # inside jit/vmap only shapes are checked; failure there is data, never a raise
    out = jax.jit(F.Bernoulli().log_prob)(jnp.array([2.0]), jnp.array([0.0]))
    assert out.shape == (1,)
    out = jax.vmap(F.Poisson().log_prob)(jnp.array([[-1.0]]), jnp.array([[0.0]]))
    assert out.shape == (1, 1)
