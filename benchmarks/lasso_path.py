"""Lasso path benchmark: mlejax.fit_path vs glum vs scikit-learn (standalone script).

A logistic Lasso path of ``--n-alphas`` (50) strengths, log-spaced from the
smallest alpha that zeroes every slope down to 1e-3 of it, on an ``n x p``
(100k x 100) design. Each library fits the same path with warm starts:

* mlejax: ``mj.fit_path(X, y, Bernoulli(), Lasso(1.0), alphas)`` (one compiled
  ``lax.scan``; timed after a first call that compiles);
* glum: ``GeneralizedLinearRegressor(alpha_search=True, alpha=alphas / n)``;
* scikit-learn: ``LogisticRegression(C=1/alpha, l1_ratio=1, solver="saga")``
  refitted with ``warm_start=True`` (sklearn has no logistic ``lasso_path``).

Reported: wall seconds for the whole path, and the largest gap of the total
penalised objective ``NLL + alpha |beta_slopes|_1`` of each library against
the smallest of the three at each alpha (relative to ``|objective|``).
Timings are noisy (a shared machine): repeat before drawing conclusions.

    python benchmarks/lasso_path.py --n 100000 --p 100 --n-alphas 50
"""

from __future__ import annotations

import argparse
import time

import numpy as np


def objective(X, y, b, alpha):
    eta = X @ b
    return float(np.sum(np.logaddexp(0, eta) - y * eta) + alpha * np.abs(b[1:]).sum())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument("--p", type=int, default=100)
    ap.add_argument("--n-alphas", type=int, default=50)
    ap.add_argument("--skip-sklearn", action="store_true")
    args = ap.parse_args()

    import jax

    import mlejax as mj

    mj.enable_x64()
    rng = np.random.default_rng(0)
    n, p = args.n, args.p
    Z = rng.normal(size=(n, p))
    beta = np.where(np.arange(p) < 10, rng.normal(size=p), 0.0)
    y = (rng.random(n) < 1 / (1 + np.exp(-(0.2 + Z @ beta)))).astype(float)
    X = np.column_stack([np.ones(n), Z])
    # smallest alpha with all slopes zero: max |X' (y - ybar)| (intercept-only fit)
    a_max = float(np.max(np.abs(Z.T @ (y - y.mean()))))
    alphas = a_max * np.geomspace(1.0, 1e-3, args.n_alphas)
    rows = {}

    Xj = jax.device_put(X)
    t = time.perf_counter()
    res = mj.fit_path(Xj, y, mj.families.Bernoulli(), mj.penalties.Lasso(1.0), alphas)
    jax.block_until_ready(res.params)
    t_first = time.perf_counter() - t
    t = time.perf_counter()
    res = mj.fit_path(Xj, y, mj.families.Bernoulli(), mj.penalties.Lasso(1.0), alphas)
    jax.block_until_ready(res.params)
    rows["mlejax"] = (time.perf_counter() - t, np.asarray(res.params))
    print(
        f"mlejax: first call (with compile) {t_first:.1f} s, second "
        f"{rows['mlejax'][0]:.1f} s; all converged: {bool(np.all(res.converged))}; "
        f"total Newton iterations {int(np.sum(res.n_iter))}",
        flush=True,
    )

    try:
        from glum import GeneralizedLinearRegressor

        t = time.perf_counter()
        m = GeneralizedLinearRegressor(
            family="binomial",
            alpha_search=True,
            alpha=list(alphas / n),
            l1_ratio=1.0,
            scale_predictors=False,
            gradient_tol=1e-8,
        ).fit(Z, y)
        sec = time.perf_counter() - t
        rows["glum"] = (sec, np.column_stack([m.intercept_path_, m.coef_path_]))
    except ImportError:
        print("glum not installed: skipped")

    if not args.skip_sklearn:
        from sklearn.linear_model import LogisticRegression

        m = LogisticRegression(
            l1_ratio=1.0, solver="saga", tol=1e-6, max_iter=1000, warm_start=True
        )
        path = []
        t = time.perf_counter()
        for a in alphas:
            m.set_params(C=1.0 / a)
            m.fit(Z, y)
            path.append(np.r_[m.intercept_, m.coef_[0]])
        rows["scikit-learn"] = (time.perf_counter() - t, np.array(path))

    objs = {
        k: np.array([objective(X, y, b, a) for b, a in zip(v[1], alphas, strict=True)])
        for k, v in rows.items()
    }
    best = np.min(np.stack(list(objs.values())), axis=0)
    print(f"\nLasso logistic path, n={n}, p={p}, {len(alphas)} alphas (noisy timings)")
    print(f"{'library':<14}{'seconds':>10}{'max rel objective gap':>26}")
    for k, (sec, _) in rows.items():
        gap = np.max((objs[k] - best) / np.abs(best))
        print(f"{k:<14}{sec:>10.2f}{gap:>26.2e}")


if __name__ == "__main__":
    main()
