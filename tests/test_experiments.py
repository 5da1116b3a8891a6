"""Experiments at tiny sizes, checked against outside references.

Shapes are tiny and shared between tests (every new shape compiles); each
experiment runs once per module through a fixture. References: NumPy
``lstsq`` (least squares), statsmodels (logistic MLE), the true parameters
within Monte Carlo error.
"""

from __future__ import annotations

import dataclasses
import json
import math

import jax
import numpy as np
import pytest

import mlejax as mj
from experiments import EXPERIMENTS, config, core, suite, writers
from experiments import gradient_equivalence as ge
from experiments import linear_vs_ols as lin
from experiments import logistic_fit as logi
from experiments import robust_regression as rr

KEY = jax.random.key(0)

# The engine's known rank-promotion bug (see conftest's
# engine_rank_promotion_workaround); a no-op once the engine is fixed.
pytestmark = pytest.mark.usefixtures("engine_rank_promotion_workaround")

TINY = {
    "linear_vs_ols": config.LinearVsOLS(
        n=40, p=3, solvers=["newton", "sgd"], steps=300
    ),
    "gradient_equivalence": config.GradientEquivalence(
        n=40, p=2, families=["Bernoulli"], n_points=3, fit_steps=4, torch_max_iter=200
    ),
    "logistic_fit": config.LogisticFit(
        n=80, p=2, solvers=["newton", "sgd"], sgd_steps=400, repeats=1
    ),
    "sampling_distribution": config.SamplingDistribution(
        families=["Gaussian"], ns=[30], p=2, replications=400, chunk=100
    ),
    "robust_regression": config.RobustRegression(
        n=60, p=2, replications=40, scenarios=["outliers"], families=["Laplace"]
    ),
}


def _exp_key(name):
    return core.fold(KEY, name)


@pytest.fixture(scope="module")
def results():
    """Each tiny experiment run once (in-process, so compilations are shared)."""
    from conftest import _engine_traces_under_raise

    mode = "raise" if _engine_traces_under_raise() else "allow"
    with jax.numpy_rank_promotion(mode):
        return {
            name: core.run(EXPERIMENTS[name], cfg, _exp_key(name))
            for name, cfg in TINY.items()
        }


# -- numbers against references ---------------------------------------------------
def test_linear_vs_ols_reaches_lstsq(results):
    cfg = TINY["linear_vs_ols"]
    X, y, _ = lin.data(cfg, _exp_key("linear_vs_ols"))
    beta = np.linalg.lstsq(np.asarray(X), np.asarray(y), rcond=None)[0]
    np.testing.assert_allclose(mj.ols(X, y).params, beta, rtol=1e-10)
    rows = {r["solver"]: r for r in results["linear_vs_ols"]["tables"]["solvers"]}
    assert rows["newton"]["fit_rel_error"] < 1e-12
    assert rows["newton"]["iters_to_1e-10"] is not None
    assert rows["sgd"]["fit_rel_error"] < 1e-6  # 300 steps of gradient descent
    curves = results["linear_vs_ols"]["tables"]["distance_curves"]
    assert len(curves) == cfg.steps + 1
    assert curves[-1]["sgd"] < curves[0]["sgd"] * 1e-6
    assert results["linear_vs_ols"]["summary"]["all_reached_1e-6"]


def test_gradient_equivalence_constants_and_torch(results):
    res = results["gradient_equivalence"]
    for row in res["tables"]["gradients"]:
        assert row["a_rel_diff"] < 1e-10, row
        assert row["max_rel_grad_dev"] < 1e-10, row
    assert {r["implementation"] for r in res["tables"]["gradients"]} >= {
        "mlejax",
        "optax",
    }
    (est,) = res["tables"]["estimates"]
    assert est["estimate_max_abs_diff"] < 1e-8
    assert est["b_spread"] < 1e-9
    if ge.torch_available():
        (snip,) = res["tables"]["torch"]
        assert snip["torch_loss"] == "BCEWithLogitsLoss"
        assert snip["max_abs_diff"] < 1e-6


def test_logistic_fit_matches_statsmodels(results):
    sm = pytest.importorskip("statsmodels.api")
    cfg = TINY["logistic_fit"]
    X, y, _ = logi.data(cfg, _exp_key("logistic_fit"))
    ref = sm.Logit(np.asarray(y), np.asarray(X)).fit(disp=0, method="newton", tol=1e-12)
    rows = {r["solver"]: r for r in results["logistic_fit"]["tables"]["solvers"]}
    w_newton = [rows["newton"][f"w{j}"] for j in range(cfg.p)]
    np.testing.assert_allclose(w_newton, ref.params, rtol=1e-8, atol=1e-10)
    np.testing.assert_allclose(rows["newton"]["loglik"], ref.llf, rtol=1e-10)
    assert rows["sgd"]["max_abs_diff_vs_newton"] < 1e-6


def test_sampling_distribution_within_mc_error(results):
    (row,) = results["sampling_distribution"]["tables"]["coverage"]
    R = row["used"]
    assert R == 400
    mcse = math.sqrt(0.95 * 0.05 / R)
    assert abs(row["coverage_pooled"] - 0.95) < 4 * mcse
    assert row["max_bias_over_mcse"] < 4.0  # unbiased least squares
    assert 0.7 < row["var_ratio_min"] <= row["var_ratio_max"] < 1.3


def test_robust_regression_laplace_beats_least_squares_under_outliers(results):
    cfg = TINY["robust_regression"]
    Xs, Y, w = rr.data(cfg, _exp_key("robust_regression"), "outliers")
    ols = np.stack(
        [
            np.linalg.lstsq(X, y, rcond=None)[0]
            for X, y in zip(np.asarray(Xs), np.asarray(Y), strict=True)
        ]
    )
    rmse_ols = np.sqrt(np.mean((ols[:, 1:] - w[1:]) ** 2))
    (row,) = results["robust_regression"]["tables"]["errors"]
    assert row["family"] == "Laplace"
    assert row["rmse_slopes"] < 0.7 * rmse_ols
    assert row["converged"] >= cfg.replications - 2


# -- run directories, resume ------------------------------------------------------
def _suite(name="tiny"):
    exps = {k: TINY[k] for k in ("logistic_fit", "sampling_distribution")}
    return config.SuiteConfig(
        run=config.RunSection(name=name, seed=0), experiments=exps
    )


class Crash(RuntimeError):
    pass


def test_kill_and_resume_loses_nothing_duplicates_nothing(tmp_path):
    cfg = _suite()
    seen = []

    def crash_after_three(exp, unit, result):
        seen.append((exp, unit))
        if len(seen) == 3:
            raise Crash("simulated kill")

    with pytest.raises(Crash):
        suite.run_suite(cfg, out=tmp_path, on_chunk=crash_after_three)
    (run_dir,) = tmp_path.iterdir()
    lines = (run_dir / "chunks.jsonl").read_text().splitlines()
    assert len(lines) == 3
    # a torn line (killed inside a write) is dropped on reopening
    with open(run_dir / "chunks.jsonl", "a") as fh:
        fh.write('{"experiment": "sampling_distribution", "unit": "Gauss')
    redone = []
    run_dir2, res = suite.run_suite(
        resume=run_dir, on_chunk=lambda e, u, r: redone.append((e, u))
    )
    assert run_dir2 == run_dir
    recs = [json.loads(s) for s in (run_dir / "chunks.jsonl").read_text().splitlines()]
    keys = [(r["experiment"], r["unit"]) for r in recs]
    total = suite.total_units(cfg)
    assert len(keys) == len(set(keys)) == total
    assert set(redone).isdisjoint(seen) and len(redone) == total - 3
    # identical numbers to an uninterrupted run
    master = jax.random.key(0)
    for name, exp_cfg in cfg.experiments.items():
        fresh = core.run(EXPERIMENTS[name], exp_cfg, core.fold(master, name))
        got = res["experiments"][name]
        if name == "sampling_distribution":
            assert got["tables"] == core.roundtrip(fresh["tables"])
        else:  # timings differ between runs; estimates do not
            for a, b in zip(
                got["tables"]["solvers"], fresh["tables"]["solvers"], strict=True
            ):
                assert a["max_abs_diff_vs_newton"] == b["max_abs_diff_vs_newton"]
                assert a["loglik"] == b["loglik"]
    # resuming a finished run redoes nothing and writes nothing twice
    again = []
    suite.run_suite(resume=run_dir, on_chunk=lambda e, u, r: again.append(u))
    assert again == []
    assert len((run_dir / "chunks.jsonl").read_text().splitlines()) == total
    for f in ("config.toml", "results.json", "report.md"):
        assert (run_dir / f).stat().st_size > 0
    assert json.loads((run_dir / "results.json").read_text())["complete"] is True
    assert sorted(p.name for p in (run_dir / "plots").iterdir()) == [
        "logistic_fit_trace.png",
        "sampling_distribution_coverage.png",
    ]


def test_run_dirs_never_overwrite(tmp_path):
    a = writers.new_run_dir(tmp_path, "x")
    b = writers.new_run_dir(tmp_path, "x")
    assert a != b and a.exists() and b.exists()


def test_atomic_write_leaves_no_temp_files(tmp_path):
    writers.write_json(tmp_path / "r.json", {"a": np.float64(1.5), "b": math.nan})
    writers.write_csv(tmp_path / "t.csv", [{"x": 1, "y": None}, {"x": 2.5, "z": "s"}])
    assert json.loads((tmp_path / "r.json").read_text()) == {"a": 1.5, "b": None}
    assert (tmp_path / "t.csv").read_text() == "x,y,z\n1,,\n2.5,,s\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.json", "t.csv"]


# -- configs ----------------------------------------------------------------------
def _write(tmp_path, text, name="c.toml"):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_bundled_configs_parse_and_default_names_every_experiment():
    names = config.bundled()
    assert {"default", "smoke", *EXPERIMENTS} <= set(names)
    for name in names:
        cfg = config.load(config.bundled_path(name))
        assert cfg.experiments
    assert set(config.load(config.bundled_path("default")).experiments) == set(
        EXPERIMENTS
    )


def test_config_roundtrip_through_resolved_toml(tmp_path):
    cfg = config.load(config.bundled_path("smoke"))
    again = config.load(_write(tmp_path, config.to_toml(cfg)))
    assert again.run == cfg.run and again.experiments == cfg.experiments


def test_config_unknown_key_names_file_and_key(tmp_path):
    path = _write(tmp_path, "[logistic_fit]\nn = 10\nlearning_rate = 0.1\n")
    with pytest.raises(
        config.ConfigError, match=r"c\.toml.*logistic_fit\.learning_rate"
    ):
        config.load(path)


def test_config_wrong_type_names_expected_type(tmp_path):
    path = _write(tmp_path, '[sampling_distribution]\nns = [50, "200"]\n')
    with pytest.raises(
        config.ConfigError, match=r"c\.toml.*sampling_distribution\.ns\[1\].*integer"
    ):
        config.load(path)
    path = _write(tmp_path, "[logistic_fit]\nn = true\n")
    with pytest.raises(config.ConfigError, match=r"logistic_fit\.n.*expected integer"):
        config.load(path)
    path = _write(tmp_path, "[logistic_fit]\nadam_lr = 1\n")  # int is a fine float
    assert config.load(path).experiments["logistic_fit"].adam_lr == 1.0


def test_config_unknown_table_and_bad_toml(tmp_path):
    with pytest.raises(config.ConfigError, match="unknown table or key 'nope'"):
        config.load(_write(tmp_path, "[nope]\nx = 1\n"))
    with pytest.raises(config.ConfigError, match="invalid TOML"):
        config.load(_write(tmp_path, "[run\n"))
    with pytest.raises(config.ConfigError, match="names no experiment"):
        config.load(_write(tmp_path, '[run]\nname = "x"\n'))
    with pytest.raises(config.ConfigError, match="no such config"):
        config.load(tmp_path / "missing.toml")


def test_seed_changes_data_but_not_the_unit_keys():
    cfg = dataclasses.replace(TINY["logistic_fit"])
    X0, y0, _ = logi.data(cfg, core.fold(jax.random.key(0), "logistic_fit"))
    X1, y1, _ = logi.data(cfg, core.fold(jax.random.key(1), "logistic_fit"))
    assert not np.allclose(X0, X1)
    assert EXPERIMENTS["logistic_fit"].units(cfg) == ["newton", "sgd"]
