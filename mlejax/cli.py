"""The ``mlejax`` command: parse arguments, load a config, run the experiments.

::

    mlejax list                          # bundled configs
    mlejax run                           # the default suite (a few minutes on 2 cores)
    mlejax run configs/logistic_fit.toml --out runs --seed 3
    mlejax run linear_vs_ols             # a bundled config by name
    mlejax run --resume runs/default-20260101-120000

Everything else lives in ``experiments`` (see ``docs/experiments.md``); this
module only parses, builds a config and calls :func:`experiments.suite.run_suite`.
"""

from __future__ import annotations

import argparse
import sys

__all__ = ["main", "build_parser"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mlejax",
        description=(
            "Maximum-likelihood experiments in JAX: every classic loss is a "
            "negative log-likelihood. Results go to runs/<name>-<timestamp>/ "
            "(config.toml, chunks.jsonl, results.json, tables/, plots/, report.md)."
        ),
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    run = sub.add_parser(
        "run",
        help="run experiments from TOML configs (default: the bundled default suite)",
        description=(
            "Run the experiments named in one or more TOML configs (paths, or the "
            "names shown by `mlejax list`). Without a config the bundled default "
            "suite runs (a few minutes on 2 CPU cores). Each finished unit is "
            "appended to chunks.jsonl, so an interrupted run can be resumed."
        ),
    )
    run.add_argument(
        "configs",
        nargs="*",
        metavar="CONFIG",
        help="TOML config file or bundled config name; several are merged",
    )
    run.add_argument(
        "--out", default="runs", metavar="DIR", help="parent of run directories (runs)"
    )
    run.add_argument(
        "--seed", type=int, default=None, metavar="N", help="override [run].seed"
    )
    run.add_argument(
        "--resume",
        default=None,
        metavar="RUNDIR",
        help="continue an interrupted run: finished units are skipped, not redone",
    )
    run.add_argument(
        "--quiet", action="store_true", help="no progress bar or summary table"
    )
    sub.add_parser(
        "list",
        help="list the bundled configs",
        description="List the TOML configs shipped with mlejax (usable by name).",
    )
    return parser


def _cmd_list() -> int:
    from experiments import config

    for name in config.bundled():
        cfg = config.load(config.bundled_path(name))
        print(f"{name:24s} {', '.join(cfg.experiments)}")
    return 0


def _summary_table(results: dict, run_dir):
    from rich.table import Table

    table = Table(title=f"mlejax run: {run_dir}")
    table.add_column("experiment")
    table.add_column("seconds", justify="right")
    table.add_column("headline")
    for name, exp in results["experiments"].items():
        summary = ", ".join(
            f"{k}={_short(v)}" for k, v in exp["summary"].items() if v is not None
        )
        table.add_row(name, f"{exp['seconds']:.1f}", summary)
    return table


def _short(v) -> str:
    if isinstance(v, float):
        return f"{v:.3g}"
    return str(v)


def _cmd_run(args) -> int:
    import mlejax as mj

    mj.enable_x64()
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
    )

    from experiments import config, suite

    console = Console(stderr=True)
    if args.resume and (args.configs or args.seed is not None):
        console.print(
            "[red]error:[/red] --resume reruns the run's own config.toml; "
            "do not pass configs or --seed with it."
        )
        return 2
    cfg = None
    if not args.resume:
        paths = args.configs or [config.bundled_path("default")]
        cfg = config.load_many(paths)
    if args.quiet:
        run_dir, results = suite.run_suite(
            cfg, out=args.out, seed=args.seed, resume=args.resume
        )
    else:
        with Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=console,
        ) as bar:
            task = bar.add_task("starting", total=None)

            def progress(label, done, total):
                bar.update(task, description=label[:60], completed=done, total=total)

            run_dir, results = suite.run_suite(
                cfg,
                out=args.out,
                seed=args.seed,
                resume=args.resume,
                progress=progress,
            )
        console.print(_summary_table(results, run_dir))
    print(run_dir)
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``mlejax`` console script; returns the exit status."""
    args = build_parser().parse_args(argv)
    from experiments.config import ConfigError

    try:
        if args.command == "list":
            return _cmd_list()
        return _cmd_run(args)
    except ConfigError as err:
        print(f"mlejax: config error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
