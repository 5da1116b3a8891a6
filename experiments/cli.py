"""The ``mlejax`` command: parse arguments, load a config, run the experiments.

::

    mlejax list                          # bundled configs
    mlejax run                           # the default suite (a few minutes on 2 cores)
    mlejax run configs/logistic_fit.toml --out runs --seed 3
    mlejax run linear_vs_ols             # a bundled config by name
    mlejax run --resume runs/default-20260101-120000

This is the research workflow's front end, not part of the library: the
console script ``mlejax`` points here and works from a checkout installed with
``pip install -e ".[experiments]"`` (the wheel holds the library only). It
only parses, builds a config and calls :func:`experiments.suite.run_suite`;
everything else lives in ``experiments`` (see ``docs/experiments.md``).

Exit status: 0 done (or the same config had already finished), 2 usage or
config error, a run directory in use by another process, or a missing
``experiments`` extra, 130 interrupted (Ctrl-C; the resume command is
printed). Every error is one line on standard error, never a traceback, and a
config is validated before any run directory is created.
"""

from __future__ import annotations

import argparse
import importlib.util
import shlex
import sys

__all__ = ["main", "build_parser", "EXTRA_HINT"]

#: the one line printed when matplotlib or rich is missing
EXTRA_HINT = (
    "mlejax: `mlejax run` needs {missing}, which the library does not install; "
    'run `pip install -e ".[experiments]"` in the mlejax checkout.'
)
#: what `mlejax run` imports beyond the library's own dependencies
RUN_REQUIRES = ("matplotlib", "rich")


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
            "appended to chunks.jsonl, so an interrupted run can be resumed. "
            "If a finished run of the same resolved config (same sizes and seed) "
            "is already under --out, nothing is redone: its directory is printed "
            "(use --resume to rebuild its report, --force to run again)."
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
        "--force",
        action="store_true",
        help="run again even if a finished run of the same config exists under --out",
    )
    run.add_argument(
        "--quiet", action="store_true", help="no progress bar or summary table"
    )
    sub.add_parser(
        "list",
        help="list the bundled configs",
        description="List the TOML configs in the checkout's configs/ (by name).",
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


def _missing_requirements() -> list[str]:
    return [m for m in RUN_REQUIRES if importlib.util.find_spec(m) is None]


def _existing_run(cfg, args) -> int | None:
    """Exit status when an earlier run of this config makes this one moot, else None."""
    from experiments import suite

    runs = suite.find_runs(cfg, args.out)
    if not runs:
        return None
    run_dir, complete = runs[0]
    quoted = shlex.quote(str(run_dir))
    if complete:
        print(
            f"mlejax: {run_dir} already holds a finished run of this config (same "
            "experiments, sizes and seed); nothing redone. Rebuild its report from "
            f"the recorded units with `mlejax run --resume {quoted}`, or add "
            "--force to run it again in a new directory.",
            file=sys.stderr,
        )
        print(run_dir)
        return 0
    print(
        f"mlejax: {run_dir} holds an unfinished run of this config; continue it "
        f"with `mlejax run --resume {quoted}` (finished units are kept), or add "
        "--force to start a new run.",
        file=sys.stderr,
    )
    return 2


def _cmd_run(args) -> int:
    missing = _missing_requirements()
    if missing:
        print(EXTRA_HINT.format(missing=" and ".join(missing)), file=sys.stderr)
        return 2
    if args.resume and (args.configs or args.seed is not None or args.force):
        print(
            "mlejax: error: --resume reruns the run's own config.toml; "
            "do not pass configs, --seed or --force with it.",
            file=sys.stderr,
        )
        return 2

    from experiments import config

    cfg = None
    if not args.resume:
        paths = args.configs or [config.bundled_path("default")]
        cfg = config.validate(config.with_seed(config.load_many(paths), args.seed))
        if not args.force:
            status = _existing_run(cfg, args)
            if status is not None:
                return status

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

    from experiments import suite

    console = Console(stderr=True)
    if args.quiet:
        run_dir, results = suite.run_suite(
            cfg, out=args.out, resume=args.resume, notify=_say
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
                resume=args.resume,
                progress=progress,
                notify=lambda msg: bar.console.print(
                    msg, markup=False, highlight=False, soft_wrap=True
                ),
            )
        console.print(_summary_table(results, run_dir))
    print(run_dir)
    return 0


def _say(message: str) -> None:
    print(message, file=sys.stderr)


def _one_line(err: BaseException) -> str:
    """An error's message on one line (a value may hold a newline)."""
    return " ".join(str(err).splitlines())


def _interrupted(exc: KeyboardInterrupt) -> int:
    run_dir = getattr(exc, "run_dir", None)
    if run_dir is None:
        print("\nmlejax: interrupted before a run directory existed.", file=sys.stderr)
    else:
        print(
            f"\nmlejax: interrupted. Finished units are saved in {run_dir}; resume "
            f"with:\n  mlejax run --resume {shlex.quote(str(run_dir))}",
            file=sys.stderr,
        )
    return 130


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``mlejax`` console script; returns the exit status."""
    args = build_parser().parse_args(argv)
    try:
        from experiments.config import ConfigError
        from experiments.writers import RunDirError

        try:
            if args.command == "list":
                return _cmd_list()
            return _cmd_run(args)
        except ConfigError as err:
            print(f"mlejax: config error: {_one_line(err)}", file=sys.stderr)
            return 2
        except RunDirError as err:
            print(f"mlejax: error: {_one_line(err)}", file=sys.stderr)
            return 2
    except KeyboardInterrupt as exc:
        return _interrupted(exc)


if __name__ == "__main__":
    sys.exit(main())
