"""Cost of one implicit gradient of a fit relative to the fit itself.

A 100,000 x 20 logistic regression (intercept + 19 covariates, float64).
Three compiled functions of the same data, each timed as the median of
interleaved repeats after a warm-up call (compilation excluded):

* ``fit``: ``jit(lambda X, w: mj.fit(X, y, Bernoulli(), weights=w).params)``;
* ``grad X``: ``jit(grad(lambda X: sum(fit(X).params)))``: the fit plus the
  implicit reverse-mode gradient with respect to every entry of ``X``;
* ``grad w``: the same with respect to the weights;
* ``hessian pass``: one evaluation of the gradient and Hessian of the NLL
  (``mlejax.objective.make_glm(...).evaluate(theta, True)``, the Newton step's
  dominant cost), the unit of the goal "an implicit gradient costs less than
  one extra Hessian pass and solve".

The implicit gradient's extra cost is ``grad - fit``; it is reported in units of
the fit and of one Hessian pass. Run standalone::

    python -m benchmarks.implicit_grad [--n 100000] [--p 20] [--repeats 7]

Timings on a shared machine are noisy (other processes compete for the
cores): compare the ratios, and rerun before trusting a single figure.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np

import mlejax as mj
from mlejax import objective


def _data(n: int, p: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    X = np.column_stack([np.ones(n), rng.standard_normal((n, p - 1))])
    beta = rng.normal(scale=1.0 / np.sqrt(p), size=p)
    y = (rng.random(n) < 1.0 / (1.0 + np.exp(-X @ beta))).astype(float)
    return jnp.asarray(X), jnp.asarray(y)


def _time(fn, args, repeats: int) -> list[float]:
    out = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        jax.block_until_ready(fn(*args))
        out.append(time.perf_counter() - t0)
    return out


def run(n: int = 100_000, p: int = 20, repeats: int = 7) -> dict:
    mj.enable_x64()
    X, y = _data(n, p)
    w = jnp.ones(n)
    fam = mj.families.Bernoulli()

    def params(X, w):
        return mj.fit(X, y, fam, weights=w).params

    fit = jax.jit(params)
    grad_X = jax.jit(jax.grad(lambda X, w: jnp.sum(params(X, w)), argnums=0))
    grad_w = jax.jit(jax.grad(lambda X, w: jnp.sum(params(X, w)), argnums=1))
    theta = fit(X, w)

    @jax.jit
    def hessian_pass(X, w, theta):
        data = objective.GLMData(X, y, w, jnp.zeros(n), None)
        g, H, _ = objective.make_glm(fam, data).evaluate(theta, True)
        return g, H

    cases = {
        "fit": (fit, (X, w)),
        "grad X": (grad_X, (X, w)),
        "grad w": (grad_w, (X, w)),
        "hessian pass": (hessian_pass, (X, w, theta)),
    }
    for fn, args in cases.values():  # compile and warm up
        jax.block_until_ready(fn(*args))
    times = {k: [] for k in cases}
    names = list(cases)
    for r in range(repeats):  # interleaved, order reversed every other repeat
        for k in names if r % 2 == 0 else names[::-1]:
            times[k] += _time(*cases[k], 1)
    med = {k: statistics.median(v) for k, v in times.items()}
    out = {"n": n, "p": p, "repeats": repeats, "median_s": med}
    for k in ("grad X", "grad w"):
        extra = med[k] - med["fit"]
        out[f"{k}: extra_s"] = extra
        out[f"{k}: extra / fit"] = extra / med["fit"]
        out[f"{k}: extra / hessian pass"] = extra / med["hessian pass"]
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument("--p", type=int, default=20)
    ap.add_argument("--repeats", type=int, default=7)
    a = ap.parse_args()
    print(json.dumps(run(a.n, a.p, a.repeats), indent=2))


if __name__ == "__main__":
    main()
