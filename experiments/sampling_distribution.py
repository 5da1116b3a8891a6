"""The sampling distribution of the MLE, by Monte Carlo with ``jax.vmap`` of ``mj.fit``.

For each family and sample size n, one fixed design ``X`` (intercept plus
N(0, 1) columns; the first n rows of one design shared by all n) and
``replications`` datasets ``y`` drawn from the model are fitted in one
compiled, vectorised call per chunk. From all replications:

* bias ``mean(w_hat) - w`` with its Monte Carlo standard error,
* the empirical covariance of ``w_hat`` against the mean of ``res.cov`` (the
  inverse Fisher information): the ratio of their diagonals should be ~1,
* 95% Wald coverage ``|w_hat - w| <= z * stderr`` per coefficient, with its
  Monte Carlo standard error ``sqrt(c (1 - c) / R)``.

Fits that did not converge (rare separation in small Bernoulli samples) are
counted and left out of the statistics.
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
from experiments.config import SamplingDistribution
from experiments.core import fold

NAME = "sampling_distribution"
Config = SamplingDistribution

TRUE = {
    "Gaussian": (1.0, 0.5, -0.5, 0.25, -0.25),
    "Bernoulli": (0.3, 0.8, -0.5, 0.25, -0.25),
    "Poisson": (0.5, 0.3, -0.2, 0.1, -0.1),
}
GAUSSIAN_SCALE = 1.5
#: the band a correct 95% interval should hit at n >= 500 (the summary's check)
COVERAGE_BAND = (0.93, 0.97)


def true_params(family: str, p: int) -> np.ndarray:
    base = TRUE[family]
    return np.array([base[j % len(base)] for j in range(p)], float)


def _draw(family: str, key, eta):
    if family == "Gaussian":
        return eta + GAUSSIAN_SCALE * jax.random.normal(key, eta.shape, jnp.float64)
    if family == "Bernoulli":
        return jax.random.bernoulli(key, jax.nn.sigmoid(eta)).astype(jnp.float64)
    if family == "Poisson":
        return jax.random.poisson(key, jnp.exp(eta)).astype(jnp.float64)
    raise ValueError(f"sampling_distribution: unsupported family {family!r}")


@functools.partial(jax.jit, static_argnums=(0, 3))
def _draw_many(family: str, key, eta, reps: int):
    """``reps`` datasets from the model at linear predictor ``eta``."""
    return jax.vmap(lambda k: _draw(family, k, eta))(jax.random.split(key, reps))


_FITTERS: dict = {}


def fitter(family: str):
    """A jitted ``(X, Y, weights) -> FitResult`` vmapped over the rows of ``Y``.

    Cached per family: every sample size runs through the same compiled fit,
    as the first n rows of one ``max(ns)``-row design with 0/1 frequency
    weights (a zero weight drops a row exactly), so only one compilation per
    family is paid.
    """
    if family not in _FITTERS:
        fam = common.family_by_name(family)

        def one(X, y, w):
            return mj.fit(X, y, fam, weights=w)

        _FITTERS[family] = jax.jit(jax.vmap(one, (None, 0, None)))
    return _FITTERS[family]


def _chunks(config: SamplingDistribution) -> list[int]:
    """Replications per unit; the config checks ``chunk >= 1`` (guarded here too:
    a non-positive chunk would never use the replications up)."""
    if config.chunk < 1:
        raise ValueError(
            f"sampling_distribution: chunk must be >= 1, got {config.chunk}"
        )
    sizes, left = [], config.replications
    while left > 0:
        sizes.append(min(config.chunk, left))
        left -= sizes[-1]
    return sizes


def units(config: SamplingDistribution) -> list[str]:
    return [
        f"{fam}/n={n}/chunk={i}"
        for fam in config.families
        for n in config.ns
        for i in range(len(_chunks(config)))
    ]


def run_unit(config: SamplingDistribution, key: jax.Array, unit: str) -> dict:
    family, n_s, chunk_s = unit.split("/")
    n, i = int(n_s.removeprefix("n=")), int(chunk_s.removeprefix("chunk="))
    reps = _chunks(config)[i]
    p = config.p
    w = true_params(family, p)
    n_max = max(config.ns)
    X = common.design(fold(key, f"design/{family}"), n_max, p)
    weights = (jnp.arange(n_max) < n).astype(X.dtype)
    Y = _draw_many(family, fold(key, unit), X @ w, reps)
    with common.collect_warnings() as caught:
        res = jax.block_until_ready(fitter(family)(X, Y, weights))
    ok = np.asarray(res.converged) & np.all(np.isfinite(np.asarray(res.stderr)), axis=1)
    est = np.asarray(res.params)[ok]
    se = np.asarray(res.stderr)[ok]
    cov = np.asarray(res.cov)[ok]
    d = est - w
    z = stats.norm.ppf(0.5 + config.level / 2)
    return {
        "family": family,
        "n": n,
        "replications": reps,
        "used": int(ok.sum()),
        "sum_d": d.sum(0).tolist(),
        "sum_dd": (d.T @ d).tolist(),
        "sum_cov": cov.sum(0).tolist(),
        "covered": (np.abs(d) <= z * se).sum(0).tolist(),
        "mean_n_iter": float(np.mean(np.asarray(res.n_iter))),
        "warnings": caught.messages,
    }


def summarize(config: SamplingDistribution, unit_results: dict) -> dict:
    groups: dict = {}
    for r in unit_results.values():
        groups.setdefault((r["family"], r["n"]), []).append(r)
    rows, claims = [], []
    for (family, n), rs in groups.items():
        R = sum(r["used"] for r in rs)
        reps = sum(r["replications"] for r in rs)
        s1 = np.sum([r["sum_d"] for r in rs], 0)
        s2 = np.sum([r["sum_dd"] for r in rs], 0)
        sc = np.sum([r["sum_cov"] for r in rs], 0)
        cov_counts = np.sum([r["covered"] for r in rs], 0)
        bias = s1 / R
        emp_cov = (s2 - np.outer(s1, s1) / R) / (R - 1)
        fisher = sc / R
        ratio = np.diag(emp_cov) / np.diag(fisher)
        coverage = cov_counts / R
        pooled = float(cov_counts.sum() / (R * len(cov_counts)))
        mcse = math.sqrt(config.level * (1 - config.level) / R)
        bias_se = np.sqrt(np.diag(emp_cov) / R)
        rows.append(
            {
                "family": family,
                "n": n,
                "replications": reps,
                "used": R,
                "coverage_pooled": pooled,
                "coverage_min": float(coverage.min()),
                "coverage_max": float(coverage.max()),
                "coverage_mcse": mcse,
                "max_abs_bias": float(np.max(np.abs(bias))),
                "max_bias_over_mcse": float(np.max(np.abs(bias) / bias_se)),
                "var_ratio_min": float(ratio.min()),
                "var_ratio_max": float(ratio.max()),
                "cov_rel_diff_fro": float(
                    np.linalg.norm(emp_cov - fisher) / np.linalg.norm(fisher)
                ),
                "mean_n_iter": float(np.mean([r["mean_n_iter"] for r in rs])),
                **{f"coverage_w{j}": float(c) for j, c in enumerate(coverage)},
                **{f"bias_w{j}": float(b) for j, b in enumerate(bias)},
            }
        )
        claims.append(
            f"{family}, n={n}: 95% Wald coverage {pooled:.3f} (per coefficient "
            f"{coverage.min():.3f}-{coverage.max():.3f}, MC s.e. {mcse:.3f}, "
            f"{R} of {reps} fits used); empirical / Fisher variance "
            f"{ratio.min():.3f}-{ratio.max():.3f}; "
            f"max |bias| {np.max(np.abs(bias)):.4f}."
        )
    large = [r for r in rows if r["n"] >= 500]
    return {
        "summary": {
            "min_coverage_n500": min((r["coverage_min"] for r in large), default=None),
            "max_coverage_n500": max((r["coverage_max"] for r in large), default=None),
            "coverage_in_93_97_n500": all(
                COVERAGE_BAND[0] <= r["coverage_min"]
                and r["coverage_max"] <= COVERAGE_BAND[1]
                for r in large
            ),
        },
        "tables": {"coverage": rows},
        "claims": claims,
    }


def family_colors(families) -> dict[str, str]:
    """One colour per family, the same in every panel."""
    return {fam: f"C{i % 10}" for i, fam in enumerate(dict.fromkeys(families))}


def figure(results: dict):
    """Coverage and variance-ratio panels; each family keeps one colour."""
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    from experiments.writers import pyplot

    plt = pyplot()
    rows = results["tables"]["coverage"]
    colors = family_colors(r["family"] for r in rows)
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4.4))
    lo, hi = COVERAGE_BAND
    ax1.axhspan(lo, hi, color="grey", alpha=0.15)
    ax1.axhline(0.95, color="grey", lw=0.8)
    for fam, color in colors.items():
        rs = sorted((r for r in rows if r["family"] == fam), key=lambda r: r["n"])
        ns = [r["n"] for r in rs]
        bars = ax1.errorbar(
            ns,
            [r["coverage_pooled"] for r in rs],
            yerr=[1.96 * r["coverage_mcse"] for r in rs],
            marker="o",
            capsize=3,
            color=color,
            label=fam,
        )
        bars.lines[0].set_gid(fam)
        for stat, marker, ls in (("max", "^", "-"), ("min", "v", "--")):
            (line,) = ax2.plot(
                ns,
                [r[f"var_ratio_{stat}"] for r in rs],
                marker=marker,
                ls=ls,
                color=color,
            )
            line.set_gid(fam)
    handles, _ = ax1.get_legend_handles_labels()
    handles += [
        Patch(color="grey", alpha=0.15, label=f"target band {lo:.2f}-{hi:.2f}"),
        Line2D([], [], color="grey", lw=0.8, label="nominal 0.95"),
    ]
    ax1.legend(handles=handles, fontsize=8, loc="best")
    ax1.set_xscale("log")
    ax1.set_xlabel("n (log scale)")
    ax1.set_ylabel("coverage of 95% Wald intervals")
    ax1.set_title("Wald coverage (error bars: 95% Monte Carlo interval)")
    ax2.axhline(1.0, color="grey", lw=0.8)
    ax2.set_xscale("log")
    ax2.set_xlabel("n (log scale)")
    ax2.set_ylabel("empirical var / mean inverse-Fisher var")
    ax2.set_title("Sampling variance vs inverse Fisher information")
    ax2.legend(
        handles=[Line2D([], [], color=c, label=f) for f, c in colors.items()]
        + [
            Line2D([], [], color="k", marker="^", ls="-", label="max over coefs"),
            Line2D([], [], color="k", marker="v", ls="--", label="min over coefs"),
        ],
        fontsize=7,
    )
    fig.text(
        0.01,
        -0.02,
        f"Colour = family (same in both panels). Shaded band: coverage {lo:.2f}-"
        f"{hi:.2f}, where a correct 95% interval should land for n >= 500; error "
        "bars: coverage +- 1.96 Monte Carlo s.e.",
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
