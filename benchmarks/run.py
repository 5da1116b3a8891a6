"""Run the benchmark suite: ``python -m benchmarks.run [--quick] [--threads 1|2]``.

The runner first re-executes itself pinned to ``--threads`` cores (CPU affinity,
as ``taskset -c 0`` would) with every thread pool capped at that many threads
(OpenMP, OpenBLAS, MKL, XLA's Eigen pool; threadpoolctl as well), so all
libraries compete under the same constraint. Results go to
``OUT/results_{quick|full}_{N}t.json`` and ``.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time

_CHILD = "MLEJAX_BENCH_CHILD"


def thread_env(threads: int) -> dict:
    t = str(threads)
    eigen = "false" if threads == 1 else "true"
    return {
        "OMP_NUM_THREADS": t,
        "OPENBLAS_NUM_THREADS": t,
        "MKL_NUM_THREADS": t,
        "NUMEXPR_NUM_THREADS": t,
        "VECLIB_MAXIMUM_THREADS": t,
        "XLA_FLAGS": (
            f"--xla_cpu_multi_thread_eigen={eigen} intra_op_parallelism_threads={t}"
        ),
    }


def _parse(argv):
    ap = argparse.ArgumentParser(prog="python -m benchmarks.run", description=__doc__)
    ap.add_argument("--quick", action="store_true", help="1/10 of n (< 2 minutes)")
    ap.add_argument("--threads", type=int, default=1, choices=(1, 2))
    ap.add_argument("--out", default=os.path.join("benchmarks", "results"))
    ap.add_argument(
        "--only",
        default="",
        help="comma list, e.g. W1,W4,startup; 'inference' (fit, robust "
        "covariance and profile_ci against statsmodels) runs only when named",
    )
    ap.add_argument("--repeats", type=int, default=None)
    ap.add_argument(
        "--no-pin", action="store_true", help="do not re-exec pinned (debugging)"
    )
    return ap.parse_args(argv)


def _reexec(args, argv) -> None:
    env = dict(os.environ)
    env.update(thread_env(args.threads))
    env[_CHILD] = str(args.threads)
    cpus = sorted(os.sched_getaffinity(0))[: args.threads]
    os.sched_setaffinity(0, cpus)  # inherited across exec, like taskset -c
    os.execve(sys.executable, [sys.executable, "-m", "benchmarks.run", *argv], env)


def _cpu_model() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
        for line in out.splitlines():
            if line.startswith("Model name:"):
                return line.split(":", 1)[1].strip()
    except Exception:
        pass
    return platform.processor() or "unknown"


def _versions() -> dict:
    import importlib.metadata as md

    v = {"python": platform.python_version()}
    for pkg in (
        "mlejax",
        "jax",
        "jaxlib",
        "numpy",
        "scipy",
        "statsmodels",
        "scikit-learn",
        "glum",
        "optax",
    ):
        try:
            v[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            v[pkg] = "not installed"
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "mlejax"], capture_output=True, text=True
        ).stdout.strip()
        v["mlejax"] += f" (git {commit}{', dirty tree' if dirty else ''})"
    except Exception:
        pass
    return v


def sizes(quick: bool) -> dict:
    d = 10 if quick else 1
    return {
        "W1": (1_000_000 // d, 50),
        "W2": (1_000_000 // d, 50),
        "W3": (1_000_000 // d, 100),
        "W4": (10_000 // d, 200, 5, 500 // d),
        "W6": (100_000 // d, 10),
    }


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = _parse(argv)
    if not args.no_pin and os.environ.get(_CHILD) != str(args.threads):
        _reexec(args, argv)

    t_start = time.perf_counter()
    import jax

    jax.config.update("jax_enable_x64", True)
    from threadpoolctl import threadpool_info, threadpool_limits

    from benchmarks import floors, report, startup, workloads

    threadpool_limits(limits=args.threads)
    quick = args.quick
    repeats = args.repeats or 3
    budget_s = 10.0 if not quick else 2.0  # per call, else extrapolate
    phase_s = 150.0 if not quick else 15.0  # per workload's repeats
    only = {s.strip().upper() for s in args.only.split(",") if s.strip()}

    def want(name):
        return not only or name.upper() in only

    def log(msg):
        print(msg, flush=True)

    meta = {
        "quick": quick,
        "threads": args.threads,
        "cpu_model": _cpu_model(),
        "cpus_online": os.cpu_count(),
        "affinity": sorted(os.sched_getaffinity(0)),
        "mem_gib": os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30,
        "versions": _versions(),
        "thread_env": {k: os.environ.get(k) for k in thread_env(args.threads)},
        "threadpools": [
            {k: p.get(k) for k in ("internal_api", "num_threads", "version")}
            for p in threadpool_info()
        ],
        "repeats": repeats,
        "loadavg_start": os.getloadavg(),
        "extrapolation_budget_s": budget_s,
        "repeats_budget_s": phase_s,
        "jax_devices": [str(d) for d in jax.devices()],
    }
    log(
        f"mlejax benchmarks: {'quick' if quick else 'full'}, {args.threads} thread(s), "
        f"affinity {meta['affinity']}"
    )
    log("floors ...")
    fl = floors.measure(quick)
    meta["floors"] = fl
    log(
        f"  bandwidth {fl['bandwidth']['GBps']:.1f} GB/s, "
        f"GEMM {fl['gemm']['GFLOPs']:.1f} GFLOP/s"
    )
    sz = sizes(quick)
    results = {"meta": meta, "workloads": []}
    if want("W1") or want("W5"):
        from benchmarks import data

        X, y, _ = data.logistic(*sz["W1"])
        if want("W1"):
            results["workloads"].append(
                workloads.w1(
                    *sz["W1"],
                    fl,
                    repeats=repeats,
                    budget_s=budget_s,
                    phase_budget_s=phase_s,
                    log=log,
                    X=X,
                    y=y,
                )
            )
        if want("W5"):
            results["workloads"].append(
                workloads.w5(*sz["W1"], fl, repeats=max(repeats, 5), log=log, X=X, y=y)
            )
        del X, y
    if want("W2"):
        results["workloads"].append(
            workloads.w2(
                *sz["W2"],
                fl,
                repeats=repeats,
                budget_s=budget_s,
                phase_budget_s=phase_s,
                log=log,
            )
        )
    if want("W3"):
        results["workloads"].append(
            workloads.w3(
                *sz["W3"],
                fl,
                repeats=repeats,
                budget_s=budget_s,
                phase_budget_s=phase_s,
                log=log,
            )
        )
    if want("W4"):
        results["workloads"].append(
            workloads.w4(*sz["W4"], fl, repeats=repeats, log=log)
        )
    if want("W6"):
        from benchmarks import survival

        results["workloads"].append(
            survival.w6(
                *sz["W6"],
                fl,
                repeats=max(repeats, 5),
                budget_s=budget_s,
                phase_budget_s=phase_s,
                log=log,
            )
        )
    if only and want("inference"):  # only on request (--only inference): minutes
        from benchmarks import inference

        log("inference cost (fit, HC0, cluster, profile_ci; statsmodels) ...")
        n_inf = 100_000 if quick else 1_000_000
        results["inference"] = inference.measure(n_inf, 50, repeats, log=log)
    order = {"W1": 1, "W2": 2, "W3": 3, "W4": 4, "W5": 5, "W6": 6}

    results["workloads"].sort(key=lambda w: order[w["id"]])
    if want("startup"):
        log("time to first fit (fresh processes) ...")
        results["startup"] = startup.run(repeats=3, log=log)
    meta["total_s"] = time.perf_counter() - t_start
    meta["loadavg_end"] = os.getloadavg()
    meta["process_cpu_s"] = time.process_time()

    os.makedirs(args.out, exist_ok=True)
    stem = os.path.join(
        args.out, f"results_{'quick' if quick else 'full'}_{args.threads}t"
    )
    with open(stem + ".json", "w") as fh:
        json.dump(results, fh, indent=1, default=float)
    md = report.markdown(results)
    if "inference" in results:
        from benchmarks import inference

        md += "\n\n" + inference.markdown(results["inference"])
    with open(stem + ".md", "w") as fh:
        fh.write(md + "\n")
    log("")
    log(md)
    log(f"wrote {stem}.json and {stem}.md ({meta['total_s']:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
