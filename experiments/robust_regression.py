"""Robust regression as maximum likelihood: Laplace and Student-t against Gaussian.

Linear data ``y = X w + e`` under three noise scenarios:

* ``gaussian``: N(0, 1) noise (the Gaussian MLE, least squares, is efficient),
* ``student_t``: Student-t noise with ``noise_df`` degrees of freedom (heavy tails),
* ``outliers``: N(0, 1) noise plus a fraction ``outlier_fraction`` of rows shifted
  by ``+outlier_shift`` (gross vertical outliers).

Each of the Gaussian (least squares), Laplace (least absolute deviations) and
Student-t MLEs is fitted to ``replications`` datasets with one vmapped
``mj.fit``; the estimation error is the root mean squared error of the
coefficients over replications (the slopes and the intercept separately: a
one-sided outlier shift biases every location estimate's intercept).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

import mlejax as mj
from experiments import common
from experiments.config import RobustRegression
from experiments.core import fold

NAME = "robust_regression"
Config = RobustRegression


def true_params(p: int) -> np.ndarray:
    return np.array([1.0] + [(-1.0) ** j * 0.5 for j in range(1, p)])


def noise(config: RobustRegression, scenario: str, key, shape):
    k1, k2, k3 = jax.random.split(key, 3)
    if scenario == "gaussian":
        return jax.random.normal(k1, shape, jnp.float64)
    if scenario == "student_t":
        return jax.random.t(k1, config.noise_df, shape, jnp.float64)
    if scenario == "outliers":
        e = jax.random.normal(k1, shape, jnp.float64)
        hit = jax.random.uniform(k2, shape) < config.outlier_fraction
        return e + jnp.where(hit, config.outlier_shift, 0.0)
    raise ValueError(f"robust_regression: unknown scenario {scenario!r}")


def family(config: RobustRegression, name: str):
    if name == "StudentT":
        return mj.families.StudentT(df=config.student_df or None)
    return common.family_by_name(name)


_FITTERS: dict = {}


def fitter(fam, max_iter: int = 100):
    """``jit(vmap(mj.fit))`` for ``fam``, cached: one compilation per family."""
    if (fam, max_iter) not in _FITTERS:
        fit = jax.vmap(lambda X, y: mj.fit(X, y, fam, max_iter=max_iter))
        _FITTERS[fam, max_iter] = jax.jit(fit)
    return _FITTERS[fam, max_iter]


def units(config: RobustRegression) -> list[str]:
    return [f"{s}/{f}" for s in config.scenarios for f in config.families]


def data(config: RobustRegression, key: jax.Array, scenario: str):
    """``(Xs (R, n, p), Y (R, n), w)``: the replicated datasets of ``scenario``."""
    w = true_params(config.p)
    kx, ke = jax.random.split(fold(key, f"data/{scenario}"))
    R, n, p = config.replications, config.n, config.p
    Xs = jax.vmap(lambda k: common.design(k, n, p))(jax.random.split(kx, R))
    Y = jnp.einsum("rnp,p->rn", Xs, w) + noise(config, scenario, ke, (R, n))
    return Xs, Y, w


def run_unit(config: RobustRegression, key: jax.Array, unit: str) -> dict:
    scenario, fam_name = unit.split("/")
    Xs, Y, w = data(config, key, scenario)
    fam = family(config, fam_name)
    with common.collect_warnings() as caught:
        res = jax.block_until_ready(fitter(fam, config.max_iter)(Xs, Y))
    conv = np.asarray(res.converged)
    d = np.asarray(res.params) - w  # non-converged fits are kept (and counted)
    return {
        "scenario": scenario,
        "family": fam_name,
        "replications": config.replications,
        "converged": int(conv.sum()),
        "rmse_slopes": float(np.sqrt(np.mean(d[:, 1:] ** 2))),
        "rmse_intercept": float(np.sqrt(np.mean(d[:, 0] ** 2))),
        "median_abs_err_slopes": float(np.median(np.abs(d[:, 1:]))),
        "mean_slope_bias": float(np.mean(d[:, 1:])),
        "warnings": caught.messages,
    }


def summarize(config: RobustRegression, unit_results: dict) -> dict:
    rows = [
        {k: v for k, v in r.items() if k != "warnings"} for r in unit_results.values()
    ]
    claims = []
    for s in config.scenarios:
        rs = [r for r in rows if r["scenario"] == s]
        best = min(rs, key=lambda r: r["rmse_slopes"])
        parts = ", ".join(f"{r['family']} {r['rmse_slopes']:.4f}" for r in rs)
        conv = ", ".join(
            f"{r['family']} {r['converged']}/{r['replications']}" for r in rs
        )
        claims.append(
            f"{s} noise: slope RMSE {parts}; smallest: {best['family']} "
            f"(converged fits: {conv})."
        )
    return {
        "summary": {
            f"best_{s}": min(
                (r for r in rows if r["scenario"] == s), key=lambda r: r["rmse_slopes"]
            )["family"]
            for s in config.scenarios
        },
        "tables": {"errors": rows},
        "claims": claims,
    }


def plot(results: dict, folder) -> list:
    from experiments.writers import pyplot, save_figure

    plt = pyplot()
    rows = results["tables"]["errors"]
    scen = list(dict.fromkeys(r["scenario"] for r in rows))
    fams = list(dict.fromkeys(r["family"] for r in rows))
    fig, ax = plt.subplots(figsize=(7, 4.2))
    width = 0.8 / len(fams)
    for j, f in enumerate(fams):
        vals = [
            next(
                r["rmse_slopes"]
                for r in rows
                if r["scenario"] == s and r["family"] == f
            )
            for s in scen
        ]
        ax.bar(np.arange(len(scen)) + j * width, vals, width, label=f"{f} MLE")
    ax.set_xticks(np.arange(len(scen)) + width * (len(fams) - 1) / 2, scen)
    ax.set_yscale("log")
    ax.set_xlabel("noise scenario")
    ax.set_ylabel("RMSE of slope estimates (log scale)")
    ax.set_title("Robust regression: estimation error by likelihood")
    ax.legend()
    path = folder / f"{NAME}_rmse.png"
    save_figure(fig, path)
    return [path]
