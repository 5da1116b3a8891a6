"""Formula fits: mj.fit_formula vs statsmodels' smf.glm on a wide factor.

A Poisson regression ``y ~ x1 + x2 + C(g)`` on ``n`` rows with a factor of
``L`` levels (the design is dense, ``n x (L + 2)``). For each ``L`` it prints
the time to build the design (formulaic), the first fit (design + compile +
fit), a warm refit (design + fit), the number of XLA compilations during the
first fit and which functions they were, and statsmodels' formula GLM (patsy
design + IRLS) on the same data, with the largest coefficient difference.

The compile cost depends on the design's shape only: the fit is one compiled
call on the dense ``(n, p)`` design (plus the covariance finish), whatever the
number of levels, so compile time for 20 and 200 levels should be close.

Run:  python benchmarks/formula.py [--n 100000] [--levels 20 200]
(persistent compilation cache off, so the compile times are real).
"""

from __future__ import annotations

import argparse
import logging
import os
import time

os.environ["MLEJAX_COMPILATION_CACHE"] = "0"  # measure real compiles

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

import mlejax as mj  # noqa: E402


class _CompileCounter(logging.Handler):
    """Counts JAX's "Compiling <fn> ..." log records (jax_log_compiles)."""

    def __init__(self):
        super().__init__(logging.DEBUG)
        self.names: list[str] = []

    def emit(self, record):
        msg = record.getMessage()
        if msg.startswith("Compiling "):
            self.names.append(msg.split()[1])


def make_data(n: int, levels: int, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    g = rng.integers(0, levels, n)
    effect = rng.normal(0.0, 0.3, levels)
    x1, x2 = rng.normal(size=n), rng.normal(size=n)
    eta = 0.5 + 0.2 * x1 - 0.1 * x2 + effect[g]
    return pd.DataFrame(
        {
            "y": rng.poisson(np.exp(eta)).astype(float),
            "x1": x1,
            "x2": x2,
            "g": pd.Categorical([f"g{i:03d}" for i in g]),
        }
    )


def run(n: int, levels: int) -> dict:
    import formulaic

    df = make_data(n, levels)
    formula = "y ~ x1 + x2 + C(g)"
    fam = mj.families.Poisson()
    t = time.perf_counter()
    formulaic.model_matrix(formula, df)
    t_design = time.perf_counter() - t

    counter = _CompileCounter()
    logger = logging.getLogger("jax")
    logger.addHandler(counter)
    old_level = logger.level
    logger.setLevel(logging.DEBUG)
    mj_jax = __import__("jax")
    mj_jax.config.update("jax_log_compiles", True)
    t, c = time.perf_counter(), time.process_time()
    res = mj.fit_formula(formula, df, fam)
    res.params.block_until_ready()
    t_first, c_first = time.perf_counter() - t, time.process_time() - c
    mj_jax.config.update("jax_log_compiles", False)
    logger.removeHandler(counter)
    logger.setLevel(old_level)

    t, c = time.perf_counter(), time.process_time()
    res = mj.fit_formula(formula, df, fam, names="formulaic")  # patsy's names
    res.params.block_until_ready()
    t_warm, c_warm = time.perf_counter() - t, time.process_time() - c

    out = {
        "levels": levels,
        "p": len(res.names),
        "design_s": t_design,
        "mj_first_s": t_first,
        "mj_warm_s": t_warm,
        "compile_s": t_first - t_warm,
        "compile_cpu_s": c_first - c_warm,
        "mj_warm_cpu_s": c_warm,
        "n_compiles": len(counter.names),
        "compiled": sorted(set(counter.names)),
        "converged": bool(res.converged),
    }
    try:
        import statsmodels.api as sm
        import statsmodels.formula.api as smf
    except ImportError:
        return out
    t, c = time.perf_counter(), time.process_time()
    ref = smf.glm(formula, df, family=sm.families.Poisson()).fit(tol=1e-12)
    out["sm_s"], out["sm_cpu_s"] = time.perf_counter() - t, time.process_time() - c
    ours = pd.Series(np.asarray(res.params), index=list(res.names))
    # patsy orders the factor before the numeric columns: align by name
    out["max_abs_diff"] = float(np.max(np.abs(ours - ref.params[ours.index])))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument("--levels", type=int, nargs="+", default=[20, 200])
    args = ap.parse_args()
    mj.enable_x64()
    rows = [run(args.n, L) for L in args.levels]
    print(
        f"Poisson y ~ x1 + x2 + C(g), n = {args.n}, float64; seconds, wall "
        "(CPU in parentheses: steadier on a shared machine)"
    )
    head = (
        f"{'levels':>7}{'p':>6}{'design':>8}{'mj first':>10}{'mj warm':>16}"
        f"{'compile':>16}{'#compiles':>10}{'statsmodels':>18}{'max|diff|':>11}"
    )
    print(head)
    nan = float("nan")
    for r in rows:
        warm = f"{r['mj_warm_s']:.2f} ({r['mj_warm_cpu_s']:.2f})"
        comp = f"{r['compile_s']:.2f} ({r['compile_cpu_s']:.2f})"
        smt = f"{r.get('sm_s', nan):.2f} ({r.get('sm_cpu_s', nan):.2f})"
        print(
            f"{r['levels']:>7}{r['p']:>6}{r['design_s']:>8.2f}{r['mj_first_s']:>10.2f}"
            f"{warm:>16}{comp:>16}{r['n_compiles']:>10}{smt:>18}"
            f"{r.get('max_abs_diff', nan):>11.2e}"
        )
    for r in rows:
        print(f"levels {r['levels']}: compiled {r['compiled']}")


if __name__ == "__main__":
    main()
