"""The native (C++ FFI) Newton loop of the batched logistic kernel against
its XLA formulation, field by field, and its fallbacks. (That both give the
per-fit ``mj.fit`` and statsmodels member by member is tests/test_batched.py,
which runs whichever serves on this machine.)"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import mlejax as mj
from mlejax import _batched_kernel, _native

mj.enable_x64()

needs_native = pytest.mark.skipif(
    not _native.available(jnp.float64, 3), reason="no C++ compiler: XLA loop only"
)


def _data(C, n, p, seed=3):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((C, n, p))
    X[:, :, 0] = 1.0
    beta = 0.5 * rng.standard_normal((C, p))
    off = 0.3 * rng.standard_normal((C, n))
    off[::2] = 0.0  # even members: no offset (closed-form null deviance)
    eta = np.einsum("cnp,cp->cn", X, beta) + off
    y = (rng.random((C, n)) < 1 / (1 + np.exp(-eta))).astype(float)
    w = rng.choice([0.0, 0.5, 1.0, 2.5], (C, n))  # fractional and zero weights
    w[1] = 1.0
    y[2] = (X[2, :, -1] > 0).astype(float)  # separated (when p > 1)
    y[3, 0] = 0.5  # outside the support on a positive weight
    w[4, 3] = np.nan  # invalid weight
    X[5, :, -1] = X[5, :, 0]  # collinear (rank deficient) when p > 1
    w[6] = 0.0  # no weight at all
    return X, y, w, off


def _both(monkeypatch, *args, **kw):
    native = jax.jit(lambda *a: _batched_kernel.chunk_kernel(*a, **kw))(*args)
    monkeypatch.setattr(_native, "available", lambda *a: False)
    xla = jax.jit(lambda *a: _batched_kernel.chunk_kernel(*a, **kw))(*args)
    return native, xla


def _agree(native, xla, rtol=1e-10):
    """Same members vouched for, and on those every field (the others are
    refitted by the general path; a diverging fit may stop a step apart)."""
    (a, va), (b, vb) = native, xla
    np.testing.assert_array_equal(va, vb)
    ok = np.asarray(va)
    for k in ("status", "converged", "n_iter"):
        np.testing.assert_array_equal(np.asarray(a[k])[ok], np.asarray(b[k])[ok])
    for k in ("params", "stderr", "cov", "loglik", "trace", "nobs", "aic", "bic"):
        x, y = np.asarray(a[k]), np.asarray(b[k])
        np.testing.assert_allclose(x[ok], y[ok], rtol=rtol, atol=1e-12, err_msg=k)
    np.testing.assert_allclose(
        a["null_deviance"], b["null_deviance"], rtol=rtol, atol=1e-12
    )


@needs_native
@pytest.mark.parametrize("p,n,cov_type", [(1, 37, "HC1"), (8, 61, "nonrobust")])
def test_native_loop_equals_xla_loop(monkeypatch, p, n, cov_type):
    """Rows not a multiple of four (padding), p at both ends of the range,
    fractional and zero weights, offsets, separated, invalid, rank-deficient
    and empty members: every field of the native loop equals the XLA one."""
    X, y, w, off = _data(10, n, p)
    tol = np.full(10, 1e-10)
    native, xla = _both(monkeypatch, X, y, w, off, tol, max_iter=100, cov_type=cov_type)
    _agree(native, xla)
    vouch = np.asarray(native[1])
    assert vouch[[0, 1, 7, 8, 9]].all() and not vouch[[3, 4, 6]].any()
    assert not vouch[[2, 5]].any() or p == 1  # separated, rank deficient


@needs_native
def test_native_shared_leaves_and_iteration_cap(monkeypatch):
    """A shared X and unit weights (a leading axis of 1, as ``jax.vmap`` of a
    fit over y passes them) give the per-member broadcast's answers, and a
    cap of 2 iterations stops every fit with MAX_ITER, trace and all."""
    X, y, _, off = _data(8, 40, 3, seed=5)
    X1, w1, o1 = X[:1], np.ones((1, 40)), np.zeros((1, 40))
    kw = dict(max_iter=2, cov_type="HC0", unit_weights=True)
    shared = jax.jit(lambda *a: _batched_kernel.chunk_kernel(*a, size=8, **kw))(
        X1, y, w1, o1, 1e-10
    )
    full = np.broadcast_to
    native, xla = _both(
        monkeypatch,
        full(X1, X.shape),
        y,
        full(w1, y.shape),
        full(o1, y.shape),
        np.full(8, 1e-10),
        **kw,
    )
    _agree(shared, native, rtol=1e-13)
    _agree(native, xla)
    assert (np.asarray(native[0]["status"]) == int(mj.Status.MAX_ITER)).all()
    assert np.isfinite(np.asarray(native[0]["trace"])[:, :3]).all()


def test_native_off_by_environment_or_without_compiler(monkeypatch, tmp_path):
    monkeypatch.setenv("MLEJAX_NATIVE", "0")
    assert _native.load.__wrapped__(3) is False
    monkeypatch.setenv("MLEJAX_NATIVE", "1")
    monkeypatch.setenv("CXX", str(tmp_path / "no-such-compiler"))
    assert _native.load.__wrapped__(3) is False


def test_native_build_failure_falls_back_with_a_warning(monkeypatch, tmp_path, caplog):
    """A compiler that fails: load() says False and logs why (the XLA loop
    then serves); nothing is left half-written in the cache."""
    fake = tmp_path / "cxx"
    fake.write_text("#!/bin/sh\necho 'fake 1.0'\nexit 1\n")
    fake.chmod(0o755)
    monkeypatch.setenv("MLEJAX_NATIVE", "1")
    monkeypatch.setenv("CXX", str(fake))
    monkeypatch.setenv("MLEJAX_NATIVE_DIR", str(tmp_path / "cache"))
    with caplog.at_level("WARNING", logger="mlejax._native"):
        assert _native.load.__wrapped__(3) is False
    assert "native kernels unavailable" in caplog.text
    assert list((tmp_path / "cache").glob("*.so")) == []


@needs_native
def test_native_zero_one_weights_sum_log1p_as_lane_products(monkeypatch):
    """Weights of 0 and 1 only (mj.fit_groups' padding): the native loop sums
    ``log1p`` as the logs of four lanes' products, up to 2,000 rows; the
    log-likelihood stays within ``n eps`` of the XLA loop's ``log1p`` sum."""
    X, y, _, off = _data(8, 2001, 3, seed=11)
    w = (np.random.default_rng(2).random((8, 2001)) < 0.8).astype(float)
    y = np.where(np.isin(y, (0.0, 1.0)), y, 1.0)
    native, xla = _both(
        monkeypatch, X, y, w, off, np.full(8, 1e-10), max_iter=100, cov_type="nonrobust"
    )
    vouch = np.asarray(native[1])
    assert vouch.sum() == 6 and not vouch[[2, 5]].any()  # separated, collinear
    _agree(native, xla)
    np.testing.assert_allclose(
        np.asarray(native[0]["loglik"])[vouch],
        np.asarray(xla[0]["loglik"])[vouch],
        rtol=2001 * 2.3e-16,
    )


@needs_native
def test_vmap_of_long_fits_takes_the_native_kernel_and_equals_own_fits():
    """Fits of 4,500 rows (past the XLA formulation's 2,048 and the lane
    products' block of 4,092) take the kernel; each equals its own mj.fit,
    which evaluates them in 1,024-row blocks."""
    import warnings

    from mlejax import _batched

    rng = np.random.default_rng(4)
    m, n = 64, 4500
    X = rng.standard_normal((m, n, 3))
    X[:, :, 0] = 1.0
    y = (rng.random((m, n)) < 1 / (1 + np.exp(-X @ np.array([0.3, -0.5, 0.2])))) * 1.0
    fam = mj.families.Bernoulli()
    before = _batched.TRACE_COUNT["fast"]
    res = jax.jit(jax.vmap(lambda X, y: mj.fit(X, y, fam)))(X, y)
    assert _batched.TRACE_COUNT["fast"] == before + 1
    assert np.asarray(res.converged).all()
    for i in (0, 37):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            one = mj.fit(X[i], y[i], fam)
        np.testing.assert_allclose(res.params[i], one.params, rtol=1e-11, atol=1e-13)
        np.testing.assert_allclose(res.stderr[i], one.stderr, rtol=1e-11)
        np.testing.assert_allclose(res.loglik[i], one.loglik, rtol=1e-13)
        np.testing.assert_allclose(res.null_deviance[i], one.null_deviance, rtol=1e-12)
        assert int(res.n_iter[i]) == int(one.n_iter)


@needs_native
def test_native_exp_within_2_ulp_of_mpmath_over_the_domain():
    """The kernel's own vectorised ``exp`` (as compiled for p = 3), over the
    domain of tests/test_math.py (every binade to 1e-300, each k ln 2, the
    tails, special values): within 2 ulp of mpmath where the result is a
    normal number."""
    from test_math import check_exp_over_the_domain

    check_exp_over_the_domain(lambda x: _native.exp_nonpos(x, 3))
    special = np.asarray(
        jax.jit(lambda x: _native.exp_nonpos(x, 3))(
            np.array([-np.inf, np.nan, -800.0, -0.0, 0.0])
        )
    )
    assert special[0] == 0.0 and np.isnan(special[1]) and special[2] == 0.0
    assert special[3] == 1.0 and special[4] == 1.0
