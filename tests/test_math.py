"""The vectorised ``exp`` of ``mlejax._math`` against mpmath over its whole domain."""

import jax
import jax.numpy as jnp
import mpmath
import numpy as np
import pytest

from mlejax._math import exp_nonpos

TINY = np.finfo(np.float64).tiny


def _reference(xs):
    with mpmath.workdps(40):
        return np.array([float(mpmath.exp(mpmath.mpf(float(v)))) for v in xs])


def _domain():
    rng = np.random.default_rng(7)
    return np.concatenate(
        [
            -np.logspace(-300, np.log10(746.0), 6000),  # every binade down to 1e-300
            -rng.uniform(0, 746.0, 6000),
            -rng.uniform(0, 1e-3, 1000),
            np.arange(-745, 1, 0.5) * -np.log(2.0) / np.log(2.0),  # near k ln 2
            -np.log(2.0) * np.arange(0, 1076) + rng.uniform(-1e-9, 1e-9, 1076),
            [0.0, -0.0, -5e-324, -1e-300, -708.39, -708.4, -709.78, -745.13, -745.2],
        ]
    )


def check_exp_over_the_domain(exp):
    """``exp`` (float64 in, float64 out) within 2 ulp of mpmath over
    :func:`_domain` where the result is a normal number; where it is
    subnormal, flushed to zero (XLA:CPU flushes, as its own exp) or, without
    the flush, the true value to within 2 subnormal ulp."""
    xs = np.minimum(_domain(), 0.0)
    got = np.asarray(jax.jit(exp)(jnp.asarray(xs, jnp.float64)))
    ref = _reference(xs)
    normal = ref >= TINY
    ulp = np.abs(got[normal] - ref[normal]) / np.spacing(ref[normal])
    assert ulp.max() <= 2.0, (ulp.max(), xs[normal][np.argmax(ulp)])
    sub = ~normal
    assert np.all((got[sub] == 0.0) | (np.abs(got[sub] - ref[sub]) <= 2 * 5e-324))


def test_exp_nonpos_within_2_ulp_of_mpmath_over_the_domain():
    check_exp_over_the_domain(exp_nonpos)


def test_exp_nonpos_special_values_and_other_dtypes():
    x = jnp.asarray([-jnp.inf, jnp.nan, -800.0, -0.0, 0.0], jnp.float64)
    got = np.asarray(jax.jit(exp_nonpos)(x))
    assert got[0] == 0.0 and np.isnan(got[1]) and got[2] == 0.0
    assert got[3] == 1.0 and got[4] == 1.0
    x32 = jnp.asarray([-1.5, -20.0], jnp.float32)
    out = exp_nonpos(x32)
    assert out.dtype == jnp.float32
    np.testing.assert_allclose(np.asarray(out), np.exp([-1.5, -20.0]), rtol=1e-6)


@pytest.mark.parametrize("x", [-1e-300, -1e-17, -0.3465, -0.3466, -1.0, -700.0])
def test_exp_nonpos_points(x):
    got = float(jax.jit(exp_nonpos)(jnp.asarray([x], jnp.float64))[0])
    ref = float(_reference([x])[0])
    assert abs(got - ref) <= 2 * np.spacing(ref)
