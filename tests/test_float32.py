"""float32 data give a float32 fit, close to the float64 one.

Documented tolerances (20 x 3 problems, moderate signal), float32 vs float64:
params within ``5e-3 * (|b| + 0.1)`` (NegativeBinomial's alpha couples to every
coefficient, hence the loose bound), stderr within 1e-2 relative, loglik within
``1e-4 * |loglik|``. Pass ``tol=1e-5`` (Newton step / gradient) in float32:
1e-10 is below its resolution. The newton solver runs on every family; L-BFGS
and an Optax transform on a representative subset (set ``MLEJAX_FULL_FLOAT32=1``
for the full families x solvers matrix: each cell is one more compile).
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import numpy as np
import optax
import pytest
from problems import FAMILY_NAMES

import mlejax as mj

ADAM = optax.adam(0.05)  # one transform object: reused, so compiled once
FULL = os.environ.get("MLEJAX_FULL_FLOAT32") == "1"
SUBSET = {"Poisson", "Categorical", "Gamma"}


def _cases():
    for name in FAMILY_NAMES:
        for solver in ("newton", "lbfgs", "adam"):
            skip = solver != "newton" and not FULL and name not in SUBSET
            yield pytest.param(
                name,
                solver,
                id=f"{name}-{solver}",
                marks=pytest.mark.skip(reason="MLEJAX_FULL_FLOAT32=1 runs it")
                if skip
                else (),
            )


@pytest.mark.parametrize("name,solver", list(_cases()))
def test_float32_fit_matches_float64(glm_problems, name, solver):
    fam, X, y, kw = glm_problems[name]
    s = ADAM if solver == "adam" else solver
    iters = 500 if solver == "adam" else 100
    ref = mj.fit(X, y, fam, **kw)  # float64 newton: the reference
    kw32 = {k: v.astype(np.float32) for k, v in kw.items()}
    res = mj.fit(
        X.astype(np.float32),
        y.astype(np.float32),
        fam,
        solver=s,
        tol=1e-5,
        max_iter=iters,
        **kw32,
    )
    assert bool(res.converged) and bool(ref.converged)
    for leaf in (res.params, res.stderr, res.loglik, res.cov, *res.extra.values()):
        assert leaf.dtype == np.float32
    b64 = np.asarray(ref.params)
    assert np.all(np.abs(np.asarray(res.params) - b64) <= 5e-3 * (np.abs(b64) + 0.1))
    np.testing.assert_allclose(res.stderr, ref.stderr, rtol=1e-2)
    np.testing.assert_allclose(res.loglik, ref.loglik, rtol=1e-4)
    # A weakly identified extra (NB alpha ~0.03 on 20 rows) moves the float32
    # NLL (~30, rounding 4e-6) by less than its rounding across +-5%.
    for k in ref.extra:
        np.testing.assert_allclose(res.extra[k], ref.extra[k], rtol=1e-1)


_SCRIPT = textwrap.dedent(
    """
    import warnings
    import jax
    jax.config.update("jax_enable_x64", False)
    import numpy as np
    import mlejax as mj
    X = mj.add_constant(np.linspace(-1.0, 1.0, 12))
    y = np.array([0, 1, 0, 0, 1, 0, 1, 1, 0, 1, 1, 1], dtype=np.float64)
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        res = mj.fit(X, y, mj.families.Bernoulli())
    msgs = [str(m.message) for m in w if m.category is UserWarning]
    assert any("X is float64 but jax_enable_x64 is off" in m for m in msgs), msgs
    assert any("mj.enable_x64()" in m for m in msgs), msgs
    assert res.params.dtype == np.float32, res.params.dtype
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # float32 input: nothing to warn about
        mj.fit(X.astype(np.float32), y.astype(np.float32), mj.families.Bernoulli())
    print("OK")
    """
)


def test_float64_numpy_with_x64_off_warns():
    """In a subprocess: conftest turns x64 on for this whole process."""
    env = {**os.environ, "JAX_ENABLE_X64": "0", "JAX_PLATFORMS": "cpu"}
    out = subprocess.run(
        [sys.executable, "-c", _SCRIPT],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert out.returncode == 0 and "OK" in out.stdout, out.stderr[-3000:]
