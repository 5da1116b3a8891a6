"""Interleaved timing of several methods on the same data in one process.

Methods run in turn within each repeat, and the order alternates (forward on
even repeats, reversed on odd ones) so that no method always follows the same
neighbour (cache, allocator and CPU-frequency effects are shared out). Each
method's first call is made before the repeats and reported apart: for mlejax
it includes tracing and XLA compilation, so
``compile ~= first call - fastest steady-state call``.

A peer whose predicted full-size call exceeds ``budget_s`` is timed on the
first ``n_sub`` rows instead and its time is scaled by ``n / n_sub``
(linear extrapolation, stated in the row's note).
"""

from __future__ import annotations

import dataclasses
import gc
import statistics
import time
import traceback

import numpy as np

from benchmarks.peers import Method, Outcome


@dataclasses.dataclass
class Row:
    method: str
    is_mlejax: bool = False
    status: str = "OK"  # OK | WRONG | FAILED | UNAVAILABLE
    n_used: int = 0
    scale: float = 1.0  # multiply measured times by this (extrapolation)
    first_s: float | None = None
    times: list = dataclasses.field(default_factory=list)
    cpu_times: list = dataclasses.field(default_factory=list)
    outcome: Outcome | None = None
    loglik: float | None = None
    ref_loglik: float | None = None
    rel_diff: float | None = None
    note: str = ""
    error: str = ""
    repeats: int = 0

    @property
    def median_s(self) -> float | None:
        if not self.times:
            return None
        return statistics.median(self.times) * self.scale

    @property
    def median_cpu_s(self) -> float | None:
        if not self.cpu_times:
            return None
        return statistics.median(self.cpu_times) * self.scale

    @property
    def compile_s(self) -> float | None:
        if not self.is_mlejax or self.first_s is None or not self.times:
            return None
        return max(self.first_s - min(self.times), 0.0)


def _call(method: Method, X, y, cpu: list | None = None) -> tuple[float, Outcome]:
    gc.collect()
    c0 = time.process_time()
    t0 = time.perf_counter()
    out = method.fit(X, y)
    dt = time.perf_counter() - t0
    if cpu is not None:
        cpu.append(time.process_time() - c0)
    return dt, out


def time_methods(
    methods: list[Method],
    X: np.ndarray,
    y: np.ndarray,
    *,
    repeats: int,
    budget_s: float,
    probe_frac: float = 0.1,
    phase_budget_s: float | None = None,
    min_repeats: int = 2,
    log=print,
) -> list[Row]:
    n = X.shape[0]
    n_sub = max(int(n * probe_frac), 1)
    rows: list[Row] = []
    live: list[tuple[Method, Row]] = []
    t_probes: dict[str, float] = {}
    for m in methods:
        row = Row(m.name, is_mlejax=m.is_mlejax, n_used=n)
        rows.append(row)
        if not m.available:
            row.status = "UNAVAILABLE"
            row.error = m.why_unavailable
            continue
        try:
            if m.is_mlejax:
                row.first_s, _ = _call(m, X, y)  # trace + compile + run
            else:
                t_probe, _ = _call(m, X[:n_sub], y[:n_sub])  # warm-up and probe
                predicted = t_probe * n / n_sub
                t_probes[m.name] = predicted
                if predicted > budget_s:
                    row.n_used = n_sub
                    row.scale = n / n_sub
                    row.note = (
                        f"timed on n={n_sub:,} and extrapolated x{n / n_sub:g} "
                        f"(probe predicted {predicted:.0f} s per full call)"
                    )
                    row.first_s = t_probe
        except Exception as exc:  # a broken peer must not sink the run
            row.status = "FAILED"
            row.error = f"{exc!r}"
            log(f"    {m.name}: FAILED on first call: {exc!r}")
            traceback.print_exc()
            continue
        live.append((m, row))

    # estimated seconds per repeat (mlejax: its first call, compile included,
    # so an overestimate); fewer repeats (never below min_repeats) if the
    # repeats would overrun phase_budget_s
    est = 0.0
    for m, row in live:
        if m.is_mlejax:
            est += row.first_s or 0.0
        elif row.scale != 1.0:
            est += row.first_s or 0.0
        else:
            est += (row.first_s or 0.0) + t_probes.get(m.name, 0.0)
    if phase_budget_s is not None and est * repeats > phase_budget_s:
        new = max(min_repeats, int(phase_budget_s // max(est, 1e-9)))
        if new < repeats:
            log(f"    ~{est:.0f} s per repeat: {new} repeats instead of {repeats}")
            repeats = new
    for row in rows:
        row.repeats = repeats
    for r in range(repeats):
        order = live if r % 2 == 0 else live[::-1]
        for m, row in order:
            if row.status == "FAILED":
                continue
            k = row.n_used
            try:
                dt, out = _call(m, X[:k], y[:k], row.cpu_times)
            except Exception as exc:
                row.status = "FAILED"
                row.error = f"{exc!r}"
                log(f"    {m.name}: FAILED: {exc!r}")
                continue
            row.times.append(dt)
            row.outcome = out
            log(f"    [{r + 1}/{repeats}] {m.name:<40s} {dt * row.scale:9.3f} s")
    return rows


def check_agreement(rows: list[Row], X, y, loglik_fn, ref_fit, tol: float = 1e-8):
    """Recompute every row's log-likelihood with ``loglik_fn`` and compare it
    with mlejax's on the same rows (``ref_fit(k)`` returns mlejax's coefficients
    on the first ``k`` rows, or None when mlejax is unavailable: the reference
    is then the highest peer log-likelihood at that size)."""
    refs: dict[int, float | None] = {}
    for row in rows:
        if row.outcome is None:
            continue
        k = row.n_used
        row.loglik = loglik_fn(X[:k], y[:k], row.outcome.coef)
    for row in rows:
        if row.loglik is None:
            continue
        k = row.n_used
        if k not in refs:
            coef = ref_fit(k)
            if coef is not None:
                refs[k] = loglik_fn(X[:k], y[:k], coef)
            else:
                same = [
                    r.loglik for r in rows if r.n_used == k and r.loglik is not None
                ]
                refs[k] = max(same) if same else None
        ref = refs[k]
        row.ref_loglik = ref
        if ref is None:
            continue
        row.rel_diff = abs(row.loglik - ref) / max(abs(ref), 1e-300)
        if not np.isfinite(row.loglik) or row.rel_diff > tol:
            row.status = "WRONG"
            if np.isfinite(row.loglik) and row.loglik > ref:
                row.note = (row.note + "; " if row.note else "") + (
                    "higher log-likelihood than the reference"
                )
    return rows
