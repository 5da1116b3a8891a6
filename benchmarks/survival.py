"""W6: a custom likelihood — Weibull accelerated-failure-time regression with
about 30% right censoring, through ``mj.fit_likelihood(..., linear=...)``.

Model: ``log T = X @ beta + sigma W``, ``W`` standard minimum-Gumbel, so
``S(t) = exp(-(t / exp(eta))^(1/sigma))``; parameters ``[beta..., log sigma]``.
Peers: lifelines' ``WeibullAFTFitter`` (autograd; its ``lambda_`` is
``exp(X beta)`` and its ``rho_ = 1/sigma``: ``log sigma = -rho_ intercept``),
statsmodels ``GenericLikelihoodModel`` (``newton`` and ``bfgs``, numerical
derivatives), and ``scipy.optimize.minimize`` (BFGS, L-BFGS-B) with a
hand-written NumPy gradient. Every row's log-likelihood is recomputed by one
NumPy function; standard errors are compared with the closed-form inverse
Hessian (NumPy) at mlejax's MLE. A separate fresh process with an empty
compilation cache measures mlejax's cold first call.
"""

from __future__ import annotations

import functools
import os
import subprocess
import sys
import tempfile
import warnings

import numpy as np

from benchmarks import data, floors
from benchmarks.peers import Method, Outcome, _unavailable
from benchmarks.timing import check_agreement, time_methods
from benchmarks.workloads import TOL, _finish, _row_dict


def weibull_aft(n: int, p: int, seed: int = data.SEED + 6):
    """X (n, p) with intercept, y = (n, 2): [time, event]; ~30% censored."""
    rng = np.random.default_rng(seed)
    X = data._design(rng, n, p)
    beta = 0.5 * data._coef(rng, p)
    beta[0] = 1.0
    sigma = 0.7
    T = np.exp(X @ beta + sigma * np.log(rng.exponential(size=n)))
    # exponential censoring with its scale set for a 30% censored fraction
    # (the fraction is monotone in the scale: bisection on log scale)
    u = rng.exponential(size=n)
    lo, hi = -10.0, 10.0
    for _ in range(60):
        mid = 0.5 * (lo + hi)
        frac = np.mean(T > np.exp(mid) * u)
        lo, hi = (mid, hi) if frac > 0.3 else (lo, mid)
    C = np.exp(hi) * u
    y = np.column_stack([np.minimum(T, C), (T <= C).astype(np.float64)])
    return X, y, np.r_[beta, np.log(sigma)]


def np_loglik(X, y, theta):
    t, d = y[:, 0], y[:, 1]
    ls = theta[-1]
    z = (np.log(t) - X @ theta[:-1]) * np.exp(-ls)
    return float(np.sum(d * (z - ls - np.log(t)) - np.exp(z)))


def np_grad(X, y, theta):
    t, d = y[:, 0], y[:, 1]
    s = np.exp(theta[-1])
    z = (np.log(t) - X @ theta[:-1]) / s
    r = np.exp(z) - d
    return np.r_[X.T @ (r / s), np.sum(z * r - d)]


def np_hessian(X, y, theta):
    """Closed-form Hessian of the log-likelihood in (beta, log sigma)."""
    t, d = y[:, 0], y[:, 1]
    s = np.exp(theta[-1])
    z = (np.log(t) - X @ theta[:-1]) / s
    ez = np.exp(z)
    h_ee = -ez / s**2
    h_es = -(z * ez + ez - d) / s
    h_ss = np.sum(-z * (ez - d) - z**2 * ez)
    top = np.column_stack([X.T @ (X * h_ee[:, None]), X.T @ h_es])
    return np.vstack([top, np.r_[X.T @ h_es, h_ss]])


# ---------------------------------------------------------------- methods


@functools.cache
def _jax_loglik():
    """One function object per process, so every call reuses the compiled fit."""
    import jax.numpy as jnp

    def aft_loglik(params, X, t, d):
        ls = params["log_sigma"]
        z = (jnp.log(t) - X @ params["beta"]) * jnp.exp(-ls)
        return jnp.sum(d * (z - ls - jnp.log(t)) - jnp.exp(z))

    return aft_loglik


def _mlejax_method(name: str, linear: dict | None, **method_kw) -> Method:
    """mlejax's fit of the AFT model, with or without the ``linear=`` declaration."""
    try:
        import mlejax as mj

        aft_loglik = _jax_loglik()
    except Exception as exc:
        return _unavailable(name, exc)
    kw = {} if linear is None else {"linear": linear}

    def fit(X, y):
        p0 = {"beta": np.zeros(X.shape[1]), "log_sigma": 0.0}
        res = mj.fit_likelihood(aft_loglik, p0, X, y[:, 0], y[:, 1], **kw)
        coef = np.r_[np.asarray(res.params["beta"]), float(res.params["log_sigma"])]
        out = Outcome(coef, float(res.n_iter), bool(res.converged))
        out.se = np.r_[np.asarray(res.stderr["beta"]), float(res.stderr["log_sigma"])]
        return out

    return Method(name, fit, **method_kw)


def mlejax_aft() -> Method:
    return _mlejax_method("mlejax fit_likelihood(linear=)", {"beta": 0}, is_mlejax=True)


def mlejax_generic() -> Method:
    """The same likelihood without ``linear=`` (autodiff Hessian of the total)."""
    return _mlejax_method("mlejax fit_likelihood (generic)", None)


def lifelines_aft() -> Method:
    name = "lifelines WeibullAFTFitter"
    try:
        import pandas as pd
        from lifelines import WeibullAFTFitter
    except Exception as exc:
        return _unavailable(name, exc)

    def fit(X, y):
        cols = [f"x{j}" for j in range(1, X.shape[1])]
        df = pd.DataFrame(X[:, 1:], columns=cols)
        df["T"], df["E"] = y[:, 0], y[:, 1]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            m = WeibullAFTFitter(penalizer=0.0).fit(df, "T", "E")
        lam = m.params_["lambda_"]
        rho = m.params_["rho_"]
        coef = np.r_[lam["Intercept"], lam[cols].to_numpy(), -rho["Intercept"]]
        se_l = m.standard_errors_["lambda_"]
        se = np.r_[
            se_l["Intercept"],
            se_l[cols].to_numpy(),
            m.standard_errors_["rho_"]["Intercept"],
        ]
        out = Outcome(coef, None, True)
        out.se = se
        return out

    return Method(name, fit)


def sm_generic(method: str) -> Method:
    name = f"statsmodels GenericLikelihoodModel {method}"
    try:
        from statsmodels.base.model import GenericLikelihoodModel
    except Exception as exc:
        return _unavailable(name, exc)

    class AFT(GenericLikelihoodModel):
        def loglikeobs(self, params):
            t, d = self.endog[:, 0], self.endog[:, 1]
            ls = params[-1]
            z = (np.log(t) - self.exog @ params[:-1]) * np.exp(-ls)
            return d * (z - ls - np.log(t)) - np.exp(z)

    def fit(X, y):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            m = AFT(y, X, extra_params_names=["log_sigma"])
            kw = {"gtol": 1e-8} if method == "bfgs" else {}
            r = m.fit(
                start_params=np.zeros(X.shape[1] + 1),
                method=method,
                maxiter=1000,
                disp=0,
                **kw,
            )
        conv = r.mle_retvals.get("converged")
        out = Outcome(np.asarray(r.params), r.mle_retvals.get("iterations"), conv)
        out.se = np.asarray(r.bse)
        return out

    return Method(name, fit)


def scipy_handwritten(method: str) -> Method:
    name = f"scipy {method} + hand-written NumPy gradient"
    try:
        import scipy.optimize
    except Exception as exc:
        return _unavailable(name, exc)

    def fit(X, y):
        n = X.shape[0]

        def f(th):
            return -np_loglik(X, y, th) / n

        def g(th):
            return -np_grad(X, y, th) / n

        opts = (
            {"gtol": 1e-10, "maxiter": 10_000}
            if method == "BFGS"
            else {"gtol": 1e-10, "ftol": 1e-15, "maxiter": 10_000}
        )
        r = scipy.optimize.minimize(
            f, np.zeros(X.shape[1] + 1), jac=g, method=method, options=opts
        )
        out = Outcome(np.asarray(r.x), float(r.nit), bool(r.success))
        if method == "BFGS":  # the quasi-Newton inverse Hessian (an approximation)
            out.se = np.sqrt(np.diag(r.hess_inv) / n)
        return out

    return Method(name, fit)


def cold_first_call(n: int, p: int) -> float | None:
    """mlejax's first W6 fit in a fresh process with an empty compile cache (s)."""
    code = (
        "import time, numpy as np, jax; jax.config.update('jax_enable_x64', True)\n"
        "from benchmarks import survival\n"
        f"X, y, _ = survival.weibull_aft({n}, {p})\n"
        "m = survival.mlejax_aft()\n"
        "t0 = time.perf_counter(); m.fit(X, y); print(time.perf_counter() - t0)\n"
    )
    with tempfile.TemporaryDirectory() as cache:
        env = dict(os.environ, MLEJAX_COMPILATION_CACHE=cache)
        env.pop("JAX_COMPILATION_CACHE_DIR", None)
        try:
            out = subprocess.run(
                [sys.executable, "-c", code],
                env=env,
                capture_output=True,
                text=True,
                timeout=300,
                cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
            )
            return float(out.stdout.strip().splitlines()[-1])
        except Exception:
            return None


def w6(
    n, p, floor, *, repeats, budget_s, phase_budget_s=None, log=print, cold=True
) -> dict:
    X, y, _ = weibull_aft(n, p)
    log(f"W6: Weibull AFT, {100 * (1 - y[:, 1].mean()):.0f}% censored (n={n:,}, p={p})")
    methods = [
        mlejax_aft(),
        mlejax_generic(),
        lifelines_aft(),
        sm_generic("newton"),
        sm_generic("bfgs"),
        scipy_handwritten("BFGS"),
        scipy_handwritten("L-BFGS-B"),
    ]
    rows = time_methods(
        methods,
        X,
        y,
        repeats=repeats,
        budget_s=budget_s,
        phase_budget_s=phase_budget_s,
        log=log,
    )
    mj_row = next((r for r in rows if r.is_mlejax and r.outcome is not None), None)
    ref_coef = {n: mj_row.outcome.coef} if mj_row is not None else {}

    def ref(k):
        if k not in ref_coef and methods[0].available:
            ref_coef[k] = methods[0].fit(X[:k], y[:k]).coef
        return ref_coef.get(k)

    check_agreement(rows, X, y, np_loglik, ref, TOL)
    # standard errors against the exact (closed-form) Hessian at mlejax's MLE
    se_ref = None
    if mj_row is not None:
        H = np_hessian(X, y, mj_row.outcome.coef)
        se_ref = np.sqrt(np.diag(np.linalg.inv(-H)))
    rows_d = []
    for r in rows:
        d = _row_dict(r)
        if "(generic)" in r.method and d["status"] == "OK":
            d["status"] = "REF"  # mlejax before linear=, not a peer
            d["note"] = "the same fit without linear= (not a peer)"
        se = getattr(r.outcome, "se", None) if r.outcome is not None else None
        d["se_rel_diff"] = None
        if se is not None and se_ref is not None and r.n_used == n:
            d["se_rel_diff"] = float(np.max(np.abs(se - se_ref) / se_ref))
            msg = f"stderr rel. diff {d['se_rel_diff']:.1e} vs exact Hessian"
            d["note"] = msg + ("; " + d["note"] if d["note"] else "")
        rows_d.append(d)
    cold_s = cold_first_call(n, p) if (cold and methods[0].available) else None
    if cold_s is not None:
        for d in rows_d:
            if d["is_mlejax"]:
                d["cold_first_call_s"] = cold_s
                d["note"] = (
                    f"cold first call {cold_s:.2f} s (fresh process, empty cache); "
                    + d["note"]
                )
    k = _second_order_min_iter_aft(rows_d)
    one = floors.pass_time(floor, X.nbytes, n * p * p)
    return {
        "id": "W6",
        "title": "Weibull AFT, 30% censored (custom likelihood)",
        "n": n,
        "p": p,
        "family": "custom",
        "reference": "mlejax",
        "floor": {
            "floor_s": k * one,
            "pass_s": one,
            "passes": k,
            "assumption": (
                f"{k} Newton iterations (mlejax's), each at least one read of X "
                f"({X.nbytes / 1e6:.0f} MB) and one Gram X'WX (n p^2 = "
                f"{n * p * p:.3g} flops); floor = passes * max(bytes/bandwidth, "
                "flops/peak)"
            ),
        },
        "rows": _finish(rows_d, k * one),
    }


def _second_order_min_iter_aft(rows) -> int:
    its = [r["n_iter"] for r in rows if r["is_mlejax"] and r["n_iter"]]
    return int(min(its)) if its else 1
