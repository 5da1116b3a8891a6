"""Ragged groups: one logistic fit per group, ``mj.fit_groups`` against peer loops.

20,000 groups with sizes drawn uniformly from 20..2,000 rows (about 20 million
rows in all), p = 5 (an intercept and 4 normal columns), logistic. Compared:

* ``mj.fit_groups`` — first call in this process (tracing and one compile per
  bucket included; the persistent compilation cache is off unless
  ``--keep-cache``) and a second, steady-state call;
* a statsmodels loop: ``sm.Logit(y_g, X_g).fit(method="newton")`` per group;
* pandas ``groupby().apply`` of scikit-learn ``LogisticRegression(penalty=None,
  fit_intercept=False, tol=1e-8)`` (lbfgs).

The peers are timed on a random subsample of groups (``--peer-groups``, same
size distribution) and extrapolated to all groups (fits/s is the measured
rate); this is said in the output. Accuracy: the largest relative difference
of the coefficients from statsmodels (and from scikit-learn) on the
subsample, and every group of a few sizes against its own ``mj.fit``
(``--own-sizes``), which must agree to 1e-10.

Usage::

    python benchmarks/groups.py                 # full size, 1 thread
    python benchmarks/groups.py --groups 2000 --threads 2
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import warnings


def _pin(threads: int) -> None:
    """One library thread pool of ``threads`` everywhere, before any import."""
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = str(threads)
    multi = "true" if threads > 1 else "false"
    os.environ["XLA_FLAGS"] = (
        f"--xla_cpu_multi_thread_eigen={multi} intra_op_parallelism_threads={threads}"
    )
    try:
        os.sched_setaffinity(0, set(range(threads)))
    except (AttributeError, OSError):
        pass


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--groups", type=int, default=20_000)
    ap.add_argument("--min-rows", type=int, default=20)
    ap.add_argument("--max-rows", type=int, default=2_000)
    ap.add_argument("--p", type=int, default=5)
    ap.add_argument("--peer-groups", type=int, default=400)
    ap.add_argument("--own-sizes", type=int, default=2)
    ap.add_argument("--per-doubling", type=int, default=2)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--keep-cache", action="store_true")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--peers-only", action="store_true")
    args = ap.parse_args(argv)
    _pin(args.threads)
    if not args.keep_cache:
        os.environ["MLEJAX_COMPILATION_CACHE"] = "0"

    import numpy as np

    import mlejax as mj
    from mlejax import groups as mj_groups

    mj.enable_x64()
    rng = np.random.default_rng(args.seed)
    G, p = args.groups, args.p
    sizes = rng.integers(args.min_rows, args.max_rows + 1, size=G)
    n = int(sizes.sum())
    g = np.repeat(np.arange(G), sizes)
    X = mj.add_constant(rng.normal(size=(n, p - 1)))
    beta_g = rng.normal(scale=0.4, size=(G, p))  # every group its own truth
    eta = np.einsum("ij,ij->i", X, beta_g[g])
    y = (rng.random(n) < 1 / (1 + np.exp(-eta))).astype(float)
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    rows = [slice(a, a + b) for a, b in zip(starts, sizes, strict=True)]  # per group
    print(f"{G} groups, {n:,} rows, p = {p}, sizes {sizes.min()}..{sizes.max()}")
    fam = mj.families.Bernoulli()
    out = {"groups": G, "rows": n, "p": p, "threads": args.threads}

    if args.peers_only:  # the peers alone (same data for the same --seed)
        conv, params = np.ones(G, bool), None
    else:
        conv, params = _mlejax(args, mj, mj_groups, X, y, g, fam, out, rows, sizes, rng)
    _peers(args, X, y, g, rows, conv, params, out, rng)
    print("(shared machine: timings are noisy)")
    return out


def _mlejax(args, mj, mj_groups, X, y, g, fam, out, rows, sizes, rng):
    import numpy as np

    G = len(sizes)
    c0 = mj_groups.compiled_count()
    t = time.perf_counter()
    with warnings.catch_warnings():  # a few small groups are separated
        warnings.simplefilter("ignore")
        res = mj.fit_groups(X, y, fam, groups=g, per_doubling=args.per_doubling)
    first = time.perf_counter() - t
    compiles = mj_groups.compiled_count() - c0
    t = time.perf_counter()
    with warnings.catch_warnings():  # a few small groups are separated
        warnings.simplefilter("ignore")
        res = mj.fit_groups(X, y, fam, groups=g, per_doubling=args.per_doubling)
    steady = time.perf_counter() - t
    conv = np.asarray(res.converged)
    params = np.asarray(res.params)
    out["mlejax"] = {
        "first_s": first,
        "steady_s": steady,
        "fits_per_s": G / steady,
        "fits_per_s_first": G / first,
        "buckets": len(res.buckets),
        "compiles": compiles,
        "converged": int(conv.sum()),
    }
    print(
        f"mj.fit_groups: first call {first:.1f} s ({compiles} compiles for "
        f"{len(res.buckets)} buckets), steady {steady:.2f} s = {G / steady:,.0f} fits/s; "
        f"converged {conv.sum()} of {G}"
    )

    # every group of a few sizes against its own mj.fit (one compile per size)
    worst = 0.0
    for size in rng.choice(np.unique(sizes), size=args.own_sizes, replace=False):
        for lab in np.flatnonzero((sizes == size) & conv):
            m = rows[lab]
            one = mj.fit(X[m], y[m], fam)
            for a, b in ((res[lab].params, one.params), (res[lab].stderr, one.stderr)):
                a, b = np.asarray(a), np.asarray(b)
                d = np.max(np.abs(a - b) / np.maximum(1.0, np.abs(b)))
                worst = max(worst, float(d))
    out["own_fit_max_rel_diff"] = worst
    print(f"against each group's own mj.fit: max rel diff {worst:.1e} (sizes checked)")
    return conv, params


def _peers(args, X, y, g, rows, conv, params, out, rng):
    import numpy as np

    G, p = len(rows), X.shape[1]

    sub = np.sort(rng.choice(G, size=min(args.peer_groups, G), replace=False))
    rows_sub = np.isin(g, sub)
    out["peer_groups"] = len(sub)
    try:
        import statsmodels.api as sm

        ests = {}
        t = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # separated groups: statsmodels warns
            for lab in sub:
                m = rows[lab]  # a slice: no pass over all rows per group
                try:
                    ests[lab] = sm.Logit(y[m], X[m]).fit(disp=0, method="newton").params
                except Exception:  # an older statsmodels raises on separation
                    ests[lab] = np.full(p, np.nan)
        dt = time.perf_counter() - t
        ok = sub[conv[sub]]  # groups mlejax flags (separation) have no MLE
        d = np.nan
        if params is not None:
            d = max(
                float(
                    np.max(np.abs(params[j] - ests[j]) / np.maximum(1, np.abs(ests[j])))
                )
                for j in ok
            )
        out["statsmodels"] = {
            "fits_per_s": len(sub) / dt,
            "extrapolated_s": dt * G / len(sub),
            "max_rel_diff": d,
        }
        print(
            f"statsmodels Logit loop: {len(sub) / dt:,.0f} fits/s (timed on {len(sub)} "
            f"groups, all {G} extrapolated: {dt * G / len(sub):.0f} s); max rel diff "
            f"from mlejax {d:.1e}"
        )
    except ImportError:
        print("statsmodels: UNAVAILABLE")
    try:
        import pandas as pd
        from sklearn.linear_model import LogisticRegression

        df = pd.DataFrame(X[rows_sub], columns=[f"x{j}" for j in range(p)])
        df["y"], df["group"] = y[rows_sub], g[rows_sub]
        cols = [f"x{j}" for j in range(p)]

        def one_fit(d):
            lr = LogisticRegression(
                penalty=None, fit_intercept=False, tol=1e-8, max_iter=10_000
            )
            return pd.Series(lr.fit(d[cols].to_numpy(), d["y"].to_numpy()).coef_[0])

        with warnings.catch_warnings():  # scikit-learn >= 1.8: penalty deprecated
            warnings.simplefilter("ignore", FutureWarning)
            t = time.perf_counter()
            coefs = df.groupby("group")[[*cols, "y"]].apply(one_fit)
            dt = time.perf_counter() - t
        keep = conv[sub]
        est = coefs.to_numpy()[keep]
        d = np.nan
        if params is not None:
            d = float(
                np.max(np.abs(params[sub][keep] - est) / np.maximum(1, np.abs(est)))
            )
        out["sklearn_groupby"] = {
            "fits_per_s": len(sub) / dt,
            "extrapolated_s": dt * G / len(sub),
            "max_rel_diff": d,
        }
        print(
            f"pandas groupby().apply(sklearn LogisticRegression): {len(sub) / dt:,.0f} "
            f"fits/s (timed on {len(sub)} groups, all {G} extrapolated: "
            f"{dt * G / len(sub):.0f} s); max rel diff from mlejax {d:.1e}"
        )
    except ImportError:
        print("pandas/scikit-learn: UNAVAILABLE")


if __name__ == "__main__":
    import json

    result = main(sys.argv[1:])
    print(json.dumps(result))
