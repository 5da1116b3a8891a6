"""Cost of inference relative to the fit: ``python -m benchmarks.inference``.

Logistic regression, ``n x p`` (default 1,000,000 x 50; ``--quick``:
100,000; ``--n`` any), float64, pinned to ``--threads`` cores (the first of
the process's affinity: ``taskset -c 0`` on an unrestricted process) with
``XLA_FLAGS`` single-threaded, as ``benchmarks.run`` does (there:
``--only inference``, with ``--quick`` for 100,000 rows). Timed (median of ``--repeats`` warm calls, compile time apart):

* ``mj.fit`` alone, with ``cov_type="HC0"`` and with ``cov_type="cluster"``
  (1,000 clusters): the robust covariance's cost is the difference;
* ``mj.profile_ci`` for all ``p`` coefficients (every endpoint a root to the
  solver's tolerance, all ``2p`` solved together by batched passes over
  ``X``; it includes its own fit, and the ratio without it is reported too);
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
    ap.add_argument("--n", type=int, default=None, help="rows (default 1,000,000)")
    ap.add_argument(
        "--quick", action="store_true", help="100,000 rows (default --n otherwise)"
    )
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


def measure(n, p=50, repeats=3, clusters=1000, profile=True, log=print):
    """Time the fit, robust covariances and profile intervals (one process).

    Returns ``{"rows", "ratios", "checks"}``; the caller pins threads.
    """
    import resource
    import warnings

    import jax
    import numpy as np

    jax.config.update("jax_enable_x64", True)
    import statsmodels.api as sm

    import mlejax as mj

    X, y, g = _data(n, p, clusters)
    fam = mj.families.Bernoulli()
    R = repeats
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
        log(f"{lib:12s} {name:34s} {warm:9.3f} s (first call {first:.2f} s)")

    f, w, fit0 = _time(lambda: block(mj.fit(X, y, fam)), R)
    add("fit", "mlejax", f, w)
    f, w, fit_hc0 = _time(lambda: block(mj.fit(X, y, fam, cov_type="HC0")), R)
    add("fit + HC0", "mlejax", f, w)
    f, w, fit_cl = _time(
        lambda: block(mj.fit(X, y, fam, cov_type="cluster", groups=g)), R
    )
    add("fit + cluster", "mlejax", f, w)
    if profile:
        from mlejax import profile as _profile

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            f, w, out = _time(
                lambda: _profile.profile_ci_full(X, y, fam), max(1, R - 1)
            )
        add(f"profile_ci, all {p} (incl. fit)", "mlejax", f, w)
        ci = np.asarray(out.ci)
        checks["profile_all_finite"] = bool(np.isfinite(ci).all())
        checks["profile_all_converged"] = bool((out.status == 0).all())
        checks["profile_passes_max"] = int(np.max(out.n_iter))
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

    if profile:
        # the machine's load drifts over minutes: the headline ratio also from
        # back-to-back pairs (profile_ci, then statsmodels' fit), per pair
        pairs = []
        for _ in range(R):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                t0 = time.perf_counter()
                jax.block_until_ready(_profile.profile_ci_full(X, y, fam).ci)
                t1 = time.perf_counter()
            smfit()
            t2 = time.perf_counter()
            pairs.append((t1 - t0, t2 - t1))
        checks["paired_profile_over_sm_fit"] = [a / b for a, b in pairs]
        log(f"paired (profile_ci s, statsmodels fit s): {pairs}")

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
    if profile:
        key = ("mlejax", f"profile_ci, all {p} (incl. fit)")
        sm_fit = t["statsmodels", "fit"]
        ratios["mlejax profile (all, incl. its fit) / statsmodels fit alone"] = (
            t[key] / sm_fit
        )
        ratios["mlejax profile (all, excl. fit) / statsmodels fit alone"] = (
            t[key] - t["mlejax", "fit"]
        ) / sm_fit
        ratios["mlejax profile (all, incl. fit) / mlejax fit"] = (
            t[key] / t["mlejax", "fit"]
        )
        paired = sorted(checks["paired_profile_over_sm_fit"])
        ratios["paired: profile (all, incl. fit) / statsmodels fit, median"] = paired[
            len(paired) // 2
        ]
    for k, v in ratios.items():
        log(f"{k:62s} {v:8.3f}")
    log(json.dumps(checks))
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB -> GiB
    meta = {
        "n": n,
        "p": p,
        "repeats": R,
        "clusters": clusters,
        "jax": jax.__version__,
        "statsmodels": getattr(sm, "__version__", None),
        "cpu_count": os.cpu_count(),
        "affinity": sorted(os.sched_getaffinity(0)),
        "xla_flags": os.environ.get("XLA_FLAGS"),
        "loadavg": os.getloadavg(),
        "peak_rss_gib": peak,
    }
    log(f"peak RSS {peak:.2f} GiB, load average {meta['loadavg']}")
    return {"meta": meta, "rows": rows, "ratios": ratios, "checks": checks}


def markdown(res) -> str:
    meta = res["meta"]
    lines = [
        f"# Inference cost, logistic {meta['n']} x {meta['p']}",
        "",
        f"affinity {meta['affinity']}, XLA_FLAGS {meta['xla_flags']!r}, "
        f"load average at the end {meta['loadavg']}, "
        f"peak RSS {meta['peak_rss_gib']:.2f} GiB",
        "",
        "| library | quantity | median s | first call s |",
        "|---|---|---|---|",
    ]
    lines += [
        f"| {r['library']} | {r['quantity']} | {r['median_s']:.3f} | "
        f"{r['first_call_s']:.2f} |"
        for r in res["rows"]
    ]
    lines += ["", "| ratio | value |", "|---|---|"]
    lines += [f"| {k} | {v:.3f} |" for k, v in res["ratios"].items()]
    lines += ["", "checks: " + json.dumps(res["checks"])]
    return "\n".join(lines)


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    args = _parse(argv)
    if not args.no_pin and os.environ.get(_CHILD) is None:
        _reexec(args, argv)
    n = args.n or (100_000 if args.quick else 1_000_000)
    res = measure(
        n,
        args.p,
        args.repeats,
        args.clusters,
        profile=not args.no_profile,
        log=lambda m: print(m, flush=True),
    )
    res["meta"]["threads"] = args.threads
    os.makedirs(args.out, exist_ok=True)
    stem = os.path.join(args.out, f"inference_{n}x{args.p}_{args.threads}t")
    with open(stem + ".json", "w") as fh:
        json.dump(res, fh, indent=1)
    with open(stem + ".md", "w") as fh:
        fh.write(markdown(res) + "\n")
    print(f"wrote {stem}.json and {stem}.md")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
