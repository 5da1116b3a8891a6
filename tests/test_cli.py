"""One smoke test per ``mlejax`` command, plus argument and config errors."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from mlejax import cli

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
            "import sys; from mlejax.cli import main; sys.exit(main())",
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
    # resume of a finished run: nothing redone, nothing duplicated
    assert cli.main(["run", "--resume", str(run_dir), "--quiet"]) == 0
    assert len((run_dir / "chunks.jsonl").read_text().splitlines()) == 4


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
