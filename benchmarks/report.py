"""Markdown tables from the JSON results."""

from __future__ import annotations


def _f(x, fmt="{:.3g}", none="—"):
    if x is None:
        return none
    return fmt.format(x)


def _secs(x):
    if x is None:
        return "—"
    if x >= 100:
        return f"{x:.0f}"
    if x >= 1:
        return f"{x:.2f}"
    if x >= 0.01:
        return f"{x:.3f}"
    return f"{x:.2e}"


def _load(v):
    return "—" if not v else "/".join(f"{x:.1f}" for x in v)


def _iters(x):
    if x is None:
        return "—"
    return f"{x:g}"


def workload_table(w: dict) -> str:
    lines = []
    head = f"### {w['id']}: {w['title']}"
    if "m" in w:
        head += f" — {w['m']:,} fits of n={w['n']}, p={w['p']}"
    else:
        head += f" — n={w['n']:,}, p={w['p']}"
    lines.append(head)
    lines.append("")
    w4 = "m" in w
    cols = ["method", "median s", "cpu s", "× fastest peer", "× floor", "iters"]
    if w4:
        cols += ["fits/s", "converged"]
    cols += ["loglik rel. diff", "status", "note"]
    lines.append("| " + " | ".join(cols) + " |")
    lines.append("|" + "---|" * len(cols))
    for r in w["rows"]:
        name = f"**{r['method']}**" if r.get("is_mlejax") else r["method"]
        if r.get("extrapolated"):
            name += " \\*"
        note = r.get("note") or ""
        if r.get("error"):
            note = (note + "; " if note else "") + r["error"][:120]
        if r.get("compile_s") is not None:
            extra = f"compile {_secs(r['compile_s'])} s"
            if r.get("trace_lower_s") is not None:
                extra = f"trace+lower {_secs(r['trace_lower_s'])} s, " + extra
            elif r.get("first_call_s") is not None:
                extra = f"first call {_secs(r['first_call_s'])} s, " + extra
            note = extra + ("; " + note if note else "")
        cells = [
            name,
            _secs(r.get("median_s")),
            _secs(r.get("median_cpu_s")),
            _f(r.get("ratio_to_fastest_peer"), "{:.2f}"),
            _f(r.get("floor_multiple"), "{:.1f}"),
            _iters(r.get("n_iter")),
        ]
        if w4:
            cells += [
                _f(r.get("fits_per_s"), "{:,.0f}"),
                _f(r.get("fraction_converged"), "{:.3f}"),
            ]
        cells += [
            _f(r.get("rel_diff"), "{:.1e}"),
            r.get("status", ""),
            note.replace("|", "/"),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    reps = sorted({r.get("repeats") for r in w["rows"] if r.get("repeats")})
    if reps:
        lines.append("")
        lines.append(f"Repeats (median of): {', '.join(map(str, reps))}.")
    fl = w.get("floor")
    if fl:
        lines.append("")
        lines.append(f"Floor: {_secs(fl['floor_s'])} s — {fl['assumption']}.")
    lines.append(
        f"Log-likelihoods recomputed with one shared NumPy function; reference: "
        f"{w.get('reference', 'mlejax')}; WRONG = relative difference > 1e-8."
    )
    if any(r.get("extrapolated") for r in w["rows"]):
        lines.append("\\* timed on a fraction and extrapolated linearly (see note).")
    lines.append("")
    return "\n".join(lines)


def startup_table(s: dict) -> str:
    lines = [
        "### Time to a first small fit (fresh process, 1000 x 5 logistic)",
        "",
        "| library | median wall s | import s | fit s (incl. compile) | runs |",
        "|---|---|---|---|---|",
    ]
    for name, v in s.items():
        failed = f" (failed: {v['error']})" if v.get("error") else ""
        lines.append(
            f"| {name} | {_secs(v.get('median_wall_s'))} | "
            f"{_secs(v.get('median_import_s'))} | {_secs(v.get('median_fit_s'))} | "
            f"{len(v['wall_s'])}{failed} |"
        )
    lines.append("")
    return "\n".join(lines)


def summary_table(res: dict) -> str:
    lines = [
        "### Summary: mlejax vs the fastest agreeing peer",
        "",
        "| workload | mlejax s | fastest peer | peer s | ratio | ratio of cpu s "
        "| × floor | compile s |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for w in res["workloads"]:
        mj = next((r for r in w["rows"] if r.get("is_mlejax")), None)
        peers = [
            r
            for r in w["rows"]
            if not r.get("is_mlejax") and r.get("status") == "OK" and r.get("median_s")
        ]
        best = min(peers, key=lambda r: r["median_s"]) if peers else None
        cpu_ratio = None
        if mj and best and mj.get("median_cpu_s") and best.get("median_cpu_s"):
            cpu_ratio = mj["median_cpu_s"] / best["median_cpu_s"]
        lines.append(
            f"| {w['id']} {w['title']} | {_secs(mj and mj.get('median_s'))} | "
            f"{best['method'] if best else '—'} | {_secs(best and best['median_s'])} | "
            f"{_f(mj and mj.get('ratio_to_fastest_peer'), '{:.2f}')} | "
            f"{_f(cpu_ratio, '{:.2f}')} | "
            f"{_f(mj and mj.get('floor_multiple'), '{:.1f}')} | "
            f"{_secs(mj and mj.get('compile_s'))} |"
        )
    lines.append("")
    return "\n".join(lines)


def markdown(res: dict) -> str:
    m = res["meta"]
    fl = m["floors"]
    out = [
        f"## mlejax benchmarks — {'quick' if m['quick'] else 'full'} run, "
        f"{m['threads']} thread(s)",
        "",
        f"- machine: {m['cpu_model']}, {m['cpus_online']} CPUs online, "
        f"affinity {m['affinity']}, {m['mem_gib']:.0f} GiB",
        f"- versions: {', '.join(f'{k} {v}' for k, v in m['versions'].items())}",
        f"- thread env: {m['thread_env']}",
        f"- floors: memory read {fl['bandwidth']['GBps']:.1f} GB/s "
        f"(numpy sum {fl['bandwidth']['sum_GBps']:.1f}, BLAS gemv "
        f"{fl['bandwidth']['gemv_GBps']:.1f}), float64 GEMM "
        f"{fl['gemm']['GFLOPs']:.1f} GFLOP/s ({fl['gemm']['size']}^2 matmul)",
        f"- total wall time {m.get('total_s', 0):.0f} s; load average at start "
        f"{_load(m.get('loadavg_start'))}, at end {_load(m.get('loadavg_end'))} "
        f"(on {m['cpus_online']} CPUs: a load above the thread count means other "
        "processes competed for the cores)",
        "",
        summary_table(res),
    ]
    for w in res["workloads"]:
        out.append(workload_table(w))
    if res.get("startup"):
        out.append(startup_table(res["startup"]))
    return "\n".join(out)


def main(argv=None) -> int:
    """``python -m benchmarks.report RESULTS.json``: print the markdown again."""
    import json
    import sys

    args = sys.argv[1:] if argv is None else argv
    for path in args:
        with open(path) as fh:
            print(markdown(json.load(fh)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
