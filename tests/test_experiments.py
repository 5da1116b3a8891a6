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
from experiments import coverage as cv
from experiments import gradient_equivalence as ge
from experiments import hyper_gradient as hg
from experiments import linear_vs_ols as lin
from experiments import logistic_fit as logi
from experiments import robust_regression as rr
from experiments import sampling_distribution as sd

KEY = jax.random.key(0)

# The engine's known rank-promotion bug (see conftest's
# engine_rank_promotion_workaround); a no-op once the engine is fixed.
pytestmark = [
    pytest.mark.usefixtures("engine_rank_promotion_workaround"),
    # one xdist worker runs this module (addopts: --dist loadgroup), so the
    # module fixture's experiments (~50 s of compiles) run once, not per worker
    pytest.mark.xdist_group("experiments"),
]

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
    # the grid loops over the compiled gradient step (a vmap would compile again)
    "hyper_gradient": config.HyperGradient(
        n_train=80,
        n_valid=150,
        p=12,
        informative=3,
        signal=0.7,
        grid_size=25,
        grid_vmap=False,
        n_Cs=8,
        cv_folds=3,
    ),
    # the profile search compiles for long: the tiny run checks the Wald paths
    "coverage": config.Coverage(
        settings=["overdispersed_poisson"], replications=40, profile=False, n_poisson=40
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


def test_hyper_gradient_reaches_the_grid_minimum_checked_by_sklearn(results):
    """Adam on log(alpha) through the implicit derivative lands within the
    tolerance of the grid's minimum validation loss; the implicit hypergradient
    equals central differences of scikit-learn refits (1e-5); and scikit-learn
    refits (C = 1/alpha) give the reported validation losses at the chosen
    alphas, the grid's argmin being a minimum among its neighbours."""
    pytest.importorskip("sklearn")
    cfg = TINY["hyper_gradient"]
    res = results["hyper_gradient"]
    s = res["summary"]
    assert s["within_tolerance"] and s["gap_vs_grid_min"] <= cfg.tolerance
    assert s["final_converged"] and s["grid_converged"] == cfg.grid_size
    (check,) = res["tables"]["gradient_check"]
    assert check["rel_diff"] < 1e-5 and abs(check["finite_difference"]) > 1e-4
    assert s["sklearn_mlejax_loss_diff"] < 1e-9
    rows = {r["method"].split(" ")[0]: r for r in res["tables"]["choice"]}
    assert rows["start"]["gap_vs_grid_min"] > 10 * cfg.tolerance  # a poor start
    X_tr, y_tr, X_va, y_va = hg.data(cfg, _exp_key("hyper_gradient"))

    def sk_loss(alpha):
        return hg._np_log_loss(X_va @ hg._sk_params(X_tr, y_tr, alpha), y_va)

    grid = res["tables"]["grid"]
    i = int(np.argmin([g["valid_logloss"] for g in grid]))
    assert 0 < i < len(grid) - 1  # an interior minimum
    near = [sk_loss(grid[j]["alpha"]) for j in (i - 1, i, i + 1)]
    assert near[1] < min(near[0], near[2])
    np.testing.assert_allclose(near[1], grid[i]["valid_logloss"], rtol=1e-9)
    g = rows["gradient"]
    np.testing.assert_allclose(sk_loss(g["alpha"]), g["valid_logloss"], rtol=1e-9)


def test_coverage_counts_equal_statsmodels_intervals(results):
    """Every replication's model-based and HC0 intervals recomputed by
    statsmodels (GLM Poisson, cov_type nonrobust / HC0): the same counts."""
    sm = pytest.importorskip("statsmodels.api")
    cfg = TINY["coverage"]
    (row,) = results["coverage"]["tables"]["coverage"][:1]
    X, Y, _ = cv.draw(
        cfg,
        "overdispersed_poisson",
        core.fold(_exp_key("coverage"), "overdispersed_poisson"),
        cfg.replications,
    )
    z, b1 = 1.959963984540054, cv.TRUE["overdispersed_poisson"][1]
    counts = {"model": 0, "HC0": 0}
    for Xi, yi in zip(np.asarray(X), np.asarray(Y), strict=True):
        for m, ct in (("model", "nonrobust"), ("HC0", "HC0")):
            r = sm.GLM(yi, Xi, family=sm.families.Poisson()).fit(cov_type=ct, tol=1e-12)
            counts[m] += abs(r.params[1] - b1) <= z * r.bse[1]
    rows = {r["method"]: r for r in results["coverage"]["tables"]["coverage"]}
    assert rows["model"]["used"] == cfg.replications
    for m in counts:
        assert round(rows[m]["coverage"] * cfg.replications) == counts[m]
    assert row["setting"] == "overdispersed_poisson"


def test_coverage_pseudo_true_solves_the_population_score():
    """The clustered setting's estimand: the population logistic score vanishes
    there (scipy's adaptive quad_vec over the cluster effect, Simpson over x;
    not the Gauss-Hermite rule the experiment uses)."""
    from scipy import integrate, special, stats

    b, sd, xs = (-0.3, 1.0), 1.0, math.sqrt(1.25)
    c = cv.pseudo_true_logistic(b, sd, xs)
    x = np.linspace(-10 * xs, 10 * xs, 4001)
    p_marg = integrate.quad_vec(
        lambda a: special.expit(b[0] + b[1] * x + sd * a) * stats.norm.pdf(a),
        -12,
        12,
        epsabs=1e-14,
    )[0]
    resid = (p_marg - special.expit(c[0] + c[1] * x)) * stats.norm.pdf(x, 0, xs)
    for k in (0, 1):
        assert abs(integrate.simpson(x**k * resid, x=x)) < 1e-10
    assert abs(c[1]) < abs(b[1])  # attenuated towards zero


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
    # every experiment's time is the sum of its units' recorded times
    for name in cfg.experiments:
        unit_s = [r["seconds"] for r in recs if r["experiment"] == name]
        assert res["experiments"][name]["seconds"] == pytest.approx(sum(unit_s))
    timings = {k: e["seconds"] for k, e in res["experiments"].items()}
    assert min(timings.values()) > 0
    # resuming a finished run redoes nothing, writes nothing twice, and keeps
    # the recorded timings (not the near-zero time of reading them back)
    again = []
    _, res2 = suite.run_suite(resume=run_dir, on_chunk=lambda e, u, r: again.append(u))
    assert again == []
    assert len((run_dir / "chunks.jsonl").read_text().splitlines()) == total
    assert {k: e["seconds"] for k, e in res2["experiments"].items()} == timings
    assert res2["run"]["seconds"] == pytest.approx(sum(timings.values()))
    for f in ("config.toml", "results.json", "report.md"):
        assert (run_dir / f).stat().st_size > 0
    assert json.loads((run_dir / "results.json").read_text())["complete"] is True
    assert sorted(p.name for p in (run_dir / "plots").iterdir()) == [
        "logistic_fit_trace.png",
        "sampling_distribution_coverage.png",
    ]


def test_ctrl_c_names_the_run_directory(tmp_path):
    def ctrl_c(exp, unit, result):
        raise KeyboardInterrupt

    with pytest.raises(suite.RunInterrupted) as exc:
        suite.run_suite(_suite("ctrlc"), out=tmp_path, on_chunk=ctrl_c)
    (run_dir,) = tmp_path.iterdir()
    assert exc.value.run_dir == run_dir
    assert isinstance(exc.value, KeyboardInterrupt)
    assert suite.find_runs(_suite("ctrlc"), tmp_path) == [(run_dir, False)]
    assert suite.find_runs(_suite("other"), tmp_path) == []


def test_missing_torch_is_reported_not_an_empty_table(tmp_path, monkeypatch):
    monkeypatch.setattr(ge, "torch_available", lambda: False)
    cfg = config.SuiteConfig(
        run=config.RunSection(name="notorch"),
        experiments={"gradient_equivalence": TINY["gradient_equivalence"]},
    )
    assert TINY["gradient_equivalence"].torch  # asked for, but absent
    run_dir, res = suite.run_suite(cfg, out=tmp_path)
    exp = res["experiments"]["gradient_equivalence"]
    assert exp["tables"]["torch"] == []
    assert "torch" not in {r["implementation"] for r in exp["tables"]["gradients"]}
    assert "not installed" in exp["skipped"]["torch"]
    assert not (run_dir / "tables" / "gradient_equivalence_torch.csv").exists()
    assert (run_dir / "tables" / "gradient_equivalence_gradients.csv").exists()
    report = (run_dir / "report.md").read_text()
    assert "Table `torch`: not computed. PyTorch is not installed" in report
    assert "PyTorch comparison skipped" in report  # among the findings
    # torch = false in the config says that instead
    off = dataclasses.replace(TINY["gradient_equivalence"], torch=False)
    (rec,) = [
        json.loads(s) for s in (run_dir / "chunks.jsonl").read_text().splitlines()
    ]
    assert ge.summarize(off, {"Bernoulli": rec["result"]})["skipped"] == {
        "torch": "`torch = false` in the config."
    }


# -- plots --------------------------------------------------------------------------
def _grad_row(family, impl, dev):
    return {"family": family, "implementation": impl, "max_rel_grad_dev": dev}


def test_gradient_plot_does_not_magnify_round_off():
    # 1e-16 vs 3e-16 is round-off, not a 3x difference; 1e-9 is a real deviation
    heights = ge.eps_units([0.0, 1e-16, 3e-16])
    np.testing.assert_allclose(heights, [1, 1, 3e-16 / ge.EPS])
    rows = [
        _grad_row("Gaussian", "mlejax", 1e-16),
        _grad_row("Gaussian", "optax", 3e-16),
        _grad_row("Poisson", "mlejax", 1e-9),
        _grad_row("Poisson", "optax", 2e-16),
    ]
    fig = ge.figure({"tables": {"gradients": rows}})
    (ax,) = fig.axes
    # bars in order mlejax (Gaussian, Poisson), then optax (Gaussian, Poisson)
    g_mj, p_mj, g_ox, p_ox = (b.get_y() + b.get_height() for b in ax.patches)
    assert g_mj == 1.0 and g_ox / g_mj < 1.5  # Gaussian: both at round-off
    assert p_mj == pytest.approx(1e-9 / ge.EPS) and p_ox == 1.0
    assert ax.get_yscale() == "log" and ax.get_ylim()[0] == 1.0
    assert "eps" in ax.get_ylabel()
    writers.pyplot().close(fig)


def test_sampling_plot_keeps_one_colour_per_family_and_explains_the_band():
    from matplotlib.colors import to_rgba

    def row(family, n):
        return {
            "family": family,
            "n": n,
            "coverage_pooled": 0.95,
            "coverage_mcse": 0.005,
            "var_ratio_min": 0.95,
            "var_ratio_max": 1.05,
        }

    fams = ["Gaussian", "Bernoulli", "Poisson"]
    rows = [row(f, n) for f in fams for n in (50, 200)]
    fig = sd.figure({"tables": {"coverage": rows}})
    colours = {}
    for ax in fig.axes:
        for line in ax.get_lines():
            if line.get_gid() in fams:
                colours.setdefault(line.get_gid(), set()).add(to_rgba(line.get_color()))
    assert set(colours) == set(fams)
    assert all(len(c) == 1 for c in colours.values())  # same colour in both panels
    assert len(set.union(*colours.values())) == len(fams)  # and one per family
    for ax in fig.axes:
        assert sum(line.get_gid() in fams for line in ax.get_lines()) >= len(fams)
    legend = " ".join(t.get_text() for t in fig.axes[0].get_legend().get_texts())
    assert "target band 0.93-0.97" in legend
    caption = " ".join(t.get_text() for t in fig.texts)
    assert "Shaded band" in caption and "Monte Carlo" in caption
    writers.pyplot().close(fig)


def test_smoke_config_is_small():
    cfg = config.load(config.bundled_path("smoke"))
    assert suite.total_units(cfg) <= 12  # every experiment, a unit or two each
    assert set(cfg.experiments) == set(EXPERIMENTS)


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


# -- run directory integrity: lock, fingerprint, corrupt lines, completion ----------
class FakeExperiment:
    """A stand-in for ``logistic_fit`` whose units take microseconds."""

    __doc__ = "Fake.\n\nFour synthetic units."
    NAME = "logistic_fit"
    UNITS = ["u0", "u1", "u2", "u3"]
    calls: list = []

    @staticmethod
    def units(config):
        return FakeExperiment.UNITS

    @staticmethod
    def run_unit(config, key, unit):
        FakeExperiment.calls.append(unit)
        return {"value": float(jax.random.uniform(core.fold(key, unit)))}

    @staticmethod
    def summarize(config, unit_results):
        rows = [{"solver": u, "value": r["value"]} for u, r in unit_results.items()]
        return {
            "summary": {"units": len(rows)},
            "tables": {"solvers": rows},
            "claims": [],
        }


@pytest.fixture
def fake(monkeypatch):
    FakeExperiment.calls = []
    monkeypatch.setitem(EXPERIMENTS, "logistic_fit", FakeExperiment)
    return config.SuiteConfig(
        run=config.RunSection(name="fake"),
        experiments={"logistic_fit": config.LogisticFit(n=50)},
    )


def _records(run_dir):
    return [json.loads(s) for s in (run_dir / "chunks.jsonl").read_text().splitlines()]


def test_a_second_concurrent_resume_is_refused(tmp_path, fake, capsys):
    from experiments import cli

    run_dir, _ = suite.run_suite(fake, out=tmp_path)
    with writers.run_lock(run_dir):  # as if another process were resuming it
        with pytest.raises(writers.RunLocked, match="in use by another mlejax"):
            suite.run_suite(resume=run_dir)
        assert cli.main(["run", "--resume", str(run_dir), "--quiet"]) == 2
        err = capsys.readouterr().err
        assert err.startswith("mlejax: error: ") and str(run_dir) in err
        assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert len(_records(run_dir)) == 4
    suite.run_suite(resume=run_dir)  # the lock goes with its holder
    assert len(_records(run_dir)) == 4 and FakeExperiment.calls == fake_units()


def fake_units():
    return list(FakeExperiment.UNITS)


def test_the_run_lock_holds_across_processes(tmp_path, fake):
    import subprocess
    import sys

    run_dir, _ = suite.run_suite(fake, out=tmp_path)
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import fcntl, os, sys, time; "
            "fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT); "
            "fcntl.flock(fd, fcntl.LOCK_EX); os.ftruncate(fd, 0); "
            "os.write(fd, b'4242'); "
            "print('locked', flush=True); time.sleep(60)",
            str(run_dir / writers.LOCK_NAME),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(writers.RunLocked, match=r"\(pid 4242\)"):
            suite.run_suite(resume=run_dir)
    finally:
        holder.kill()
        holder.wait()
        holder.stdout.close()
    suite.run_suite(resume=run_dir)
    assert len(_records(run_dir)) == 4


def test_resume_refuses_an_edited_config(tmp_path, fake):
    def stop_after_two(exp, unit, result):
        if len(FakeExperiment.calls) == 2:
            raise Crash("simulated kill")

    with pytest.raises(Crash):
        suite.run_suite(fake, out=tmp_path, on_chunk=stop_after_two)
    (run_dir,) = tmp_path.iterdir()
    stored = (run_dir / suite.FINGERPRINT_NAME).read_text().strip()
    assert stored == config.fingerprint(fake)
    text = (run_dir / "config.toml").read_text()
    (run_dir / "config.toml").write_text(text.replace("n = 50", "n = 60"))
    with pytest.raises(config.ConfigError) as exc:
        suite.run_suite(resume=run_dir)
    msg = str(exc.value)
    edited = dataclasses.replace(
        fake, experiments={"logistic_fit": config.LogisticFit(n=60)}
    )
    assert stored in msg and config.fingerprint(edited) in msg
    assert "config.toml" in msg and "\n" not in msg
    assert len(_records(run_dir)) == 2  # nothing mixed in
    # comments and layout are not the config: the original values resume fine
    (run_dir / "config.toml").write_text("# a note\n" + text + "\n\n")
    _, res = suite.run_suite(resume=run_dir)
    assert res["complete"] and FakeExperiment.calls == fake_units()


def test_a_corrupt_middle_line_is_skipped_and_its_unit_redone(tmp_path, fake):
    run_dir, first = suite.run_suite(fake, out=tmp_path)
    lines = (run_dir / "chunks.jsonl").read_text().splitlines()
    lines[1] = lines[1][:25] + "\x00garbage"  # unit u1's record, mangled
    lines.insert(3, lines[2])  # and a duplicate of u2's (an old concurrent resume)
    (run_dir / "chunks.jsonl").write_text("\n".join(lines) + "\n")
    said = []
    FakeExperiment.calls = []
    _, res = suite.run_suite(resume=run_dir, notify=said.append)
    assert FakeExperiment.calls == ["u1"]  # only the lost unit is redone
    recs = _records(run_dir)
    assert sorted(r["unit"] for r in recs) == fake_units()
    assert res["experiments"]["logistic_fit"] == {
        **first["experiments"]["logistic_fit"],
        "seconds": res["experiments"]["logistic_fit"]["seconds"],
    }
    assert any("line 2 is not a valid unit record" in m for m in said), said
    assert any("duplicate" in m and "line(s) 4" in m for m in said), said
    assert "garbage" in (run_dir / "chunks.jsonl.corrupt").read_text()
    said.clear()
    suite.run_suite(resume=run_dir, notify=said.append)  # repaired: nothing to say
    assert said == [] and len(_records(run_dir)) == 4


def test_complete_is_written_only_after_the_report(tmp_path, fake, monkeypatch):
    from experiments import report

    def no_report(*args):
        raise Crash("report failed")

    monkeypatch.setattr(report, "render", no_report)
    with pytest.raises(Crash):
        suite.run_suite(fake, out=tmp_path)
    (run_dir,) = tmp_path.iterdir()
    assert not (run_dir / "report.md").exists()
    res = json.loads((run_dir / "results.json").read_text())
    assert res["complete"] is False and len(res["experiments"]) == 1
    assert suite.find_runs(fake, tmp_path) == [(run_dir, False)]
    # a results.json that claims completion without a report is not complete
    writers.write_json(run_dir / "results.json", {**res, "complete": True})
    assert suite.find_runs(fake, tmp_path) == [(run_dir, False)]
    monkeypatch.undo()
    monkeypatch.setitem(EXPERIMENTS, "logistic_fit", FakeExperiment)
    suite.run_suite(resume=run_dir)
    assert (run_dir / "report.md").exists()
    assert suite.find_runs(fake, tmp_path) == [(run_dir, True)]
