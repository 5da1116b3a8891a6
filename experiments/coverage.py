"""Coverage of 95% intervals under misspecification: what autodiff inference buys.

Three settings, each ``replications`` data sets fitted, their covariances
(model-based, HC0, HC1, cluster-robust) and their profile-likelihood
intervals computed in ONE compiled ``jax.vmap`` call per setting (the
profile intervals too: :func:`mlejax.profile.profile_ci_traced` under
``vmap``, every endpoint solved exactly):

* ``overdispersed_poisson``: negative-binomial counts (variance
  ``mu + alpha mu^2``) fitted as Poisson. The mean model is right, so the
  true coefficients are the estimand; the Poisson information understates
  the variance, and only the sandwich (HC0/HC1) repairs it. The profile
  interval uses the same (wrong) Poisson likelihood and fails with it.
* ``clustered_logistic``: a logistic model with a random cluster intercept
  and a covariate that is mostly constant within clusters, fitted by plain
  logistic regression. The estimand is the pseudo-true (population-averaged)
  coefficient, computed here by Gauss-Hermite quadrature; rows within a
  cluster are dependent, so only the cluster-robust covariance covers.
* ``small_logistic``: a correctly specified logistic model in a small
  sample with a strong effect: the Wald interval's quadratic approximation
  fails (Hauck-Donner), the profile interval holds.

Coverage is of the slope (the second coefficient), over the fits that
converged (separated samples in the small setting are counted and left
out: there no Wald interval exists); Monte Carlo standard errors are
``sqrt(c (1 - c) / R)``.
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
from scipy import stats

import mlejax as mj
from experiments import common
from experiments.config import Coverage
from experiments.core import fold
from mlejax import inference, profile
from mlejax.objective import GLMData

NAME = "coverage"
Config = Coverage

SETTINGS = ("overdispersed_poisson", "clustered_logistic", "small_logistic")
#: true coefficients (intercept, slope) of each data-generating model
TRUE = {
    "overdispersed_poisson": (0.5, 0.5),
    "clustered_logistic": (-0.3, 1.0),
    "small_logistic": (-0.5, 2.0),
}
METHODS = ("model", "HC0", "HC1", "cluster", "profile")
#: which intervals each setting computes (cluster needs clusters)
SETTING_METHODS = {
    "overdispersed_poisson": ("model", "HC0", "HC1", "profile"),
    "clustered_logistic": ("model", "HC0", "HC1", "cluster", "profile"),
    "small_logistic": ("model", "HC0", "HC1", "profile"),
}
#: within-cluster noise of the covariate (its cluster part has variance 1)
X_NOISE = 0.5


def units(config: Coverage) -> list[str]:
    return list(config.settings)


def _n_rows(config: Coverage, setting: str) -> int:
    return {
        "overdispersed_poisson": config.n_poisson,
        "clustered_logistic": config.clusters * config.cluster_size,
        "small_logistic": config.n_small,
    }[setting]


def pseudo_true_logistic(beta, cluster_sd: float, x_sd: float, nodes: int = 80):
    """The population-averaged logistic coefficients of the clustered model.

    ``P(y=1 | x) = E_a expit(b0 + b1 x + sd a)``, ``a ~ N(0, 1)``,
    ``x ~ N(0, x_sd^2)``; the pseudo-true ``c`` solves
    ``E[(1, x) (P(y=1 | x) - expit(c0 + c1 x))] = 0`` (the limit of the
    logistic MLE), both expectations by Gauss-Hermite quadrature.
    """
    t, wt = np.polynomial.hermite_e.hermegauss(nodes)
    wt = wt / wt.sum()
    x = x_sd * t
    P = (
        1 / (1 + np.exp(-(beta[0] + beta[1] * x[:, None] + cluster_sd * t[None, :])))
    ) @ wt
    Z = np.column_stack([np.ones_like(x), x])
    c = np.array(beta, float)
    for _ in range(100):
        mu = 1 / (1 + np.exp(-(Z @ c)))
        g = Z.T @ (wt * (P - mu))
        H = (Z * (wt * mu * (1 - mu))[:, None]).T @ Z
        step = np.linalg.solve(H, g)
        c = c + step
        if np.max(np.abs(step)) < 1e-15:
            break
    return c


def truth(config: Coverage, setting: str) -> np.ndarray:
    beta = np.array(TRUE[setting], float)
    if setting == "clustered_logistic":
        x_sd = math.sqrt(1.0 + X_NOISE**2)
        return pseudo_true_logistic(beta, config.cluster_sd, x_sd)
    return beta


def draw(config: Coverage, setting: str, key, reps: int):
    """``(X, Y, groups)``: ``reps`` data sets (``Y`` and, where it varies, ``X``)."""
    return _draw(
        setting,
        reps,
        _n_rows(config, setting),
        config.clusters,
        config.cluster_size,
        float(config.cluster_sd),
        float(config.nb_alpha),
        key,
    )


@functools.partial(jax.jit, static_argnums=(0, 1, 2, 3, 4, 5, 6))
def _draw(setting, reps, n, G, m, cluster_sd, nb_alpha, key):
    beta = jnp.asarray(TRUE[setting])
    kx, ky, ka = jax.random.split(key, 3)
    if setting == "clustered_logistic":
        u = jax.random.normal(kx, (reps, G, 1))
        e = jax.random.normal(jax.random.fold_in(kx, 1), (reps, G, m))
        x = (u + X_NOISE * e).reshape(reps, G * m)
        a = jax.random.normal(ka, (reps, G, 1)) * cluster_sd
        a = jnp.broadcast_to(a, (reps, G, m)).reshape(reps, G * m)
        eta = beta[0] + beta[1] * x + a
        Y = jax.random.bernoulli(ky, jax.nn.sigmoid(eta)).astype(jnp.float64)
        X = jnp.stack([jnp.ones_like(x), x], axis=-1)
        groups = jnp.repeat(jnp.arange(G), m)
        return X, Y, groups
    x = jax.random.normal(kx, (reps, n))
    X = jnp.stack([jnp.ones_like(x), x], axis=-1)
    eta = beta[0] + beta[1] * x
    if setting == "overdispersed_poisson":
        # NB2 as a gamma-Poisson mixture: variance mu + alpha mu^2
        r = 1.0 / nb_alpha
        lam = jax.random.gamma(ka, r, (reps, n)) / r * jnp.exp(eta)
        Y = jax.random.poisson(ky, lam).astype(jnp.float64)
    else:
        Y = jax.random.bernoulli(ky, jax.nn.sigmoid(eta)).astype(jnp.float64)
    return X, Y, None


def _intervals_impl(
    setting: str, n_groups: int, profile_on: bool, z: float, X, Y, groups
):
    """Every interval of the slope for each replication: ONE vmapped call."""
    fam = common.family_by_name(
        "Poisson" if setting == "overdispersed_poisson" else "Bernoulli"
    )

    def one(X, y):
        res = mj.fit(X, y, fam)
        n, k = X.shape[0], X.shape[1]
        data = GLMData(X, y, jnp.ones(n, X.dtype), jnp.zeros(n, X.dtype), None)
        b = res.params
        se = {"model": res.stderr[1]}
        cov0 = inference.robust_glm(fam, data, b, {}, "HC0", None, None)[0]
        se["HC0"] = jnp.sqrt(cov0[1, 1])
        se["HC1"] = se["HC0"] * jnp.sqrt(n / (n - k))  # mlejax's HC1 convention
        if n_groups:
            cov_c = inference.robust_glm(
                fam, data, b, {}, "cluster", groups, (n_groups,)
            )[0]
            se["cluster"] = jnp.sqrt(cov_c[1, 1])
        ci = {m: jnp.stack([b[1] - z * s, b[1] + z * s]) for m, s in se.items()}
        st = jnp.asarray(0)
        if profile_on:
            pci, pst = profile.profile_ci_traced(X, y, fam, b, res.stderr, (1,))
            ci["profile"], st = pci[0], pst[0]
        return ci, res.converged, b[1], st

    return jax.vmap(one)(X, Y)


# compiled without LLVM's optimisation passes: the work per replication is
# small and the compilation (a Newton fit, two sandwiches and an exact profile
# search, all vmapped) dominates; see mlejax.fit's small-fit rule
_intervals = jax.jit(
    _intervals_impl,
    static_argnums=(0, 1, 2, 3),
    compiler_options={"xla_backend_optimization_level": 0},
)


def run_unit(config: Coverage, key: jax.Array, unit: str) -> dict:
    setting = unit
    reps = config.replications
    X, Y, groups = draw(config, setting, fold(key, unit), reps)
    methods = [m for m in SETTING_METHODS[setting] if m != "profile" or config.profile]
    z = float(stats.norm.ppf(0.5 + config.level / 2))
    n_groups = config.clusters if "cluster" in methods else 0
    with common.collect_warnings() as caught:
        ci, conv, est, pst = jax.block_until_ready(
            _intervals(setting, n_groups, config.profile, z, X, Y, groups)
        )
    conv = np.asarray(conv)
    target = float(truth(config, setting)[1])
    out = {
        "setting": setting,
        "n": _n_rows(config, setting),
        "replications": reps,
        "used": int(conv.sum()),
        "truth": target,
        "mean_estimate": float(np.mean(np.asarray(est)[conv])),
        "warnings": caught.messages,
    }
    for m in methods:
        c = np.asarray(ci[m])[conv]
        ok = np.isfinite(c).any(axis=1) & ~np.isnan(c).any(axis=1)
        covered = ok & (c[:, 0] <= target) & (target <= c[:, 1])
        out[f"covered_{m}"] = int(covered.sum())
        out[f"failed_{m}"] = int((~ok).sum())
        width = np.where(np.isfinite(c[:, 1] - c[:, 0]), c[:, 1] - c[:, 0], np.nan)
        out[f"median_width_{m}"] = float(np.nanmedian(width)) if ok.any() else None
        out[f"miss_low_{m}"] = int((ok & (target < c[:, 0])).sum())
        out[f"miss_high_{m}"] = int((ok & (target > c[:, 1])).sum())
    if config.profile:
        out["profile_infinite"] = int(np.isinf(np.asarray(ci["profile"])[conv]).sum())
        out["profile_status_nonzero"] = int((np.asarray(pst)[conv] != 0).any(-1).sum())
    return out


def summarize(config: Coverage, unit_results: dict) -> dict:
    rows, claims = [], []
    for r in unit_results.values():
        R = r["used"]
        for m in METHODS:
            if f"covered_{m}" not in r:
                continue
            c = r[f"covered_{m}"] / R if R else math.nan
            mcse = math.sqrt(c * (1 - c) / R) if R else math.nan
            rows.append(
                {
                    "setting": r["setting"],
                    "method": m,
                    "n": r["n"],
                    "used": R,
                    "replications": r["replications"],
                    "coverage": c,
                    "mcse": mcse,
                    "below": r[f"miss_low_{m}"] / R if R else math.nan,
                    "above": r[f"miss_high_{m}"] / R if R else math.nan,
                    "failed": r[f"failed_{m}"],
                    "median_width": r[f"median_width_{m}"],
                }
            )
        got = {row["method"]: row for row in rows if row["setting"] == r["setting"]}
        parts = ", ".join(
            f"{m} {row['coverage']:.3f} (±{row['mcse']:.3f})" for m, row in got.items()
        )
        claims.append(
            f"{r['setting']} (n={r['n']}, {R} of {r['replications']} fits "
            f"converged, slope estimand {r['truth']:.4f}): coverage of nominal "
            f"{config.level:.2f} intervals: {parts}."
        )
    by = {(row["setting"], row["method"]): row["coverage"] for row in rows}
    summary = {f"{s}/{m}": c for (s, m), c in by.items()}
    return {"summary": summary, "tables": {"coverage": rows}, "claims": claims}


def figure(results: dict, level: float = 0.95):
    from experiments.writers import pyplot

    plt = pyplot()
    rows = results["tables"]["coverage"]
    settings = list(dict.fromkeys(r["setting"] for r in rows))
    colors = {m: f"C{i}" for i, m in enumerate(METHODS)}
    fig, axes = plt.subplots(
        1, len(settings), figsize=(4.2 * len(settings), 4.0), squeeze=False
    )
    for ax, s in zip(axes[0], settings, strict=True):
        rs = [r for r in rows if r["setting"] == s]
        xs = np.arange(len(rs))
        ax.bar(
            xs,
            [r["coverage"] for r in rs],
            yerr=[1.96 * r["mcse"] for r in rs],
            color=[colors[r["method"]] for r in rs],
            capsize=3,
        )
        ax.axhline(level, color="k", lw=0.8, ls="--")
        ax.set_xticks(xs, [r["method"] for r in rs])
        lo = min([r["coverage"] for r in rs] + [level]) - 0.05
        ax.set_ylim(max(0.0, lo), 1.0)
        ax.set_title(f"{s} (n={rs[0]['n']})", fontsize=9)
    axes[0][0].set_ylabel(f"coverage of nominal {level:.2f} intervals (slope)")
    fig.text(
        0.01,
        -0.02,
        "Dashed line: nominal level. Error bars: ±1.96 Monte Carlo s.e. "
        "model = inverse-information Wald; HC0/HC1/cluster = sandwich Wald; "
        "profile = exact profile-likelihood interval.",
        fontsize=8,
        ha="left",
        va="top",
    )
    return fig


def plot(results: dict, folder) -> list:
    from experiments.writers import save_figure

    path = folder / f"{NAME}_coverage.png"
    save_figure(figure(results), path)
    return [path]
