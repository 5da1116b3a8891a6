"""``mj.fit(..., buckets=True)``: zero-weight padding is exact, one compile a bucket.

Every family is fitted on the same 100 x 3 problem (bucket 104) with and
without buckets; the two results must agree field by field, with and without
user weights and offset. The compilation test counts JAX lowerings through
``jax.monitoring`` (public), with ``max_iter`` values no other test uses.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from problems import glm_problems

import mlejax as mj
from mlejax import _buckets

F = mj.families
N = 100  # bucket 104
# some Binomial rows with 0 trials: padding must not be confused with them
PROBLEMS = glm_problems(N, seed=20260315, min_trials=0)
X = PROBLEMS["Gaussian"].X
_rng = np.random.default_rng(5)
WEIGHTS = _rng.integers(0, 4, N).astype(np.float64)  # frequency weights, some 0
OFFSET = 0.2 * _rng.normal(size=N)


def _close(a, b, rtol=1e-8, atol=1e-12):
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=rtol, atol=atol)


def _assert_same_fit(a, b):
    assert bool(a.converged) and bool(b.converged), (a.reason, b.reason)
    assert int(a.status) == int(b.status)
    for field in ("params", "stderr", "cov", "loglik", "aic", "bic", "nobs"):
        _close(getattr(a, field), getattr(b, field))
    assert a.extra.keys() == b.extra.keys()
    for k in a.extra:
        _close(a.extra[k], b.extra[k])
        _close(a.extra_stderr[k], b.extra_stderr[k])
    assert (a.family, a.solver, a.names) == (b.family, b.solver, b.names)
    assert a.trace.shape == b.trace.shape


@pytest.mark.parametrize("name", list(PROBLEMS))
@pytest.mark.parametrize("weighted", [False, True], ids=["plain", "weights+offset"])
def test_buckets_give_the_same_fit(name, weighted):
    fam, _, y, kw = PROBLEMS[name]
    if weighted:
        kw = {**kw, "weights": WEIGHTS, "offset": OFFSET}
    plain = mj.fit(X, y, fam, **kw)
    padded = mj.fit(X, y, fam, buckets=True, **kw)
    _assert_same_fit(padded, plain)
    _close(padded.nobs, WEIGHTS.sum() if weighted else N, rtol=0)
    # the same start (weighted moments ignore the padding): the same iterations
    assert int(padded.n_iter) == int(plain.n_iter)
    _close(padded.trace, plain.trace, rtol=1e-8)


def test_buckets_pad_small_n_and_keep_names():
    pd = pytest.importorskip("pandas")
    rng = np.random.default_rng(1)
    Xs = pd.DataFrame({"const": np.ones(6), "x": rng.normal(size=6)})
    y = 1.0 + 2.0 * Xs["x"].to_numpy() + rng.normal(size=6)
    a = mj.fit(Xs, y, F.Gaussian(), buckets=True)  # n = 6 -> bucket 8
    b = mj.fit(Xs, y, F.Gaussian())
    _assert_same_fit(a, b)
    assert a.names == ("const", "x") and float(a.nobs) == 6.0


_LOWERINGS: list[str] = []


def _count_lowering(event: str, duration: float, **kw) -> None:
    if event == "/jax/core/compile/jaxpr_to_mlir_module_duration":
        _LOWERINGS.append(kw.get("fun_name", "?"))


jax.monitoring.register_event_duration_secs_listener(_count_lowering)


def test_one_compile_per_bucket():
    """n = 100 and 103 share bucket 104: nothing new to compile for the second.

    Every program that does not depend on ``max_iter`` (the host-side helpers
    for both sizes) is compiled first with ``max_iter=40``; then, with
    ``max_iter`` values no other test uses, each new fit program shows up as a
    lowering (persistent compilation cache or not: lowering comes first).
    """
    rng = np.random.default_rng(11)
    Xb = np.column_stack([np.ones(103), rng.normal(size=(103, 2))])
    y = rng.poisson(np.exp(Xb @ np.array([0.2, 0.3, -0.2]))).astype(float)
    fam = F.Poisson()

    def lowerings(n, max_iter, buckets):
        before = len(_LOWERINGS)
        mj.fit(Xb[:n], y[:n], fam, max_iter=max_iter, buckets=buckets)
        return _LOWERINGS[before:]

    for n in (100, 103):
        for buckets in (True, False):
            lowerings(n, 40, buckets)  # warm up everything but the fit itself
    assert lowerings(100, 41, True)  # a new max_iter: a new program
    assert lowerings(103, 41, True) == []  # same bucket: nothing new
    assert lowerings(100, 42, False)
    assert lowerings(103, 42, False)  # no buckets: a new shape compiles again


def test_traced_inputs_are_not_padded(monkeypatch):
    fam, _, y, _ = PROBLEMS["Poisson"]
    calls = []
    real_pad = _buckets.pad_rows
    monkeypatch.setattr(
        _buckets, "pad_rows", lambda *a, **k: calls.append(1) or real_pad(*a, **k)
    )
    traced = jax.jit(lambda X, y: mj.fit(X, y, fam, buckets=True))(X, y)
    assert not calls
    plain = mj.fit(X, y, fam)
    _assert_same_fit(traced, plain)
    mj.fit(X, y, fam, buckets=True)  # concrete: padded
    assert calls == [1]


def test_buckets_must_be_bool():
    fam, _, y, _ = PROBLEMS["Poisson"]
    with pytest.raises(TypeError, match="buckets"):
        mj.fit(X, y, fam, buckets="yes")


# --------------------------------------------------------------------------
# bucket_size and pad_rows
# --------------------------------------------------------------------------
@pytest.mark.parametrize(
    "n, size",
    [
        (1, 8),
        (7, 8),
        (8, 8),
        (9, 9),
        (15, 15),
        (16, 16),
        (17, 18),
        (100, 104),
        (103, 104),
        (105, 112),
        (1000, 1024),
        (10**6, 2**20),
    ],
)
def test_bucket_size_values(n, size):
    assert _buckets.bucket_size(n) == size


def _is_bucket(b: int) -> bool:
    while b >= 16 and b % 2 == 0:
        b //= 2
    return 8 <= b <= 15


def test_bucket_size_is_the_smallest_bucket_up_to_4096():
    buckets = sorted(b for b in range(8, 5000) if _is_bucket(b))
    for n in range(1, 4097):
        assert _buckets.bucket_size(n) == next(b for b in buckets if b >= n)


@given(n=st.integers(8, 10**15))
def test_bucket_size_rule_and_padding_at_most_an_eighth(n):
    b = _buckets.bucket_size(n)
    assert b >= n and _is_bucket(b)
    assert 8 * (b - n) <= n  # at most 12.5% padding (strictly less, in fact)
    assert _buckets.bucket_size(b) == b
    assert _buckets.bucket_size(n - 1) <= b  # monotone


def test_bucket_size_rejects_nonpositive():
    with pytest.raises(ValueError):
        _buckets.bucket_size(0)
    with pytest.raises(TypeError):
        _buckets.bucket_size(3.5)


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.float64])
@pytest.mark.parametrize("path", ["host", "device"])
def test_pad_rows_values_and_dtypes(dtype, path):
    n, k = 5, 3
    Xd = jnp.arange(10.0, dtype=dtype).reshape(n, 2) + 1
    y, w, off, t = (jnp.full(n, v, dtype) for v in (2.0, 1.5, 0.3, 4.0))
    if path == "host":
        out = _buckets.pad_rows(Xd, y, w, off, t, F.Binomial(), n + k)
    else:
        out = _buckets._device_pad(Xd, y, w, off, t, 0.0, k=k)
    Xp, yp, wp, op, tp = out
    for a, orig in zip(out, (Xd, y, w, off, t), strict=True):
        assert isinstance(a, jax.Array) and a.dtype == dtype
        assert a.shape == (n + k, *orig.shape[1:])
        np.testing.assert_array_equal(np.asarray(a[:n]), np.asarray(orig))
    for a in (Xp, yp, wp, op, tp):
        assert not np.asarray(a[n:]).any()


def test_pad_values_are_in_the_support():
    for fam in (
        F.Gaussian(),
        F.Bernoulli(),
        F.Categorical(4),
        F.Poisson(),
        F.Laplace(),
        F.StudentT(),
        F.NegativeBinomial(),
    ):
        assert fam.pad_value() == 0.0
    assert F.Gamma().pad_value() == 1.0
    Xd, y, w, off = jnp.ones((3, 1)), jnp.ones(3), jnp.ones(3), jnp.zeros(3)
    Xp, yp, wp, op, tp = _buckets.pad_rows(Xd, y, w, off, None, F.Gamma(), 8)
    assert tp is None and np.asarray(yp).tolist() == [1.0] * 8
    assert np.asarray(wp).tolist() == [1.0] * 3 + [0.0] * 5
    # no padding needed: the same arrays back
    same = _buckets.pad_rows(Xd, y, w, off, None, F.Gamma(), 3)
    assert all(a is b for a, b in zip(same, (Xd, y, w, off, None), strict=True))
