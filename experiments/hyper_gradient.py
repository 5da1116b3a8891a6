"""Hyperparameter by gradient: the Ridge strength chosen by descent through the fit.

Logistic data (``p`` coefficients: an intercept, ``informative`` real slopes
and the rest pure-noise covariates) are split into a training and a
validation set. The validation log-loss (mean binary cross-entropy) of
``mj.fit(X_tr, y_tr, Bernoulli(), penalty=Ridge(exp(t))).params`` is a
differentiable function of ``t = log(alpha)``: ``jax.value_and_grad`` gives
its derivative by the implicit function theorem (the solver loop is never
differentiated). ``steps`` Adam steps on ``t`` (cosine-decayed step size,
momentum ``b1``) from the poor start ``alpha_start``, one jitted step
compiled once, choose alpha. Ground truth is the same validation loss on a
dense log grid of alphas (one ``jax.vmap``-ed fit; with ``grid_vmap = false``
a loop of the compiled step, the same numbers without a second compilation).
scikit-learn's ``LogisticRegressionCV`` (``Cs = 1/alpha`` on the same range,
k-fold CV of the training set, ``scoring="neg_log_loss"``) is the usual way;
it picks alpha from the training data alone, so its alpha may differ. The
table gives each method's alpha, its validation log-loss against the grid's
minimum, and wall time (mlejax's compilation separately; timings on a shared
CPU are noisy). A sanity check compares the implicit derivative of the
validation loss with respect to ``log(alpha)`` at ``check_alpha`` with
central differences of scikit-learn refits (``C = 1/alpha``). The plot shows
the grid's validation curve with the gradient path's iterates on it.
"""

from __future__ import annotations

import inspect
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

import mlejax as mj
from experiments import common
from experiments.config import HyperGradient
from experiments.core import fold

NAME = "hyper_gradient"
Config = HyperGradient

#: step (in log alpha) of the central differences of scikit-learn refits
FD_STEP = 1e-4


def data(config: HyperGradient, key: jax.Array):
    """``(X_tr, y_tr, X_va, y_va)``: an intercept column first, then N(0, 1)
    covariates; true slopes ``signal, -signal, ...`` on the first ``informative``
    covariates, 0 on the rest; intercept 0.25. NumPy draws seeded from ``key``
    (no eager JAX operations to compile)."""
    seed = int(jax.random.bits(fold(key, "data"), dtype=jnp.uint32))
    rng = np.random.default_rng(seed)
    n = config.n_train + config.n_valid
    X = np.column_stack([np.ones(n), rng.standard_normal((n, config.p - 1))])
    beta = np.zeros(config.p)
    beta[0] = 0.25
    m = config.informative
    beta[1 : m + 1] = config.signal * np.where(np.arange(m) % 2 == 0, 1.0, -1.0)
    y = (rng.uniform(size=n) < 1.0 / (1.0 + np.exp(-(X @ beta)))).astype(np.float64)
    t = config.n_train
    return X[:t], y[:t], X[t:], y[t:]


def units(config: HyperGradient) -> list[str]:
    return ["choose"]


def log_loss(eta, y):
    """Mean binary cross-entropy of the logits ``eta`` (scikit-learn's log_loss)."""
    return jnp.mean(jnp.logaddexp(0.0, eta) - y * eta)


def _np_log_loss(eta, y) -> float:
    return float(np.mean(np.logaddexp(0.0, eta) - y * eta))


def make_loss(config: HyperGradient, X_tr, y_tr, X_va, y_va):
    """``t -> validation log-loss`` of the Ridge(exp(t)) fit, and ``t -> fit``."""
    fam = mj.families.Bernoulli()
    X_tr, y_tr = jnp.asarray(X_tr), jnp.asarray(y_tr)
    X_va, y_va = jnp.asarray(X_va), jnp.asarray(y_va)

    def fit(t):
        pen = mj.penalties.Ridge(jnp.exp(t))
        return mj.fit(X_tr, y_tr, fam, penalty=pen, tol=config.tol)

    def loss(t):
        return log_loss(X_va @ fit(t).params, y_va)

    return loss, fit


def _sk_params(X, y, alpha: float) -> np.ndarray:
    from sklearn.linear_model import LogisticRegression

    m = LogisticRegression(
        C=1.0 / alpha, tol=1e-14, max_iter=10_000, solver="newton-cholesky"
    ).fit(X[:, 1:], y)
    return np.r_[m.intercept_, m.coef_.ravel()]


def run_unit(config: HyperGradient, key: jax.Array, unit: str) -> dict:
    X_tr, y_tr, X_va, y_va = data(config, key)
    loss, fit = make_loss(config, X_tr, y_tr, X_va, y_va)
    opt = optax.adam(optax.cosine_decay_schedule(config.lr, config.steps), b1=config.b1)

    def loss_aux(t):
        res = fit(t)
        return log_loss(
            jnp.asarray(X_va) @ res.params, jnp.asarray(y_va)
        ), res.converged

    vg = jax.value_and_grad(loss_aux, has_aux=True)

    def step(t, state):
        (v, ok), g = vg(t)
        u, state = opt.update(g, state, t)
        return optax.apply_updates(t, u), state, v, g, ok

    t0 = np.float64(np.log(config.alpha_start))
    s0 = opt.init(t0)
    # -- the gradient path: compile once (timed apart), then steps jitted calls
    tic = time.perf_counter()
    step_c = jax.jit(step).lower(t0, s0).compile()
    compile_s = time.perf_counter() - tic
    with common.collect_warnings() as caught:
        tic = time.perf_counter()
        t, s, path = t0, s0, []
        for _ in range(config.steps):
            t_new, s, v, g, _ = step_c(t, s)
            path.append((t, v, g))
            t = t_new
        # the loss at the last iterate (its update is not taken)
        _, _, v_last, g_last, final_ok = jax.block_until_ready(step_c(t, s))
        path_s = time.perf_counter() - tic

    def value_grad(t):
        """(loss, d loss / d t) at ``t`` by the compiled step (no new compile)."""
        _, _, v, g, _ = step_c(np.float64(t), s0)
        return float(v), float(g)

    ts = np.array([float(a) for a, _, _ in path] + [float(t)])
    losses = np.array([float(b) for _, b, _ in path] + [float(v_last)])
    grads = np.array([float(c) for _, _, c in path] + [float(g_last)])
    # -- ground truth: the same loss on a dense grid, one vmapped fit
    grid_t = np.linspace(
        np.log(config.grid_min), np.log(config.grid_max), config.grid_size
    )
    if config.grid_vmap:
        tic = time.perf_counter()
        grid_fn = jax.jit(jax.vmap(lambda tt: (loss(tt), fit(tt).converged)))
        grid_c = grid_fn.lower(grid_t).compile()
        grid_compile_s = time.perf_counter() - tic
        tic = time.perf_counter()
        grid_loss, grid_ok = jax.block_until_ready(grid_c(grid_t))
        grid_s = time.perf_counter() - tic
    else:  # one compiled step per alpha: the same numbers, nothing to compile
        grid_compile_s, tic = 0.0, time.perf_counter()
        outs = [step_c(tt, s0) for tt in grid_t]
        grid_loss = np.array([float(o[2]) for o in outs])
        grid_ok = np.array([bool(o[4]) for o in outs])
        grid_s = time.perf_counter() - tic
    # -- scikit-learn: LogisticRegressionCV on the training set, same alpha range
    sk = _sklearn_cv(config, X_tr, y_tr, X_va, y_va)
    if sk:  # mlejax's loss at scikit-learn's alpha (its own fit gives the same)
        sk["mlejax_loss_at_alpha"] = value_grad(np.log(sk["alpha"]))[0]
    check = _gradient_check(config, X_tr, y_tr, X_va, y_va, value_grad)
    return {
        "log_alpha_path": ts.tolist(),
        "loss_path": losses.tolist(),
        "grad_path": grads.tolist(),
        "final_converged": bool(final_ok),
        "compile_seconds": compile_s,
        "path_seconds": path_s,
        "grid_log_alpha": grid_t.tolist(),
        "grid_loss": np.asarray(grid_loss).tolist(),
        "grid_converged": int(np.sum(np.asarray(grid_ok))),
        "grid_compile_seconds": grid_compile_s,
        "grid_seconds": grid_s,
        "sklearn": sk,
        "check": check,
        "warnings": caught.messages,
    }


def _sklearn_cv(config, X_tr, y_tr, X_va, y_va) -> dict:
    try:
        from sklearn.linear_model import LogisticRegressionCV
    except ImportError:  # scikit-learn is optional: its row is skipped
        return {}
    Cs = 1.0 / np.geomspace(config.grid_min, config.grid_max, config.n_Cs)
    kw = {}
    params = inspect.signature(LogisticRegressionCV).parameters
    if "l1_ratios" in params:  # scikit-learn >= 1.8: say "pure L2" (no warning)
        kw["l1_ratios"] = (0.0,)
    if "use_legacy_attributes" in params:
        kw["use_legacy_attributes"] = False
    m = LogisticRegressionCV(
        Cs=Cs,
        cv=config.cv_folds,
        scoring="neg_log_loss",
        solver="newton-cholesky",
        tol=1e-10,
        max_iter=1000,
        **kw,
    )
    tic = time.perf_counter()
    m.fit(X_tr[:, 1:], y_tr)
    seconds = time.perf_counter() - tic
    eta = m.decision_function(X_va[:, 1:])
    return {
        "alpha": float(1.0 / np.ravel(m.C_)[0]),
        "loss": _np_log_loss(eta, y_va),
        "seconds": seconds,
    }


def _gradient_check(config, X_tr, y_tr, X_va, y_va, value_grad) -> list[dict]:
    """The implicit hypergradient at ``check_alpha`` vs central differences of
    scikit-learn refits (``C = 1/alpha``) in ``log(alpha)``."""
    try:
        import sklearn  # noqa: F401
    except ImportError:
        return []
    a, h = config.check_alpha, FD_STEP
    _, g = value_grad(np.log(a))
    hi = _sk_params(X_tr, y_tr, a * np.exp(h))
    lo = _sk_params(X_tr, y_tr, a * np.exp(-h))
    fd = (_np_log_loss(X_va @ hi, y_va) - _np_log_loss(X_va @ lo, y_va)) / (2 * h)
    return [
        {
            "quantity": "d valid_logloss / d log(alpha)",
            "alpha": a,
            "implicit": g,
            "finite_difference": fd,
            "rel_diff": abs(g - fd) / abs(fd),
        }
    ]


def summarize(config: HyperGradient, unit_results: dict) -> dict:
    r = unit_results["choose"]
    grid_t = np.asarray(r["grid_log_alpha"])
    grid_loss = np.asarray(r["grid_loss"])
    i = int(np.argmin(grid_loss))
    g_min = float(grid_loss[i])
    t_path, l_path = np.asarray(r["log_alpha_path"]), np.asarray(r["loss_path"])
    a_grad, l_grad = float(np.exp(t_path[-1])), float(l_path[-1])
    gap = l_grad - g_min
    ok = gap <= config.tolerance
    rows = [
        {
            "method": "start (alpha_start)",
            "alpha": float(np.exp(t_path[0])),
            "valid_logloss": float(l_path[0]),
            "gap_vs_grid_min": float(l_path[0]) - g_min,
            "fits": 1,
            "compile_seconds": None,
            "seconds": None,
        },
        {
            "method": f"gradient (Adam on log alpha, {config.steps} steps)",
            "alpha": a_grad,
            "valid_logloss": l_grad,
            "gap_vs_grid_min": gap,
            "fits": config.steps + 1,
            "compile_seconds": r["compile_seconds"],
            "seconds": r["path_seconds"],
        },
        {
            "method": f"grid (mlejax {'vmap' if config.grid_vmap else 'loop'}, "
            f"{config.grid_size} alphas)",
            "alpha": float(np.exp(grid_t[i])),
            "valid_logloss": g_min,
            "gap_vs_grid_min": 0.0,
            "fits": config.grid_size,
            "compile_seconds": r["grid_compile_seconds"],
            "seconds": r["grid_seconds"],
        },
    ]
    sk = r["sklearn"]
    skipped = {}
    if sk:
        rows.append(
            {
                "method": f"LogisticRegressionCV ({config.n_Cs} Cs, "
                f"{config.cv_folds}-fold CV on train)",
                "alpha": sk["alpha"],
                "valid_logloss": sk["loss"],
                "gap_vs_grid_min": sk["loss"] - g_min,
                "fits": config.n_Cs * config.cv_folds + 1,
                "compile_seconds": None,
                "seconds": sk["seconds"],
            }
        )
    else:
        skipped["sklearn"] = "scikit-learn is not installed."
    claims = [
        f"Adam on log(alpha) from alpha = {config.alpha_start:g} "
        f"(validation log-loss {l_path[0]:.4f}) reaches alpha = {a_grad:.4g} in "
        f"{config.steps} steps: validation log-loss {l_grad:.6f}, "
        f"{gap:+.1e} from the minimum of the {config.grid_size}-point grid "
        f"({g_min:.6f} at alpha = {np.exp(grid_t[i]):.4g}); "
        + (
            f"within the tolerance {config.tolerance:g}."
            if ok
            else f"NOT within the tolerance {config.tolerance:g}."
        ),
        f"Wall time (noisy, shared CPU): the gradient path compiles in "
        f"{r['compile_seconds']:.2f} s, then runs its {config.steps} steps in "
        f"{r['path_seconds']:.2f} s"
        + (
            f"; LogisticRegressionCV takes {sk['seconds']:.2f} s "
            f"({config.n_Cs} Cs x {config.cv_folds} folds)."
            if sk
            else "."
        ),
    ]
    if sk:
        claims.append(
            f"LogisticRegressionCV (k-fold CV of the training set) picks alpha = "
            f"{sk['alpha']:.4g}: validation log-loss {sk['loss']:.6f} "
            f"({sk['loss'] - g_min:+.1e} from the grid minimum; it never sees the "
            f"validation set). mlejax's fit at that alpha gives "
            f"{sk['mlejax_loss_at_alpha']:.6f}."
        )
    claims.append(
        f"Convergence of the fits: the last iterate's "
        f"{'converged' if r['final_converged'] else 'did NOT converge'}; "
        f"{r['grid_converged']}/{config.grid_size} grid fits converged."
    )
    for c in r["check"]:
        claims.append(
            f"Implicit {c['quantity']} at alpha = {c['alpha']:g}: {c['implicit']:.6e} "
            f"vs {c['finite_difference']:.6e} by central differences of "
            f"scikit-learn refits (relative difference {c['rel_diff']:.1e})."
        )
    if not r["check"]:
        skipped["gradient_check"] = "scikit-learn is not installed."
    path_rows = [
        {
            "step": k,
            "alpha": float(np.exp(tk)),
            "valid_logloss": float(lk),
            "d_loss_d_log_alpha": float(gk),
        }
        for k, (tk, lk, gk) in enumerate(
            zip(t_path, l_path, r["grad_path"], strict=True)
        )
    ]
    grid_rows = [
        {"alpha": float(np.exp(tk)), "valid_logloss": float(lk)}
        for tk, lk in zip(grid_t, grid_loss, strict=True)
    ]
    return {
        "summary": {
            "alpha_gradient": a_grad,
            "alpha_grid": float(np.exp(grid_t[i])),
            "alpha_sklearn_cv": sk.get("alpha"),
            "gap_vs_grid_min": gap,
            "within_tolerance": bool(ok),
            "sklearn_mlejax_loss_diff": (
                abs(sk["loss"] - sk["mlejax_loss_at_alpha"]) if sk else None
            ),
            "max_gradient_check_rel_diff": max(
                (c["rel_diff"] for c in r["check"]), default=None
            ),
            "final_converged": r["final_converged"],
            "grid_converged": r["grid_converged"],
        },
        "tables": {
            "choice": rows,
            "gradient_check": r["check"],
            "path": path_rows,
            "grid": grid_rows,
        },
        "skipped": skipped,
        "warnings": r["warnings"],
        "claims": claims,
    }


def plot(results: dict, folder) -> list:
    from experiments.writers import pyplot, save_figure

    plt = pyplot()
    grid = results["tables"]["grid"]
    path = results["tables"]["path"]
    fig, ax = plt.subplots(figsize=(6.8, 4.4))
    ax.plot(
        [g["alpha"] for g in grid],
        [g["valid_logloss"] for g in grid],
        color="black",
        label="validation log-loss (mlejax grid)",
    )
    a = [p["alpha"] for p in path]
    lo = [p["valid_logloss"] for p in path]
    ax.plot(a, lo, "o-", color="tab:orange", ms=4, lw=0.8, label="gradient iterates")
    ax.plot(a[0], lo[0], "s", color="tab:red", ms=7, label="start")
    ax.plot(a[-1], lo[-1], "*", color="tab:green", ms=12, label="gradient choice")
    for row in results["tables"]["choice"]:
        if row["method"].startswith("LogisticRegressionCV"):
            ax.axvline(
                row["alpha"],
                color="tab:blue",
                ls="--",
                label="LogisticRegressionCV alpha",
            )
    ax.set_xscale("log")
    ax.set_xlabel("Ridge alpha (penalty alpha/2 |beta|^2 on the total NLL)")
    ax.set_ylabel("validation log-loss")
    ax.set_title("Choosing alpha by gradient through the fit")
    ax.legend(fontsize=8)
    out = folder / f"{NAME}.png"
    save_figure(fig, out)
    return [out]
