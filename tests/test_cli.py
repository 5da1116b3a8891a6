"""One smoke test per ``mlejax`` command, plus argument and config errors.

The command is the research workflow's front end (``experiments.cli``), not
part of the library: these tests also check that the library never imports it.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from experiments import EXPERIMENTS, cli

ROOT = Path(__file__).resolve().parents[1]

# The engine's known rank-promotion bug (see conftest's
# engine_rank_promotion_workaround); a no-op once the engine is fixed.
pytestmark = pytest.mark.usefixtures("engine_rank_promotion_workaround")

# Same shapes as tests/test_experiments.py's tiny configs: compilations are reused.
TINY_TOML = """
[run]
name = "clitiny"

[logistic_fit]
n = 80
p = 2
solvers = ["newton", "sgd"]
sgd_steps = 400
repeats = 1

[sampling_distribution]
families = ["Gaussian"]
ns = [30]
p = 2
replications = 200
chunk = 100
"""


def test_list_command_in_a_subprocess():
    out = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys; from experiments.cli import main; sys.exit(main())",
            "list",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    names = [line.split()[0] for line in out.stdout.splitlines()]
    assert {"default", "smoke", "linear_vs_ols", "sampling_distribution"} <= set(names)


def test_run_command_writes_a_run_directory(tmp_path, capsys):
    cfg = tmp_path / "tiny.toml"
    cfg.write_text(TINY_TOML)
    assert (
        cli.main(["run", str(cfg), "--out", str(tmp_path / "runs"), "--seed", "3"]) == 0
    )
    (run_dir,) = (tmp_path / "runs").iterdir()
    assert run_dir.name.startswith("clitiny-")
    assert capsys.readouterr().out.strip().endswith(run_dir.name)
    results = json.loads((run_dir / "results.json").read_text())
    assert results["run"]["seed"] == 3 and results["complete"]
    assert results["environment"]["x64"] is True
    assert "seed = 3" in (run_dir / "config.toml").read_text()
    assert len((run_dir / "chunks.jsonl").read_text().splitlines()) == 4
    assert (run_dir / "tables" / "logistic_fit_solvers.csv").exists()
    report = (run_dir / "report.md").read_text()
    assert "Wald coverage" in report and "newton" in report
    # the same command again: says so, points to --resume, redoes nothing
    argv = ["run", str(cfg), "--out", str(tmp_path / "runs"), "--seed", "3"]
    assert cli.main(argv) == 0
    captured = capsys.readouterr()
    assert "already holds a finished run" in captured.err
    assert f"mlejax run --resume {run_dir}" in captured.err
    assert captured.out.strip() == str(run_dir)
    assert [p.name for p in (tmp_path / "runs").iterdir()] == [run_dir.name]
    # resume of a finished run: nothing redone, nothing duplicated, timings kept
    seconds = {k: e["seconds"] for k, e in results["experiments"].items()}
    assert cli.main(["run", "--resume", str(run_dir), "--quiet"]) == 0
    assert len((run_dir / "chunks.jsonl").read_text().splitlines()) == 4
    again = json.loads((run_dir / "results.json").read_text())
    assert {k: e["seconds"] for k, e in again["experiments"].items()} == seconds
    assert again["run"]["started"] == results["run"]["started"]


def test_ctrl_c_prints_the_resume_command_and_exits_130(tmp_path, capsys, monkeypatch):
    def interrupted(config, key, unit):
        raise KeyboardInterrupt

    monkeypatch.setattr(EXPERIMENTS["logistic_fit"], "run_unit", interrupted)
    cfg = tmp_path / "tiny.toml"
    cfg.write_text(TINY_TOML)
    argv = ["run", str(cfg), "--out", str(tmp_path / "runs"), "--quiet"]
    assert cli.main(argv) == 130
    (run_dir,) = (tmp_path / "runs").iterdir()
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert err.strip().splitlines()[-1].strip() == f"mlejax run --resume {run_dir}"
    assert (run_dir / "config.toml").exists()
    # the same config again points at the unfinished run instead of starting anew
    assert cli.main(argv) == 2
    assert f"mlejax run --resume {run_dir}" in capsys.readouterr().err
    assert len(list((tmp_path / "runs").iterdir())) == 1


def test_run_without_the_experiments_extra_says_what_to_install(
    tmp_path, capsys, monkeypatch
):
    monkeypatch.setitem(sys.modules, "rich", None)  # as if not installed
    assert cli.main(["run", "smoke", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert 'pip install -e ".[experiments]"' in err and "rich" in err
    assert not any(tmp_path.iterdir())
    assert cli.main(["list"]) == 0  # listing needs neither rich nor matplotlib
    assert "smoke" in capsys.readouterr().out


def test_the_library_never_imports_the_research_workflow():
    assert not (ROOT / "mlejax" / "cli.py").exists()
    code = (
        "import sys, mlejax; "
        "bad = sorted({m.split('.')[0] for m in sys.modules} & "
        "{'experiments', 'configs', 'rich', 'matplotlib', 'chex'}); "
        "print(bad); sys.exit(1 if bad else 0)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT / "docs"
    )
    assert out.returncode == 0, out.stdout + out.stderr


def test_packaging_keeps_the_wheel_the_library_only():
    meta = tomllib.loads((ROOT / "pyproject.toml").read_text())
    project = meta["project"]
    assert project["scripts"]["mlejax"] == "experiments.cli:main"
    core = {re.split(r"[<>=\[ ]", d)[0] for d in project["dependencies"]}
    assert core == {"jax", "jaxlib", "optax", "numpy", "scipy"}
    extras = project["optional-dependencies"]
    for extra in ("experiments", "test"):  # what `mlejax run` and its tests need
        names = " ".join(extras[extra])
        assert "matplotlib" in names and "rich" in names
    hatch = meta["tool"]["hatch"]["build"]
    assert hatch["targets"]["wheel"]["packages"] == ["mlejax"]
    assert hatch["dev-mode-dirs"] == ["."]  # editable: experiments/ and configs/


def test_run_command_reports_config_errors(tmp_path, capsys):
    bad = tmp_path / "bad.toml"
    bad.write_text("[logistic_fit]\nn = 'many'\n")
    assert cli.main(["run", str(bad), "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "bad.toml" in err and "logistic_fit.n" in err and "integer" in err
    assert not any(tmp_path.glob("run-*"))


def test_resume_refuses_extra_configs(tmp_path, capsys):
    assert cli.main(["run", "smoke", "--resume", str(tmp_path)]) == 2
    assert "--resume" in capsys.readouterr().err


def test_help_and_missing_command(capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main(["--help"])
    assert exc.value.code == 0
    assert "run" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        cli.main([])
