"""Cost of inference relative to the fit: ``python -m benchmarks.inference``.

Logistic regression, ``n x p`` (default 1,000,000 x 50; ``--n 200000`` for a
quicker run), float64, pinned to ``--threads`` cores as ``benchmarks.run``
does. Timed (median of ``--repeats`` warm calls, compile time apart):

* ``mj.fit`` alone, with ``cov_type="HC0"`` and with ``cov_type="cluster"``
  (1,000 clusters): the robust covariance's cost is the difference;
* ``mj.profile_ci`` for all ``p`` coefficients (every endpoint an exact root,
  all ``2p`` in one vmapped call; it includes its own fit);
* statsmodels ``Logit(y, X).fit()`` alone and with ``cov_type="HC0"`` and
  ``"cluster"``, the same quantities.

The headline ratio is ``profile_ci`` (all parameters) over statsmodels' fit
alone. Agreement is checked: coefficients and robust standard errors against
statsmodels (relative differences reported). Results go to
``benchmarks/results/inference_{n}_{threads}t.{json,md}``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

_CHILD = "MLEJAX_BENCH_INFERENCE_CHILD"


def _parse(argv):
    ap = argparse.ArgumentParser(
        prog="python -m benchmarks.inference", description=__doc__
    )
    ap.add_argument("--n", type=int, default=1_000_000)
    ap.add_argument("--p", type=int, default=50)
    ap.add_argument("--threads", type=int, default=1, choices=(1, 2))
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--clusters", type=int, default=1000)
    ap.add_argument("--no-profile", action="store_true")
    ap.add_argument("--out", default=os.path.join("benchmarks", "results"))
    ap.add_argument("--no-pin", action="store_true")
    return ap.parse_args(argv)


def _reexec(args, argv):
    from benchmarks.run import thread_env

    env = dict(os.environ)
    env.update(thread_env(args.threads))
    env[_CHILD] = "1"
    os.sched_setaffinity(0, sorted(os.sched_getaffinity(0))[: args.threads])
    os.execve(
        sys.executable, [sys.executable, "-m", "benchmarks.inference", *argv], env
    )


def _data(n, p, clusters, seed=0):
    import numpy as np

    rng = np.random.default_rng(seed)
    X = np.empty((n, p))
    X[:, 0] = 1.0
    X[:, 1:] = rng.standard_normal((n, p - 1))
    beta = rng.normal(0, 1 / np.sqrt(p), p)
    y = (rng.random(n) < 1 / (1 + np.exp(-(X @ beta)))).astype(float)
    groups = rng.integers(0, clusters, n)
    return X, y, groups


def _time(fn, repeats):
    """(first call s, median warm s, last result)."""
    import statistics

    t0 = time.perf_counter()
    out = fn()
    first = time.perf_counter() - t0
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return first, statistics.median(times), out


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    args = _parse(argv)
    if not args.no_pin and os.environ.get(_CHILD) is None:
        _reexec(args, argv)
    import warnings

    import jax
    import numpy as np

    jax.config.update("jax_enable_x64", True)
    import statsmodels.api as sm

    import mlejax as mj

    X, y, g = _data(args.n, args.p, args.clusters)
    fam = mj.families.Bernoulli()
    R = args.repeats
    rows, checks = [], {}

    def block(res):
        jax.block_until_ready(res.cov)
        return res

    def add(name, lib, first, warm, note=""):
        rows.append(
            {
                "quantity": name,
                "library": lib,
                "median_s": warm,
                "first_call_s": first,
                "note": note,
            }
        )
        print(f"{lib:12s} {name:34s} {warm:9.3f} s (first call {first:.2f} s)")
        sys.stdout.flush()

    f, w, fit0 = _time(lambda: block(mj.fit(X, y, fam)), R)
    add("fit", "mlejax", f, w)
    f, w, fit_hc0 = _time(lambda: block(mj.fit(X, y, fam, cov_type="HC0")), R)
    add("fit + HC0", "mlejax", f, w)
    f, w, fit_cl = _time(
        lambda: block(mj.fit(X, y, fam, cov_type="cluster", groups=g)), R
    )
    add("fit + cluster", "mlejax", f, w)
    if not args.no_profile:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            f, w, ci = _time(
                lambda: jax.block_until_ready(mj.profile_ci(X, y, fam)), max(1, R - 2)
            )
        add(f"profile_ci, all {args.p} (incl. fit)", "mlejax", f, w)
        ci = np.asarray(ci)
        checks["profile_all_finite"] = bool(np.isfinite(ci).all())
        b = np.asarray(fit0.params)
        checks["profile_brackets_estimate"] = bool(
            ((ci[:, 0] < b) & (b < ci[:, 1])).all()
        )

    def smfit(**kw):
        return sm.Logit(y, X).fit(disp=0, **kw)

    f, w, r0 = _time(lambda: smfit(), R)
    add("fit", "statsmodels", f, w)
    f, w, r1 = _time(lambda: smfit(cov_type="HC0"), R)
    add("fit + HC0", "statsmodels", f, w)
    f, w, r2 = _time(lambda: smfit(cov_type="cluster", cov_kwds={"groups": g}), R)
    add("fit + cluster", "statsmodels", f, w)

    def rel(a, b):
        a, b = np.asarray(a), np.asarray(b)
        return float(np.max(np.abs(a - b) / np.abs(b)))

    checks["params_rel_diff"] = rel(fit0.params, r0.params)
    checks["hc0_se_rel_diff"] = rel(fit_hc0.stderr, r1.bse)
    checks["cluster_se_rel_diff"] = rel(fit_cl.stderr, r2.bse)
    t = {(r["library"], r["quantity"]): r["median_s"] for r in rows}
    ratios = {
        "mlejax HC0 cost / mlejax fit": (t["mlejax", "fit + HC0"] - t["mlejax", "fit"])
        / t["mlejax", "fit"],
        "mlejax cluster cost / mlejax fit": (
            t["mlejax", "fit + cluster"] - t["mlejax", "fit"]
        )
        / t["mlejax", "fit"],
        "mlejax fit+HC0 / statsmodels fit+HC0": t["mlejax", "fit + HC0"]
        / t["statsmodels", "fit + HC0"],
        "mlejax fit+cluster / statsmodels fit+cluster": t["mlejax", "fit + cluster"]
        / t["statsmodels", "fit + cluster"],
    }
    if not args.no_profile:
        key = ("mlejax", f"profile_ci, all {args.p} (incl. fit)")
        ratios["mlejax profile (all) / statsmodels fit alone"] = (
            t[key] / t["statsmodels", "fit"]
        )
        ratios["mlejax profile (all) / mlejax fit"] = t[key] / t["mlejax", "fit"]
    for k, v in ratios.items():
        print(f"{k:48s} {v:8.3f}")
    print(json.dumps(checks))
    os.makedirs(args.out, exist_ok=True)
    stem = os.path.join(args.out, f"inference_{args.n}x{args.p}_{args.threads}t")
    meta = {
        "n": args.n,
        "p": args.p,
        "threads": args.threads,
        "repeats": R,
        "clusters": args.clusters,
        "jax": jax.__version__,
        "statsmodels": sm.__version__ if hasattr(sm, "__version__") else None,
        "cpu_count": os.cpu_count(),
        "loadavg": os.getloadavg(),
    }
    with open(stem + ".json", "w") as fh:
        json.dump({"meta": meta, "rows": rows, "ratios": ratios, "checks": checks}, fh)
    lines = [
        f"# Inference cost, logistic {args.n} x {args.p}, {args.threads} thread(s)",
        "",
        f"load average at the end: {meta['loadavg']}",
        "",
        "| library | quantity | median s | first call s |",
        "|---|---|---|---|",
    ]
    lines += [
        f"| {r['library']} | {r['quantity']} | {r['median_s']:.3f} | "
        f"{r['first_call_s']:.2f} |"
        for r in rows
    ]
    lines += ["", "| ratio | value |", "|---|---|"]
    lines += [f"| {k} | {v:.3f} |" for k, v in ratios.items()]
    lines += ["", "checks: " + json.dumps(checks)]
    with open(stem + ".md", "w") as fh:
        fh.write("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
