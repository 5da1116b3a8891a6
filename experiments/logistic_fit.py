"""Logistic regression by Newton, L-BFGS, Adam and SGD: same estimates, different cost.

One dataset ``y ~ Bernoulli(sigmoid(X w))``; each solver fits it through
``mj.fit(X, y, Bernoulli(), solver=...)``. Newton is the reference: every
other solver is reported by its largest coefficient difference and its
log-likelihood gap to Newton, next to its iterations and wall time (median of
``repeats`` calls after compilation). The objective trace
(``FitResult.trace``) shows how each approaches the optimum.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax

import mlejax as mj
from experiments import common
from experiments.config import LogisticFit
from experiments.core import fold

NAME = "logistic_fit"
Config = LogisticFit


def data(config: LogisticFit, key: jax.Array):
    kx, ky = jax.random.split(fold(key, "data"))
    X = common.design(kx, config.n, config.p, 0.3)
    w = jnp.linspace(-1.0, 1.0, config.p)
    y = jax.random.bernoulli(ky, jax.nn.sigmoid(X @ w)).astype(jnp.float64)
    return X, y, w


def solver_args(config: LogisticFit, name: str) -> dict:
    """Keyword arguments of ``mj.fit`` for solver ``name``."""
    if name == "newton":
        return {"solver": "newton", "tol": 1e-10, "max_iter": 100}
    if name == "lbfgs":
        return {"solver": "lbfgs", "tol": 1e-10, "max_iter": 500}
    if name == "adam":
        lr = config.adam_lr
        if config.adam_cosine_decay:  # a constant step leaves Adam hovering
            lr = optax.cosine_decay_schedule(lr, config.adam_steps)
        return {"solver": optax.adam(lr), "max_iter": config.adam_steps}
    if name == "sgd":
        return {
            "solver": optax.sgd(config.sgd_lr),
            "max_iter": config.sgd_steps,
        }
    raise ValueError(f"logistic_fit: unknown solver {name!r}")


def units(config: LogisticFit) -> list[str]:
    return list(config.solvers)


def run_unit(config: LogisticFit, key: jax.Array, unit: str) -> dict:
    X, y, w = data(config, key)
    fam = mj.families.Bernoulli()
    kw = solver_args(config, unit)
    with common.collect_warnings() as caught:
        res, seconds = common.timed(
            lambda: mj.fit(X, y, fam, **kw), repeats=config.repeats
        )
        ref = res if unit == "newton" else mj.fit(X, y, fam, solver="newton")
    trace = np.asarray(res.trace, float)
    return {
        "solver": unit,
        "params": np.asarray(res.params).tolist(),
        "stderr": np.asarray(res.stderr).tolist(),
        "loglik": float(res.loglik),
        "newton_params": np.asarray(ref.params).tolist(),
        "newton_loglik": float(ref.loglik),
        "n_iter": int(res.n_iter),
        "converged": bool(res.converged),
        "seconds": seconds,
        "trace": trace.tolist(),
        "true_params": np.asarray(w).tolist(),
        "warnings": caught.messages,
    }


def summarize(config: LogisticFit, unit_results: dict) -> dict:
    rows, claims = [], []
    for name, r in unit_results.items():
        diff = float(np.max(np.abs(np.subtract(r["params"], r["newton_params"]))))
        rows.append(
            {
                "solver": name,
                "max_abs_diff_vs_newton": diff,
                "loglik": r["loglik"],
                "loglik_gap_vs_newton": r["newton_loglik"] - r["loglik"],
                "n_iter": r["n_iter"],
                "converged": r["converged"],
                "seconds": r["seconds"],
                **{f"w{j}": v for j, v in enumerate(r["params"])},
            }
        )
        claims.append(
            f"{name}: {r['n_iter']} iterations, {r['seconds'] * 1e3:.1f} ms, "
            f"max |w - w_newton| = {diff:.2e}, loglik gap "
            f"{r['newton_loglik'] - r['loglik']:.2e} (converged={r['converged']})."
        )
    traces = {name: r["trace"] for name, r in unit_results.items()}
    return {
        "summary": {
            "max_abs_diff_vs_newton": max(r["max_abs_diff_vs_newton"] for r in rows),
            "newton_loglik": next(iter(unit_results.values()))["newton_loglik"],
        },
        "tables": {"solvers": rows},
        "traces": traces,
        "claims": claims,
    }


def plot(results: dict, folder) -> list:
    from experiments.writers import pyplot, save_figure

    plt = pyplot()
    best = -results["summary"]["newton_loglik"]  # minimal NLL
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for name, tr in results["traces"].items():
        t = np.array([np.nan if v is None else v for v in tr], float)
        gap = np.abs(t - best) / max(1.0, abs(best))
        k = np.arange(len(t))
        ok = np.isfinite(gap)
        ax.loglog(k[ok] + 1, np.maximum(gap[ok], 1e-17), label=name)
    ax.set_xlabel("iteration + 1")
    ax.set_ylabel("(NLL_k - NLL_min) / max(1, |NLL_min|)")
    ax.set_title("Logistic regression: objective gap per iteration")
    ax.legend()
    path = folder / f"{NAME}_trace.png"
    save_figure(fig, path)
    return [path]
