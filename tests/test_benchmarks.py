"""The benchmark harness runs end to end on tiny sizes (no timing assertions).

The peers come from optional extras: statsmodels and scikit-learn from
``compare``, glum only from ``bench``. A workload test whose peers are not
installed is skipped with the missing package named, not failed.
"""

from __future__ import annotations

import json

import jax
import numpy as np
import pytest

from benchmarks import (
    data,
    floors,
    loglik,
    peers,
    report,
    run,
    startup,
    timing,
    workloads,
)

FLOOR = {
    "bandwidth": {"bytes": 1, "GBps": 10.0, "sum_GBps": 10.0, "gemv_GBps": 10.0},
    "gemm": {"size": 1, "GFLOPs": 10.0},
}


@pytest.fixture(autouse=True, scope="module")
def _x64():
    old = jax.config.jax_enable_x64
    jax.config.update("jax_enable_x64", True)
    yield
    jax.config.update("jax_enable_x64", old)


def _quiet(*_):
    pass


def _require(*packages):
    """Skip the calling test unless every peer package is importable."""
    for name in packages:
        pytest.importorskip(name, reason=f"{name}: a benchmark peer (bench extra)")


def _check_rows(w, n_rows):
    assert len(w["rows"]) == n_rows
    for r in w["rows"]:
        assert r["status"] in {"OK", "REF"}, (r["method"], r["status"], r.get("error"))
        assert r["median_s"] is not None and r["median_s"] > 0
    mj = [r for r in w["rows"] if r["is_mlejax"]]
    assert len(mj) == 1 and mj[0]["ratio_to_fastest_peer"] is not None
    assert w["floor"]["floor_s"] > 0


def test_floors_small():
    bw = floors.memory_bandwidth(8_000_000, repeats=1)
    gm = floors.gemm_peak(128, repeats=1)
    assert bw["GBps"] > 0 and gm["GFLOPs"] > 0
    assert floors.pass_time(FLOOR, 10e9, 1.0) == pytest.approx(1.0)


def test_loglik_functions_match_closed_forms():
    X, y, beta = data.logistic(500, 3)
    eta = X @ beta
    assert loglik.bernoulli(X, y, beta) == pytest.approx(
        np.sum(y * eta - np.log1p(np.exp(eta))), rel=1e-12
    )
    Xp, yp, bp = data.poisson(500, 3)
    assert np.isfinite(loglik.poisson(Xp, yp, bp))
    Xg, yg, bg = data.least_squares(500, 3)
    assert np.isfinite(loglik.gaussian(Xg, yg, bg))
    assert loglik.rel_diff(1.0, 1.0) == 0.0


def test_glm_workloads_tiny():
    _require("statsmodels", "sklearn", "glum")
    X, y, _ = data.logistic(3000, 4)
    w1 = workloads.w1(3000, 4, FLOOR, repeats=1, budget_s=60, log=_quiet, X=X, y=y)
    _check_rows(w1, 6)
    w5 = workloads.w5(3000, 4, FLOOR, repeats=1, log=_quiet, X=X, y=y)
    assert [r["status"] for r in w5["rows"]] == ["OK", "OK", "OK", "REF"]
    w2 = workloads.w2(3000, 4, FLOOR, repeats=1, budget_s=60, log=_quiet)
    _check_rows(w2, 6)


def test_least_squares_tiny():
    _require("statsmodels", "sklearn")
    w3 = workloads.w3(2000, 6, FLOOR, repeats=1, budget_s=60, log=_quiet)
    _check_rows(w3, 7)


@pytest.mark.slow
def test_custom_likelihood_w6_tiny():
    _require("statsmodels", "scipy", "lifelines", "pandas")
    from benchmarks import survival

    X, y, _ = survival.weibull_aft(800, 3)
    assert abs(np.mean(y[:, 1]) - 0.7) < 0.05  # 30% censored
    w6 = survival.w6(800, 3, FLOOR, repeats=1, budget_s=60, log=_quiet, cold=False)
    st = {r["method"]: r["status"] for r in w6["rows"]}
    assert len(st) == 7 and st.pop("mlejax fit_likelihood (generic)") == "REF"
    # statsmodels' Newton from zeros may end on NaN (reported WRONG, not hidden)
    st.pop("statsmodels GenericLikelihoodModel newton")
    assert set(st.values()) == {"OK"}, w6["rows"]
    mj = w6["rows"][0]
    assert mj["is_mlejax"] and mj["se_rel_diff"] < 1e-8
    assert mj["ratio_to_fastest_peer"] is not None


def test_extrapolation_and_wrong_rows():
    # budget 0 forces every peer onto the 1/10 subset (extrapolated rows)
    X, y, _ = data.least_squares(4000, 5)
    bad = peers.Method("bad", lambda X, y: peers.Outcome(np.zeros(X.shape[1])))
    methods = [peers.np_lstsq(), peers.normal_cholesky(), bad]
    rows = timing.time_methods(methods, X, y, repeats=2, budget_s=0.0, log=_quiet)
    assert all(r.n_used == 400 and r.scale == 10 and len(r.times) == 2 for r in rows)
    timing.check_agreement(rows, X, y, loglik.gaussian, lambda k: None)
    assert [r.status for r in rows] == ["OK", "OK", "WRONG"]


def test_many_fits_tiny():
    _require("statsmodels", "sklearn")
    w4 = workloads.w4(16, 200, 5, 4, FLOOR, repeats=1, log=_quiet)
    _check_rows(w4, 4)
    assert w4["rows"][0]["fraction_converged"] == 1.0
    b = w4["batched"]  # the plain vmap Newton baseline and HC0, same process
    assert b["ratio_to_plain"] > 0 and b["ratio_to_plain_hc0"] > 0
    assert b["max_abs_diff_params"] < 1e-8


def test_report_and_cli_pieces(tmp_path):
    row = {
        "method": "mlejax fit",
        "is_mlejax": True,
        "status": "OK",
        "median_s": 1.0,
        "compile_s": 2.0,
        "first_call_s": 3.0,
        "n_iter": 5,
        "extrapolated": False,
    }
    peer = dict(row, method="peer", is_mlejax=False, median_s=0.5, extrapolated=True)
    w = {
        "id": "W1",
        "title": "logistic regression",
        "n": 10,
        "p": 2,
        "floor": {"floor_s": 0.1, "assumption": "test"},
        "rows": workloads._finish([row, peer], 0.1),
    }
    assert w["rows"][0]["ratio_to_fastest_peer"] == pytest.approx(2.0)
    res = {
        "meta": {
            "quick": True,
            "threads": 1,
            "cpu_model": "test",
            "cpus_online": 1,
            "affinity": [0],
            "mem_gib": 1.0,
            "versions": {"numpy": np.__version__},
            "thread_env": run.thread_env(1),
            "floors": FLOOR,
            "total_s": 0.0,
        },
        "workloads": [w],
        "startup": {
            "mlejax": {
                "wall_s": [1.0],
                "median_wall_s": 1.0,
                "median_import_s": 0.5,
                "median_fit_s": 0.5,
            }
        },
    }
    md = report.markdown(res)
    assert "W1" in md and "Time to a first small fit" in md
    (tmp_path / "r.json").write_text(json.dumps(res, default=float))
    env = run.thread_env(1)
    assert env["OMP_NUM_THREADS"] == "1" and "eigen=false" in env["XLA_FLAGS"]
    for imports, fit in startup.SCRIPTS.values():
        compile(startup.script(imports, fit), "<startup>", "exec")
    assert run.sizes(True)["W1"] == (100_000, 50)
