"""Reference numbers for tests/test_penalties.py from glum (not needed at test time).

Run: ``python tests/reference/penalties_glum.py`` (needs glum) -> writes
``tests/reference/penalties_glum.json``: the data (seeded NumPy recipe below,
stored too) and glum's ``GeneralizedLinearRegressor`` coefficients for Lasso
and elastic-net Poisson and Gaussian fits (intercept unpenalised, no predictor
scaling, irls-cd, gradient tolerance far below the test's 1e-7).

glum minimises ``D/(2 sum s) + a (r |b|_1 + (1-r)/2 |b|^2)``; the tests map
``a`` to mlejax's ``alpha = a * n / phi`` (``phi`` = 1 for Poisson, the
Gaussian variance ``RSS/n`` at glum's solution, stored as ``sigma2``).
"""

import json
import pathlib

import glum
import numpy as np
from glum import GeneralizedLinearRegressor

rng = np.random.default_rng(20261127)
n, p = 120, 6
Z = rng.normal(size=(n, p))
beta = np.array([0.8, -0.6, 0.0, 0.0, 0.3, 0.0])
y_gauss = 0.5 + Z @ beta + rng.normal(size=n)
y_pois = rng.poisson(np.exp(0.2 + 0.5 * Z @ beta)).astype(float)

cases = []
for family, y, a in (("gaussian", y_gauss, 0.08), ("poisson", y_pois, 0.04)):
    for l1_ratio in (1.0, 0.5):
        m = GeneralizedLinearRegressor(
            family=family,
            alpha=a,
            l1_ratio=l1_ratio,
            fit_intercept=True,
            scale_predictors=False,
            solver="irls-cd",
            gradient_tol=1e-14,
            step_size_tol=1e-16,
            max_iter=10000,
        ).fit(Z, y)
        coef = np.r_[m.intercept_, m.coef_]
        eta = coef[0] + Z @ coef[1:]
        case = {
            "family": family,
            "alpha_glum": a,
            "l1_ratio": l1_ratio,
            "coef": coef.tolist(),
            "n_iter": int(m.n_iter_),
        }
        if family == "gaussian":
            case["sigma2"] = float(np.mean((y - eta) ** 2))
        cases.append(case)
        print(family, l1_ratio, coef)

out = {
    "glum_version": glum.__version__,
    "recipe": "np.random.default_rng(20261127); Z=normal((120,6)); see script",
    "Z": Z.tolist(),
    "y_gauss": y_gauss.tolist(),
    "y_pois": y_pois.tolist(),
    "cases": cases,
}
path = pathlib.Path(__file__).with_name("penalties_glum.json")
path.write_text(json.dumps(out, indent=1))
