"""Gaussian maximum likelihood by iterative solvers reaches closed-form least squares.

Data ``y = X w + e``, ``e ~ N(0, noise^2)``, with an intercept and
equicorrelated columns (``correlation`` sets the conditioning). The Gaussian
NLL in ``theta = (w, log sigma)`` is minimised by SGD (plain gradient descent
on the full data), Adam, L-BFGS (Optax) and Newton, starting from ``w = 0``;
each is compared with ``mj.ols`` (accurate Householder QR):

* the relative distance ``||w_k - w_ols|| / ||w_ols||`` at every iteration
  (our own ``lax.scan`` of the same optimiser, so every iterate is visible;
  Newton here is Fisher scoring, whose w-step is the least-squares solve),
* the relative error of the final estimate of
  ``mj.fit_likelihood(gaussian_loglik, ..., solver=...)`` (``mj.fit`` with the
  Gaussian family is the closed form whatever the solver),
* iterations and seconds until the distance first falls below each threshold.
"""

from __future__ import annotations

import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

import mlejax as mj
from experiments import common
from experiments.config import LinearVsOLS
from experiments.core import fold

NAME = "linear_vs_ols"
Config = LinearVsOLS


def data(config: LinearVsOLS, key: jax.Array):
    """``(X, y, w_true)`` for this experiment (the same in every unit)."""
    kx, ke = jax.random.split(fold(key, "data"))
    X = common.design(kx, config.n, config.p, config.correlation)
    w_true = jnp.linspace(-1.0, 1.0, config.p) + 0.5
    y = X @ w_true + config.noise * jax.random.normal(ke, (config.n,), jnp.float64)
    return X, y, w_true


def loglik(params: dict, X: jax.Array, y: jax.Array) -> jax.Array:
    """Gaussian log-likelihood of ``{"w": (p,), "log_sigma": ()}``, constants kept."""
    sigma = jnp.exp(params["log_sigma"])
    return jnp.sum(mj.families.Gaussian().log_prob(y, X @ params["w"], scale=sigma))


def mean_nll(theta: jax.Array, X: jax.Array, y: jax.Array) -> jax.Array:
    """Mean Gaussian NLL of ``theta = (w, log sigma)`` (what mlejax's first-order
    solvers minimise, so learning rates do not scale with n)."""
    params = {"w": theta[:-1], "log_sigma": theta[-1]}
    return -loglik(params, X, y) / y.shape[0]


def optax_solver(config: LinearVsOLS, name: str):
    """The Optax transform for ``name`` (``sgd``/``adam``); build it once per unit."""
    if name == "sgd":
        return optax.sgd(config.sgd_lr)
    if name == "adam":
        return optax.adam(config.adam_lr)
    raise ValueError(f"linear_vs_ols: no Optax transform named {name!r}")


def curve(config: LinearVsOLS, name: str, X, y, w_ref, steps: int):
    """Relative distance to ``w_ref`` at iterations 0..steps (our own ``lax.scan``)."""
    theta0 = jnp.concatenate([jnp.zeros(X.shape[1]), jnp.log(jnp.std(y))[None]])
    f = jax.tree_util.Partial(mean_nll, X=X, y=y)

    def dist(theta):
        return jnp.linalg.norm(theta[:-1] - w_ref) / jnp.linalg.norm(w_ref)

    if name == "newton":  # Fisher scoring: block-diagonal expected information

        def step(theta, _):
            w = theta[:-1]
            r = y - X @ w
            w_new = w + jnp.linalg.solve(X.T @ X, X.T @ r)
            rss = jnp.sum((y - X @ w_new) ** 2)
            s_new = 0.5 * jnp.log(rss / y.shape[0])
            new = jnp.concatenate([w_new, s_new[None]])
            return new, dist(new)

        body = step
        state0 = theta0
    else:
        opt = optax.lbfgs() if name == "lbfgs" else optax_solver(config, name)
        vg = optax.value_and_grad_from_state(f) if name == "lbfgs" else None

        def body(carry, _):
            theta, state = carry
            if name == "lbfgs":
                value, grad = vg(theta, state=state)
                upd, state_new = opt.update(
                    grad, state, theta, value=value, grad=grad, value_fn=f
                )
            else:
                grad = jax.grad(f)(theta)
                upd, state_new = opt.update(grad, state, theta)
            new = optax.apply_updates(theta, upd)
            ok = jnp.all(jnp.isfinite(new))  # L-BFGS at the optimum can divide 0/0
            new = jnp.where(ok, new, theta)
            state_new = jax.tree.map(lambda a, b: jnp.where(ok, a, b), state_new, state)
            return (new, state_new), dist(new)

        state0 = (theta0, opt.init(theta0))

    @jax.jit
    def scan(state0):
        _, d = jax.lax.scan(body, state0, None, length=steps)
        return jnp.concatenate([dist(theta0)[None], d])

    d, seconds = common.timed(scan, state0, repeats=1)
    return np.asarray(d), seconds


def units(config: LinearVsOLS) -> list[str]:
    return list(config.solvers)


def run_unit(config: LinearVsOLS, key: jax.Array, unit: str) -> dict:
    X, y, w_true = data(config, key)
    ref = mj.ols(X, y)
    w_ols = ref.params
    dists, scan_s = curve(config, unit, X, y, w_ols, config.steps)
    per_step = scan_s / config.steps
    solver = unit if unit in ("lbfgs", "newton") else optax_solver(config, unit)
    init = {"w": jnp.zeros(config.p), "log_sigma": jnp.log(jnp.std(y))}

    def fit():
        return mj.fit_likelihood(
            loglik, init, X, y, solver=solver, max_iter=config.steps, tol=1e-12
        )

    with common.collect_warnings() as caught:
        t0 = time.perf_counter()
        jax.block_until_ready(fit())
        first_s = time.perf_counter() - t0
        res, fit_s = common.timed(fit, repeats=1)
    reach = {}
    for thr in config.thresholds:
        k = common.first_below(dists, thr)
        reach[f"{thr:g}"] = {
            "iterations": k,
            "seconds": None if k is None else k * per_step,
        }
    return {
        "solver": unit,
        "distance": dists.tolist(),
        "scan_seconds_per_step": per_step,
        "final_rel_error_curve": float(dists[-1]),
        "fit_rel_error": common.rel_err(res.params["w"], w_ols),
        "fit_loglik": float(res.loglik),
        "ols_loglik": float(ref.loglik),
        "fit_n_iter": int(res.n_iter),
        "fit_converged": bool(res.converged),
        "fit_seconds": fit_s,
        "fit_seconds_first_call": first_s,
        "fit_trace": np.asarray(res.trace).tolist(),
        "reach": reach,
        "w_true_rel_error_of_ols": common.rel_err(w_ols, w_true),
        "warnings": caught.messages,
    }


def summarize(config: LinearVsOLS, unit_results: dict) -> dict:
    rows = []
    for name, r in unit_results.items():
        row = {
            "solver": name,
            "fit_rel_error": r["fit_rel_error"],
            "curve_rel_error_at_end": r["final_rel_error_curve"],
            "fit_n_iter": r["fit_n_iter"],
            "fit_converged": r["fit_converged"],
            "fit_seconds": r["fit_seconds"],
            "loglik_gap": r["ols_loglik"] - r["fit_loglik"],
        }
        for thr, v in r["reach"].items():
            row[f"iters_to_{thr}"] = v["iterations"]
            row[f"seconds_to_{thr}"] = v["seconds"]
        rows.append(row)
    curves = [
        {"iteration": k, **{n: r["distance"][k] for n, r in unit_results.items()}}
        for k in range(config.steps + 1)
    ]
    claims = []
    for row in rows:
        ok = row["fit_rel_error"] <= 1e-6
        claims.append(
            f"`mj.fit_likelihood(gaussian_loglik, solver={row['solver']!r})` "
            "from w = 0 "
            + ("reached" if ok else "did NOT reach")
            + " closed-form least squares (`mj.ols`): relative error "
            f"{row['fit_rel_error']:.2e} after {row['fit_n_iter']} iterations "
            f"({row['fit_seconds'] * 1e3:.1f} ms); from w = 0 our scan of the same "
            f"optimiser is at {row['curve_rel_error_at_end']:.2e} after "
            f"{config.steps} steps."
        )
    return {
        "summary": {
            "max_fit_rel_error": max(r["fit_rel_error"] for r in rows),
            "all_reached_1e-6": all(r["fit_rel_error"] <= 1e-6 for r in rows),
        },
        "tables": {"solvers": rows, "distance_curves": curves},
        "claims": claims,
    }


def plot(results: dict, folder) -> list:
    from experiments.writers import pyplot, save_figure

    plt = pyplot()
    curves = results["tables"]["distance_curves"]
    solvers = [k for k in curves[0] if k != "iteration"]
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    it = [c["iteration"] for c in curves]
    for s in solvers:
        vals = np.array([np.nan if c[s] is None else c[s] for c in curves], float)
        ax.semilogy(it, np.maximum(vals, 1e-17), label=s)
    for thr in (1e-6, 1e-10):
        ax.axhline(thr, color="grey", lw=0.7, ls=":")
    ax.set_xlabel("iteration")
    ax.set_ylabel("||w_k - w_ols|| / ||w_ols||")
    ax.set_title("Gaussian MLE solvers vs closed-form least squares")
    ax.legend()
    path = folder / f"{NAME}_distance.png"
    save_figure(fig, path)
    return [path]
