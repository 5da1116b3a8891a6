"""The machine's physical floor, measured in the same process as the workloads.

* Memory read bandwidth: best of several reductions over an array much larger
  than the caches (NumPy ``sum`` and a BLAS ``dot`` with a vector of ones), best
  of ``repeats``; bytes read / seconds.
* Float64 GEMM throughput: NumPy ``matmul`` of two ``size x size`` matrices
  (2 size^3 flops), best of ``repeats``.

A workload's floor is ``passes * max(bytes of X / bandwidth, flops / peak)``
for the passes over X that its algorithm cannot avoid (stated per workload).
"""

from __future__ import annotations

import time

import numpy as np


def _best(fn, repeats: int) -> float:
    best = np.inf
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def memory_bandwidth(n_bytes: int = 800_000_000, repeats: int = 5) -> dict:
    cols = 1024
    a = np.random.default_rng(0).random((n_bytes // 8 // cols) * cols)
    ones = np.ones(cols)
    a2 = a.reshape(-1, cols)
    t_sum = _best(lambda: a.sum(), repeats)
    t_gemv = _best(lambda: a2 @ ones, repeats)
    nb = a.nbytes
    return {
        "bytes": nb,
        "sum_GBps": nb / t_sum / 1e9,
        "gemv_GBps": nb / t_gemv / 1e9,
        "GBps": max(nb / t_sum, nb / t_gemv) / 1e9,
    }


def gemm_peak(size: int = 3000, repeats: int = 3) -> dict:
    rng = np.random.default_rng(1)
    A = rng.random((size, size))
    B = rng.random((size, size))
    A @ B  # warm up the BLAS threads
    t = _best(lambda: A @ B, repeats)
    return {"size": size, "GFLOPs": 2.0 * size**3 / t / 1e9}


def measure(quick: bool = False) -> dict:
    bw = memory_bandwidth(200_000_000 if quick else 800_000_000, 5)
    peak = gemm_peak(2000 if quick else 3000, 3)
    return {"bandwidth": bw, "gemm": peak}


def pass_time(floors: dict, n_bytes: float, flops: float) -> float:
    """Seconds for one pass that reads ``n_bytes`` and does ``flops``."""
    return max(
        n_bytes / (floors["bandwidth"]["GBps"] * 1e9),
        flops / (floors["gemm"]["GFLOPs"] * 1e9),
    )
