"""Batched small fits (mlejax._batched): ``jax.vmap(mj.fit)`` and
``mj.fit_groups`` take the chunked kernel and give, member by member, the
per-fit ``mj.fit`` (the general path) and statsmodels' Logit."""

from __future__ import annotations

import warnings

import jax
import numpy as np
import pytest

import mlejax as mj
from mlejax import _batched

sm = pytest.importorskip("statsmodels.api")

FIELDS = (
    "params",
    "stderr",
    "cov",
    "loglik",
    "n_iter",
    "converged",
    "status",
    "aic",
    "bic",
    "nobs",
    "deviance",
    "null_deviance",
    "trace",
)
B, N, P = 12, 60, 3


def _data():
    rng = np.random.default_rng(7)
    X = rng.standard_normal((B, N, P))
    X[:, :, 0] = 1.0
    beta = rng.standard_normal((B, P)) * 0.6
    eta = np.einsum("bnp,bp->bn", X, beta)
    off = np.where(
        np.arange(B)[:, None] % 2 == 0, 0.0, 0.3 * rng.standard_normal((B, N))
    )
    y = (rng.random((B, N)) < 1 / (1 + np.exp(-eta - off))).astype(float)
    w = np.ones((B, N))
    w[6:] = rng.integers(0, 3, (B - 6, N))  # frequency weights 0, 1, 2
    y[1] = (X[1, :, 1] > 0).astype(float)  # separated
    y[3, 5] = 2.0  # outside the support (an error eagerly, data under vmap)
    w[4] = 0.0  # no weight at all
    X[8, :, 2] = X[8, :, 1]  # collinear columns
    return X, y, w, off


def _eager(X, y, w, off, cov_type):
    fam = mj.families.Bernoulli()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return mj.fit(X, y, fam, weights=w, offset=off, cov_type=cov_type)
    except ValueError:  # rejected by the host checks (invalid data)
        return None


def _sm_logit(X, y, w, off, cov_type):
    """statsmodels' Logit on the rows replicated by their frequency weights."""
    rep = np.repeat(np.arange(len(y)), w.astype(int))
    return sm.Logit(y[rep], X[rep], offset=off[rep]).fit(
        method="newton", tol=1e-14, maxiter=100, disp=0, cov_type=cov_type
    )


@pytest.fixture(autouse=True)
def _small_batches_take_the_kernel(monkeypatch):
    monkeypatch.setattr(_batched, "MIN_BATCH", 1)  # these batches are small


def test_vmap_fit_equals_loop_and_statsmodels(cov_type="nonrobust"):
    X, y, w, off = _data()
    fam = mj.families.Bernoulli()
    before = _batched.TRACE_COUNT["fast"]
    out = jax.jit(
        jax.vmap(
            lambda X, y, w, o: mj.fit(X, y, fam, weights=w, offset=o, cov_type=cov_type)
        )
    )(X, y, w, off)
    assert _batched.TRACE_COUNT["fast"] == before + 1  # the kernel, not a fallback
    status = np.asarray(out.status)
    assert status[1] == mj.status.Status.SEPARATION
    assert status[3] == status[4] == mj.status.Status.INVALID_INPUT
    assert not np.asarray(out.converged)[8]  # collinear: as the general path says
    good = [i for i in range(B) if i not in (1, 3, 4, 8)]
    assert np.asarray(out.converged)[good].all()
    for i in range(B):
        ref = _eager(X[i], y[i], w[i], off[i], cov_type)
        if ref is None:  # invalid data: an error eagerly, data under vmap
            assert i in (3, 4, 8) and not out.converged[i]
            continue
        for f in FIELDS:
            a = np.asarray(getattr(out, f)[i], float)
            b = np.asarray(getattr(ref, f), float)
            if i not in good and f in ("params", "stderr", "cov", "trace"):
                continue  # a failed fit's iterate is reported, not compared
            np.testing.assert_allclose(a, b, rtol=1e-11, atol=1e-13, err_msg=f"{i} {f}")
    for i in good:
        sm_res = _sm_logit(X[i], y[i], w[i], off[i], cov_type)
        np.testing.assert_allclose(out.params[i], sm_res.params, rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(out.stderr[i], sm_res.bse, rtol=1e-8)
        np.testing.assert_allclose(out.loglik[i], sm_res.llf, rtol=1e-12)


@pytest.mark.slow  # a second compile of the kernel (CI budget)
def test_hc0_equals_loop_and_statsmodels():
    """HC0, offsets, no ``weights=`` (the kernel's product-log NLL)."""
    X, y, w, off = _data()
    good = [0, 2, 5]  # well-posed members of weight 1, with and without offsets
    X, y, off = X[good], y[good], off[good]
    fam = mj.families.Bernoulli()
    before = _batched.TRACE_COUNT["fast"]
    out = jax.jit(
        jax.vmap(lambda X, y, o: mj.fit(X, y, fam, offset=o, cov_type="HC0"))
    )(X, y, off)
    assert _batched.TRACE_COUNT["fast"] == before + 1
    for i in range(len(good)):
        ref = mj.fit(X[i], y[i], fam, offset=off[i], cov_type="HC0")
        for f in FIELDS:
            a, b = np.asarray(getattr(out, f)[i]), np.asarray(getattr(ref, f))
            np.testing.assert_allclose(a, b, rtol=1e-11, atol=1e-13, err_msg=f)
        sm_res = _sm_logit(X[i], y[i], np.ones(N), off[i], "HC0")
        np.testing.assert_allclose(out.params[i], sm_res.params, rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(out.stderr[i], sm_res.bse, rtol=1e-8)
        np.testing.assert_allclose(out.cov[i], sm_res.cov_params(), rtol=1e-8)


@pytest.mark.slow
def test_fit_groups_takes_the_kernel():
    rng = np.random.default_rng(3)
    sizes = [50, 57, 64]  # one shape bucket
    g = np.repeat(np.arange(len(sizes)), sizes)
    n = g.size
    X = np.column_stack([np.ones(n), rng.standard_normal((n, 2))])
    y = (rng.random(n) < 1 / (1 + np.exp(-X @ [0.2, 0.8, -0.5]))).astype(float)
    fam = mj.families.Bernoulli()
    before = _batched.TRACE_COUNT["fast"]
    res = mj.fit_groups(X, y, fam, groups=g)
    assert _batched.TRACE_COUNT["fast"] > before
    for k in range(len(sizes)):
        one = mj.fit(X[g == k], y[g == k], fam)
        r = res[k]
        np.testing.assert_allclose(r.params, one.params, rtol=1e-11, atol=1e-13)
        np.testing.assert_allclose(r.stderr, one.stderr, rtol=1e-11)
        np.testing.assert_allclose(r.null_deviance, one.null_deviance, rtol=1e-11)
        assert int(r.n_iter) == int(one.n_iter) and bool(r.converged)


def test_shared_design_unbatched_leaves_are_not_copied_per_fit():
    """vmap over y and weights with one shared X (an unbatched leaf, as are
    mj.fit's own ones/zeros): the kernel serves it, every member equals its
    own mj.fit, and a separated member is refitted by the general path."""
    X, y, w, _ = _data()
    Xs = X[0]
    y = np.array(y)
    y[3, 5] = 1.0  # every member valid here
    y[1] = (Xs[:, 1] > 0).astype(float)  # separated on the shared design
    fam = mj.families.Bernoulli()
    before = _batched.TRACE_COUNT["fast"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = jax.jit(jax.vmap(lambda y, w: mj.fit(Xs, y, fam, weights=w)))(y, w)
    assert _batched.TRACE_COUNT["fast"] == before + 1
    for i in range(B):
        one = _eager(Xs, y[i], w[i], np.zeros(N), "nonrobust")
        if one is None:  # no weight at all: rejected eagerly, not converged here
            assert not bool(res.converged[i])
            continue
        assert int(res.status[i]) == int(one.status), i
        assert bool(res.converged[i]) == bool(one.converged), i
        if bool(one.converged):
            np.testing.assert_allclose(
                res.params[i], one.params, rtol=1e-11, atol=1e-13
            )
            np.testing.assert_allclose(res.stderr[i], one.stderr, rtol=1e-11)
            assert int(res.n_iter[i]) == int(one.n_iter)
    assert not bool(res.converged[1])  # the separated member


def test_ineligible_falls_back_to_the_general_path():
    X, y, w, off = _data()
    fam = mj.families.Poisson()  # not served by the kernel
    before = dict(_batched.TRACE_COUNT)
    jax.eval_shape(jax.vmap(lambda X, y: mj.fit(X, y, fam)), X[:2], y[:2])
    assert _batched.TRACE_COUNT["fast"] == before["fast"]
    assert _batched.TRACE_COUNT["general"] == before["general"] + 1


def test_sum_log1p_as_log_of_a_product_against_mpmath():
    """The kernel's ``sum log1p(e)`` without weights: within ``n eps`` of the
    exact sum (mpmath, 50 digits), over e in [0, 1] including tiny e."""
    mpmath = pytest.importorskip("mpmath")
    from mlejax._batched_kernel import PROD_ROWS, _sum_log1p

    rng = np.random.default_rng(11)
    n = PROD_ROWS
    e = np.concatenate(
        [rng.random((2, n)), 10.0 ** rng.uniform(-300, 0, (2, n)), np.ones((1, n))]
    )
    e[:, :3] = [0.0, 5e-324, 1.0]  # both ends and a subnormal
    w = np.ones_like(e)
    w[:, 7::5] = 0.0
    got = np.asarray(_sum_log1p(w, e, True))
    mpmath.mp.dps = 50
    for i in range(e.shape[0]):
        exact = mpmath.fsum(mpmath.log1p(mpmath.mpf(v)) for v in e[i][w[i] > 0])
        assert abs(got[i] - float(exact)) <= n * np.finfo(float).eps * max(
            1.0, float(exact)
        )
