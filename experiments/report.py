"""``report.md``: the run's findings, readable top to bottom."""

from __future__ import annotations

import math

__all__ = ["render", "markdown_table"]

#: experiment -> (title, [(table, columns)]) shown in the report
LAYOUT = {
    "linear_vs_ols": (
        "Gaussian MLE solvers reach closed-form least squares",
        [("solvers", None)],
    ),
    "gradient_equivalence": (
        "MLE = classic loss: gradients and estimates",
        [
            ("estimates", None),
            (
                "gradients",
                [
                    "family",
                    "loss",
                    "implementation",
                    "points",
                    "a_n_theory",
                    "a_n_fitted",
                    "max_rel_grad_dev",
                ],
            ),
            ("torch", ["snippet", "family", "torch_loss", "max_abs_diff"]),
        ],
    ),
    "logistic_fit": (
        "Logistic regression: Newton, L-BFGS, Adam, SGD",
        [
            (
                "solvers",
                [
                    "solver",
                    "max_abs_diff_vs_newton",
                    "loglik",
                    "loglik_gap_vs_newton",
                    "n_iter",
                    "converged",
                    "seconds",
                ],
            )
        ],
    ),
    "sampling_distribution": (
        "Sampling distribution: bias, Fisher information, Wald coverage",
        [
            (
                "coverage",
                [
                    "family",
                    "n",
                    "used",
                    "coverage_pooled",
                    "coverage_min",
                    "coverage_max",
                    "coverage_mcse",
                    "max_abs_bias",
                    "max_bias_over_mcse",
                    "var_ratio_min",
                    "var_ratio_max",
                ],
            )
        ],
    ),
    "link_choice": (
        "Link choice as model choice: logit, probit, cloglog",
        [("links", None)],
    ),
    "hyper_gradient": (
        "Hyperparameter by gradient: Ridge alpha through the fit",
        [("choice", None), ("gradient_check", None)],
    ),
    "robust_regression": (
        "Robust regression: Laplace vs Gaussian vs Student-t",
        [("errors", None)],
    ),
    "regulariser_prior": (
        "Regulariser = prior: Ridge/Lasso fits are Gaussian/Laplace-prior MAPs",
        [("differences", None)],
    ),
    "coverage": (
        "Interval coverage under misspecification: model-based, sandwich, profile",
        [
            (
                "coverage",
                [
                    "setting",
                    "method",
                    "n",
                    "used",
                    "coverage",
                    "mcse",
                    "below",
                    "above",
                    "failed",
                    "median_width",
                ],
            )
        ],
    ),
}


def _fmt(v) -> str:
    if v is None:
        return "—"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        if math.isnan(v):
            return "nan"
        if v == 0:
            return "0"
        if abs(v) >= 1e4 or abs(v) < 1e-3:
            return f"{v:.2e}"
        return f"{v:.4g}"
    if isinstance(v, list):
        return "[" + ", ".join(_fmt(x) for x in v) + "]"
    return str(v)


def markdown_table(rows: list[dict], columns: list[str] | None = None) -> str:
    """A GitHub markdown table of ``rows`` (numbers to 4 significant digits)."""
    if not rows:
        return "_(no rows)_\n"
    cols = columns or [k for k in rows[0] if not isinstance(rows[0][k], list)]
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for r in rows:
        lines.append("| " + " | ".join(_fmt(r.get(c)) for c in cols) + " |")
    return "\n".join(lines) + "\n"


def _intro(module) -> str:
    doc = (module.__doc__ or "").strip().split("\n\n")
    return "\n\n".join(doc[1:]) if len(doc) > 1 else ""


def render(results: dict, modules: dict, plots: dict) -> str:
    """The report text from ``results.json``'s content and the plot paths."""
    run, env = results["run"], results["environment"]
    out = [
        f"# mlejax run `{run['name']}`",
        "",
        f"Seed {run['seed']}, started {run['started']}, "
        f"{run.get('seconds', float('nan')):.1f} s of computation in total"
        + (" (resumed: the units' recorded times)" if run.get("resumed") else "")
        + f". JAX {env['jax']} / Optax {env['optax']} on {env['device']} "
        f"(x64 {'on' if env['x64'] else 'off'}).",
        "",
        "## Findings",
        "",
    ]
    for name, exp in results["experiments"].items():
        out += [f"**{LAYOUT.get(name, (name,))[0]}**", ""]
        out += [f"- {c}" for c in exp["claims"]]
        out.append("")
    for name, exp in results["experiments"].items():
        title, tables = LAYOUT.get(name, (name, []))
        out += [f"## {title} (`{name}`)", "", _intro(modules[name]), ""]
        out += [f"Time: {exp['seconds']:.1f} s.", ""]
        skipped = exp.get("skipped") or {}
        for table, cols in tables:
            rows = exp["tables"].get(table, [])
            if not rows and table in skipped:
                out += [f"Table `{table}`: not computed. {skipped[table]}", ""]
            elif rows:
                out += [
                    f"Table `{table}` (full CSV in `tables/{name}_{table}.csv`):",
                    "",
                ]
                out.append(markdown_table(rows, cols))
        for path in plots.get(name, []):
            out += [f"![{name}](plots/{path.name})", ""]
        warns = exp.get("warnings") or []
        if warns:
            out += ["Warnings raised by the fits (recorded, not hidden):", ""]
            out += [f"- `{w}`" for w in warns]
            out.append("")
    return "\n".join(out).rstrip() + "\n"
