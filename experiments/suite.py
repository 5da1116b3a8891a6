"""Run a suite of experiments into a run directory, resumably.

``runs/<name>-<timestamp>/`` holds

* ``config.toml``: the resolved config (every default written out), written
  first, so ``--resume`` reruns exactly the same experiments and seed, and
  ``config.fingerprint``: the hash of that config (:func:`config.fingerprint`),
  which ``--resume`` checks, so an edited ``config.toml`` never mixes results
  of two configs in one run;
* ``chunks.jsonl``: one JSON line per finished unit, append-only;
* ``results.json``: every number, plus versions and device (rewritten
  atomically after each experiment; ``"complete": true`` is written last,
  after ``report.md`` exists);
* ``tables/*.csv``, ``plots/*.png`` and ``report.md``;
* ``.lock``: held (``fcntl.flock``) by the process running or resuming the
  run; a second one gets :class:`experiments.writers.RunLocked`.

The config is validated (:func:`config.validate`) before the run directory is
created, so a bad value never leaves a stale directory behind.

Timings are the units' own: each line of ``chunks.jsonl`` records the seconds
its unit took when it ran, and an experiment's ``seconds`` is the sum over its
units, so ``--resume`` (which skips finished units) never replaces a recorded
time with the near-zero time of reading it back.

A Ctrl-C during a run raises :class:`RunInterrupted`, a ``KeyboardInterrupt``
that carries the run directory (the CLI prints the resume command from it).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import platform
import sys
import time
from collections.abc import Callable
from pathlib import Path

import jax
import numpy as np
import optax

import mlejax as mj
from experiments import EXPERIMENTS, config, core, report
from experiments.writers import (
    ChunkLog,
    atomic_write_text,
    new_run_dir,
    run_lock,
    write_csv,
    write_json,
)

__all__ = [
    "run_suite",
    "environment",
    "total_units",
    "with_seed",
    "find_runs",
    "RunInterrupted",
    "FINGERPRINT_NAME",
]

#: the file in a run directory holding :func:`config.fingerprint` of its config
FINGERPRINT_NAME = "config.fingerprint"

Progress = Callable[[str, int, int], None]


def environment() -> dict:
    """Versions and device, recorded in ``results.json``."""
    dev = jax.devices()[0]
    env = {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "mlejax": mj.__version__,
        "jax": jax.__version__,
        "jaxlib": getattr(sys.modules.get("jaxlib"), "__version__", None),
        "optax": optax.__version__,
        "numpy": np.__version__,
        "device": f"{dev.platform}:{getattr(dev, 'device_kind', '')}",
        "device_count": jax.device_count(),
        "x64": bool(jax.config.jax_enable_x64),
    }
    try:
        import torch

        env["torch"] = torch.__version__
    except ImportError:
        env["torch"] = None
    return env


def total_units(cfg: config.SuiteConfig) -> int:
    return sum(len(EXPERIMENTS[n].units(c)) for n, c in cfg.experiments.items())


class RunInterrupted(KeyboardInterrupt):
    """Ctrl-C during :func:`run_suite`; ``run_dir`` holds what finished so far."""

    def __init__(self, run_dir: Path):
        super().__init__(str(run_dir))
        self.run_dir = Path(run_dir)


def with_seed(cfg: config.SuiteConfig, seed: int | None) -> config.SuiteConfig:
    """``cfg`` with ``[run].seed`` replaced (unchanged when ``seed`` is None).

    Raises:
      config.ConfigError: a seed out of range.
    """
    return config.with_seed(cfg, seed)


def _resolved_body(text: str) -> str:
    """A resolved ``config.toml`` without its ``# resolved from`` comment."""
    return "\n".join(
        line for line in text.splitlines() if not line.startswith("# resolved from")
    ).strip()


def _read_results(run_dir: Path) -> dict | None:
    try:
        return json.loads((run_dir / "results.json").read_text())
    except (OSError, ValueError):
        return None


def find_runs(cfg: config.SuiteConfig, out="runs") -> list[tuple[Path, bool]]:
    """Earlier runs of exactly this config under ``out``, newest first.

    A run matches when its ``config.toml`` resolves to the same text (same
    experiments, every size and the seed), wherever the config was read from.

    Returns:
      ``[(run_dir, complete), ...]``; ``complete`` is ``results.json``'s flag.
    """
    out = Path(out)
    if not out.is_dir():
        return []
    want = _resolved_body(config.to_toml(cfg))
    found = []
    for run_dir in out.glob(f"{cfg.run.name}-*"):
        try:
            text = (run_dir / "config.toml").read_text()
        except OSError:
            continue
        if _resolved_body(text) != want:
            continue
        res = _read_results(run_dir)
        complete = (
            bool(res and res.get("complete")) and (run_dir / "report.md").exists()
        )
        found.append((run_dir, complete, (run_dir / "config.toml").stat().st_mtime))
    found.sort(key=lambda t: (t[2], t[0].name), reverse=True)
    return [(d, c) for d, c, _ in found]


def _stderr(message: str) -> None:
    print(message, file=sys.stderr)


def _check_fingerprint(cfg: config.SuiteConfig, run_dir: Path) -> None:
    """Refuse to resume ``run_dir`` when its config.toml is not the one it ran."""
    now = config.fingerprint(cfg)
    path = run_dir / FINGERPRINT_NAME
    try:
        stored = path.read_text(encoding="utf-8").strip()
    except FileNotFoundError:  # a run from before fingerprints: adopt this one
        atomic_write_text(path, now + "\n")
        return
    except (OSError, UnicodeDecodeError) as err:
        raise config.ConfigError(
            f"{path}: cannot read the fingerprint: {err}."
        ) from None
    if stored != now:
        raise config.ConfigError(
            f"{run_dir / 'config.toml'} changed after the run started: it resolves "
            f"to {now}, but the run's recorded units were computed with "
            f"{config._one_line(stored[:80])} "
            f"({FINGERPRINT_NAME}); resuming would mix results of two configs. "
            "Restore the original config.toml, or start a new run with "
            f"`mlejax run {run_dir / 'config.toml'}`."
        )


def run_suite(
    cfg: config.SuiteConfig | None = None,
    *,
    out="runs",
    seed: int | None = None,
    resume=None,
    progress: Progress | None = None,
    on_chunk: Callable[[str, str, dict], None] | None = None,
    notify: Callable[[str], None] | None = _stderr,
) -> tuple[Path, dict]:
    """Run every experiment of ``cfg`` and write the run directory.

    Args:
      cfg: the suite; ignored with ``resume`` (the run's own ``config.toml``).
      out: parent folder of new run directories.
      seed: overrides ``[run].seed`` of a new run.
      resume: an existing run directory: finished units are skipped, new ones
        appended to its ``chunks.jsonl``.
      progress: called ``progress(label, done, total)`` at the start and after
        each unit.
      on_chunk: called ``on_chunk(experiment, unit, result)`` after each unit is
        recorded (tests raise from it to simulate a crash).
      notify: called with a one-line message when something needs saying
        (corrupt lines dropped from ``chunks.jsonl``); standard error by default.

    Returns:
      ``(run_dir, results)``.

    Raises:
      config.ConfigError: an invalid config (before any directory is created),
        or, on resume, a missing, invalid or edited ``config.toml``.
      experiments.writers.RunLocked: another process is using the run directory.
      experiments.writers.RunDirError: the run directory cannot be created.
    """
    t_start = time.perf_counter()
    with contextlib.ExitStack() as held:
        if resume is not None:
            run_dir = Path(resume)
            if not (run_dir / "config.toml").is_file():
                raise config.ConfigError(
                    f"{run_dir}: not a run directory (no config.toml)."
                )
            held.enter_context(run_lock(run_dir))
            cfg = config.load(run_dir / "config.toml")
            _check_fingerprint(cfg, run_dir)
        else:
            if cfg is None:
                cfg = config.load(config.bundled_path("default"))
            cfg = config.validate(with_seed(cfg, seed))
            run_dir = new_run_dir(out, cfg.run.name)
            held.enter_context(run_lock(run_dir))  # before config.toml exists
            atomic_write_text(run_dir / "config.toml", config.to_toml(cfg))
            fp = config.fingerprint(cfg)
            atomic_write_text(run_dir / FINGERPRINT_NAME, fp + "\n")
        try:
            return _run(
                cfg, run_dir, resume is not None, t_start, progress, on_chunk, notify
            )
        except KeyboardInterrupt:
            raise RunInterrupted(run_dir) from None


def _say_repairs(log: ChunkLog, notify) -> None:
    if notify is None:
        return
    if log.corrupt_lines:
        nums = ", ".join(map(str, log.corrupt_lines))
        notify(
            f"mlejax: {log.path}: line{'s' * (len(log.corrupt_lines) > 1)} {nums} "
            f"{'are' if len(log.corrupt_lines) > 1 else 'is'} not a valid unit "
            f"record; moved to {log.corrupt_path.name}, and the units not recorded "
            "elsewhere in the log will be redone."
        )
    if log.duplicate_lines:
        nums = ", ".join(map(str, log.duplicate_lines))
        notify(
            f"mlejax: {log.path}: dropped duplicate record(s) on line(s) {nums} "
            "(the first record of each unit is kept)."
        )


def _run(cfg, run_dir: Path, resumed: bool, t_start, progress, on_chunk, notify):
    previous = _read_results(run_dir) if resumed else None
    log = ChunkLog(run_dir / "chunks.jsonl")
    _say_repairs(log, notify)
    total = total_units(cfg)
    done = [sum(len(log.finished(n)) for n in cfg.experiments)]
    if progress:
        progress("starting", done[0], total)
    results = {
        "run": {
            "name": cfg.run.name,
            "seed": cfg.run.seed,
            "started": (previous or {}).get("run", {}).get("started")
            or time.strftime("%Y-%m-%d %H:%M:%S"),
            "resumed": resumed,
            "directory": str(run_dir),
        },
        "environment": environment(),
        "config": {n: dataclasses.asdict(c) for n, c in cfg.experiments.items()},
        "experiments": {},
        "complete": False,
    }
    master = jax.random.key(cfg.run.seed)
    plots: dict = {}
    for name, exp_cfg in cfg.experiments.items():
        module = EXPERIMENTS[name]

        def record(unit, result, seconds, name=name):
            log.append(name, unit, result, seconds)
            done[0] += 1
            if progress:
                progress(f"{name}: {unit}", done[0], total)
            if on_chunk:
                on_chunk(name, unit, result)

        res = core.run(
            module,
            exp_cfg,
            core.fold(master, name),
            completed=log.finished(name),
            on_chunk=record,
        )
        # the units' recorded times (a resume reads them back, never re-times)
        res["seconds"] = sum(log.seconds(name).values())
        res["warnings"] = sorted(
            {w for r in log.finished(name).values() for w in r.get("warnings", [])}
        )
        results["experiments"][name] = res
        for table, rows in res["tables"].items():
            if not rows:  # not computed: the report says why (res["skipped"])
                continue
            write_csv(run_dir / "tables" / f"{name}_{table}.csv", rows)
        if hasattr(module, "plot"):
            (run_dir / "plots").mkdir(exist_ok=True)
            plots[name] = module.plot(res, run_dir / "plots")
        write_json(run_dir / "results.json", results)
    results["run"]["seconds"] = sum(
        e["seconds"] for e in results["experiments"].values()
    )
    results["run"]["wall_seconds"] = time.perf_counter() - t_start
    write_json(run_dir / "results.json", results)  # every number, not yet complete
    text = report.render(results, EXPERIMENTS, plots)
    atomic_write_text(run_dir / "report.md", text)
    # completion is written last: "complete": true means report.md exists
    results["complete"] = True
    write_json(run_dir / "results.json", results)
    return run_dir, results
