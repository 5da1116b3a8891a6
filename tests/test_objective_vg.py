"""mj.objective.value_and_grad: the fused NLL + score pass against statsmodels.

The NLL, score and Hessian (by differentiating the fused pass) are compared with
statsmodels' GLM ``loglike``/``score``/``hessian`` (frequency weights, offset,
zero-weight rows), and the pass is checked under jit, vmap and grad.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import mlejax as mj

sm = pytest.importorskip("statsmodels.api")

# > 2 * objective.BLOCK rows: the blocked loop with a clamped, masked last block
N, P = 2100, 4


def _data(seed=0):
    rng = np.random.default_rng(seed)
    X = np.column_stack([np.ones(N), rng.standard_normal((N, P - 1))])
    b = rng.standard_normal(P) * 0.3
    w = rng.integers(0, 4, N).astype(float)  # integer: statsmodels freq_weights
    off = 0.1 * rng.standard_normal(N)
    return rng, X, b, w, off


@pytest.mark.parametrize("name", ["bernoulli", "gaussian"])
def test_value_grad_hessian_match_statsmodels(name):
    rng, X, b, w, off = _data()
    eta = X @ b + off
    if name == "bernoulli":
        y = (rng.uniform(size=N) < 1 / (1 + np.exp(-eta))).astype(float)
        fam, smf, extra = mj.families.Bernoulli(), sm.families.Binomial(), {}
    elif name == "poisson":
        y = rng.poisson(np.exp(eta)).astype(float)
        fam, smf, extra = mj.families.Poisson(), sm.families.Poisson(), {}
    else:
        y = eta + rng.standard_normal(N)
        fam, smf, extra = mj.families.Gaussian(), sm.families.Gaussian(), {}
    w = np.maximum(w, 1.0)  # statsmodels' Hessian divides by the weights
    ref = sm.GLM(y, X, family=smf, freq_weights=w, offset=off)
    scale = 1.7
    if name == "gaussian":  # statsmodels' scale is sigma^2; mlejax's is sigma
        extra = {"scale": np.sqrt(scale)}
    kw = {"scale": scale} if name == "gaussian" else {}

    def vg(beta):
        return mj.objective.value_and_grad(fam, beta, X, y, w, off, **extra)

    f, g = jax.jit(vg)(jnp.asarray(b))
    H = jax.jacfwd(lambda beta: vg(beta)[1])(jnp.asarray(b))
    f_ref = -ref.loglike(b, **kw)
    g_ref = -ref.score(b, **kw)
    H_ref = -ref.hessian(b, **kw)
    np.testing.assert_allclose(f, f_ref, rtol=1e-12)
    np.testing.assert_allclose(g, g_ref, rtol=1e-10, atol=1e-10 * np.abs(g_ref).max())
    np.testing.assert_allclose(H, H_ref, rtol=1e-10, atol=1e-10 * np.abs(H_ref).max())
    # reverse mode through the value equals the fused gradient
    np.testing.assert_allclose(
        jax.grad(lambda t: vg(t)[0])(jnp.asarray(b)), g_ref, rtol=1e-10
    )


def test_zero_weight_rows_inert_and_vmap():
    rng, X, b, w, off = _data(1)
    y = rng.poisson(1.0, N).astype(float)
    fam = mj.families.Poisson()
    y_bad = y.copy()
    y_bad[w == 0] = np.nan  # zero-weight rows count nothing, even when not finite
    f1, g1 = mj.objective.value_and_grad(fam, b, X, y, w)
    f2, g2 = mj.objective.value_and_grad(fam, b, X, y_bad, w)
    assert np.isfinite(f2) and f1 == f2 and np.array_equal(g1, g2)
    B = jnp.stack([jnp.asarray(b), 0.5 * jnp.asarray(b)])
    fv, gv = jax.vmap(lambda t: mj.objective.value_and_grad(fam, t, X, y, w))(B)
    f_half, g_half = mj.objective.value_and_grad(fam, 0.5 * b, X, y, w)
    np.testing.assert_allclose(fv, [f1, f_half], rtol=1e-14)
    np.testing.assert_allclose(gv[1], g_half, rtol=1e-12, atol=1e-12)


def test_bad_params_shape():
    _, X, b, _, _ = _data()
    with pytest.raises(ValueError, match="params must have shape"):
        mj.objective.value_and_grad(mj.families.Poisson(), b[:2], X, np.ones(N))
    with pytest.raises(ValueError, match="extras"):
        mj.objective.value_and_grad(mj.families.Gaussian(), b, X, np.ones(N))
