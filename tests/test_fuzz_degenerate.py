"""Property-based fuzzing of degenerate designs and data, for every family.

One generator, :func:`make_case`, builds a ``Case`` of a given kind: a
well-posed problem (``good``) or a degenerate one (duplicated, zero, constant
or badly scaled columns; constant, separated or badly scaled responses; an
empty class; no overdispersion; NaN/inf planted in ``X``, ``y``, ``weights``
or ``offset``; negative or zero weights; ``y`` outside the support). One
checker, :func:`check_fit`, states what the contract allows for it:

* eagerly: a ``ValueError``/``TypeError`` (required for invalid input and
  rank deficiency, allowed where the MLE does not exist), or a ``FitResult``;
* under ``jax.jit`` and ``jax.vmap`` no error can be raised, so invalid input
  and rank deficiency must come back as ``converged=False``;
* ``converged=False`` always with a known, non-``CONVERGED`` ``mj.Status``
  (any such status counts as "reported"; which one is collected and printed
  with ``-v``), and eagerly with a warning;
* never ``converged=True`` where the MLE does not exist, nor with non-finite
  params/stderr/loglik (the documented Gaussian and Laplace exact fit aside:
  loglik +inf, scale 0, stderr 0), nor at an answer that is not a maximum: the score of
  ``sum(w * family.log_prob(y, X @ params + offset, **extra))`` by autodiff must
  be small against the sum of the absolute per-observation scores (scale-free,
  so a tiny or huge column cannot hide a non-stationary answer), the loglik must
  be the reported one, and no small random perturbation may raise it;
* in a vmapped batch ``[good, case, good]`` the good members equal their eager
  fits (params to rtol 1e-8) whatever the middle member holds.

Compile cost dominates (a cold compile of one family/solver/transform is
2-10 s of CPU), so every case has the same shape ``N x P`` = 20 x 3 (that of
``problems.glm_problems``, so the eager fits are shared with the rest of the
suite) and each (family, solver, transform) compiles once. The default run
covers the ``FAST`` combinations with ``FAST_EXAMPLES`` examples per case
kind; ``-m slow`` runs the full matrix (9 families x 2 solvers x 3
transforms) with ``SLOW_EXAMPLES``. ``MLEJAX_FUZZ_REPORT=path`` writes the
tally of outcomes (one count per fit checked) as JSON at the end of the module
(under xdist one file per worker: ``path.gw0``, ...).
"""

from __future__ import annotations

import functools
import json
import os
import re
import warnings
from collections import Counter
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

import mlejax as mj

F = mj.families
N, P = 20, 3
BETA = np.array([0.3, -0.6, 0.4])
FAMILIES = {
    "Gaussian": F.Gaussian(),
    "Bernoulli": F.Bernoulli(),
    "Binomial": F.Binomial(),
    "Categorical": F.Categorical(3),
    "Poisson": F.Poisson(),
    "Laplace": F.Laplace(),
    "StudentT": F.StudentT(),
    "Gamma": F.Gamma(),
    "NegativeBinomial": F.NegativeBinomial(),
}
SOLVERS = ("newton", "lbfgs")
TRANSFORMS = ("eager", "jit", "vmap")
#: the combinations of the default (fast) run; everything else is ``slow``.
#: Chosen by compile cost: the eager Newton fits are shared with other files.
FAST = {
    ("Bernoulli", "newton", "eager"),
    ("Poisson", "newton", "jit"),
}
#: examples per (combination, kind); MLEJAX_FUZZ_EXAMPLES overrides both, and
#: MLEJAX_FUZZ_SHRINK=0 skips hypothesis' shrinking (a quicker survey of failures)
FAST_EXAMPLES = int(os.environ.get("MLEJAX_FUZZ_EXAMPLES", 2))
SLOW_EXAMPLES = int(os.environ.get("MLEJAX_FUZZ_EXAMPLES", 10))
PHASES = (
    [Phase.explicit, Phase.reuse, Phase.generate]
    if os.environ.get("MLEJAX_FUZZ_SHRINK") == "0"
    else list(Phase)
)
#: XLA's backend optimisation off for our own jit wrappers: half the compile
#: time, same semantics (mj.fit does the same for its eager fits).
QUICK = {"xla_backend_optimization_level": 0}

REAL = ("Gaussian", "Laplace", "StudentT")
DISCRETE = ("Bernoulli", "Binomial", "Categorical", "Poisson", "NegativeBinomial")
#: families whose ``good`` data are well-posed by construction (see good_data):
#: a fit that does not converge there is a failure. StudentT's df and the
#: NegativeBinomial's alpha can legitimately run to their bounds on 20 rows;
#: a first-order solver cannot certify Laplace's kinked maximum (it reports
#: NOT_MAXIMUM, eagerly and under every transform).
GUARANTEED = (
    "Gaussian",
    "Bernoulli",
    "Binomial",
    "Categorical",
    "Poisson",
    "Laplace",
    "Gamma",
)

RANK = r"rank|collinear"
#: families whose exact fit (all residuals 0) is the documented converged fit
#: with scale 0, stderr 0 and loglik +inf (README; API contract for Gaussian)
EXACT = ("Gaussian", "Laplace")


class Spec(NamedTuple):
    """What a case kind allows.

    error: a regex that an eager ``ValueError`` must match, required (the host
      checks must reject such input); None: no error required.
    may_error: an eager ``ValueError``/``TypeError`` is acceptable (the MLE does
      not exist; refusing before fitting is allowed by the contract).
    no_mle: the MLE does not exist: ``converged`` must be False.
    families: the families the kind applies to (None: all).
    """

    error: str | None = None
    may_error: bool = False
    no_mle: bool = False
    families: tuple[str, ...] | None = None


KINDS = {
    "good": Spec(),
    "dup_col": Spec(error=RANK),
    "zero_col": Spec(error=RANK),
    "const_col": Spec(error=RANK),
    # Full rank, judged after equilibration; eagerly fitted after an exact
    # power-of-two column scaling (beyond about 1e+-154 the squares of such a
    # column leave the float64 range). Never an error, never a wrong "converged".
    "tiny_col": Spec(),
    "huge_col": Spec(),
    "zero_weights": Spec(),
    "few_pos_weights": Spec(error=r"parameters|observations|identif|rank"),
    "all_zero_weights": Spec(error=r"parameters|observations|weight"),
    "neg_weight": Spec(error=r"weights"),
    "nonfinite_X": Spec(error=r"\bX\b.*non-finite"),
    "nonfinite_y": Spec(error=r"\by\b.*non-finite"),
    "nonfinite_weights": Spec(error=r"weights.*non-finite"),
    "nonfinite_offset": Spec(error=r"offset.*non-finite"),
    "bad_support": Spec(
        error=r"\by\b", families=tuple(f for f in FAMILIES if f not in REAL)
    ),
    "const_y": Spec(may_error=True, no_mle=True),  # EXACT families: the exact fit
    "separated": Spec(may_error=True, no_mle=True, families=DISCRETE),
    "empty_class": Spec(may_error=True, no_mle=True, families=("Categorical",)),
    "no_overdispersion": Spec(families=("NegativeBinomial", "StudentT")),
    "y_scale": Spec(families=REAL + ("Gamma",)),
}


def guaranteed(family: str, solver: str) -> bool:
    """Whether ``good`` data must converge with this solver."""
    return family in GUARANTEED and not (family == "Laplace" and solver == "lbfgs")


def kinds_for(family: str) -> list[str]:
    return [k for k, s in KINDS.items() if s.families is None or family in s.families]


class Case(NamedTuple):
    kind: str
    X: np.ndarray
    y: np.ndarray
    weights: np.ndarray
    offset: np.ndarray
    trials: np.ndarray | None


# ----------------------------------------------------------------------------
# the generator
# ----------------------------------------------------------------------------
def good_data(family: str, rng: np.random.Generator, offset_sd: float = 0.0):
    """``(X, y, offset, trials)``: a problem whose MLE exists for sure.

    The discrete families get rows that rule separation out: Bernoulli pairs of
    identical ``x`` with both labels, Binomial ``0 < y < trials`` and Poisson
    ``y > 0`` on rows spanning R^3, Categorical three ``x`` each seen with all
    three classes.
    """
    X = np.column_stack([np.ones(N), rng.normal(size=(N, P - 1))])
    offset = offset_sd * rng.normal(size=N)
    eta = X @ BETA + offset
    mu = np.exp(eta)
    p1 = 1.0 / (1.0 + np.exp(-eta))
    trials = None
    if family == "Gaussian":
        y = eta + rng.normal(size=N)
    elif family == "Bernoulli":
        y = (rng.uniform(size=N) < p1).astype(float)
        X[4:8] = X[0:4]
        y[4:8] = 1.0 - y[0:4]
    elif family == "Binomial":
        trials = rng.integers(2, 9, N).astype(float)
        y = rng.binomial(trials.astype(int), p1).astype(float)
        y[:4] = np.clip(y[:4], 1, trials[:4] - 1)
    elif family == "Categorical":
        eta3 = np.column_stack([eta, X @ np.array([-0.2, 0.5, 0.3]) + offset])
        logits = np.column_stack([np.zeros(N), eta3])
        pr = np.exp(logits - logits.max(1, keepdims=True))
        pr /= pr.sum(1, keepdims=True)
        y = np.array([rng.choice(3, p=q) for q in pr], float)
        X[3:6] = X[0:3]
        X[6:9] = X[0:3]
        y[0:9] = np.repeat([0.0, 1.0, 2.0], 3)
    elif family == "Poisson":
        y = np.maximum(rng.poisson(mu), [1] * 4 + [0] * (N - 4)).astype(float)
    elif family == "NegativeBinomial":
        alpha = 1.0
        y = rng.negative_binomial(1 / alpha, 1 / (1 + alpha * mu)).astype(float)
        y = np.maximum(y, [1] * 4 + [0] * (N - 4))
        y[4], y[5] = 0.0, y[5] + 12.0  # clearly overdispersed
    elif family == "Laplace":
        y = eta + rng.laplace(size=N)
    elif family == "StudentT":
        y = eta + rng.standard_t(3, N)
        y[0], y[1] = y[0] + 8.0, y[1] - 9.0  # heavy tails: df stays finite
    elif family == "Gamma":
        y = rng.gamma(3.0, mu / 3.0)
    else:  # pragma: no cover
        raise AssertionError(family)
    return X, y, offset, trials


#: what one hypothesis example draws: a seed and the knobs a kind may use
KNOBS = st.fixed_dictionaries(
    {
        "seed": st.integers(0, 2**32 - 1),
        "col": st.integers(1, P - 1),
        "row": st.integers(0, N - 1),
        "expo": st.integers(8, 170),
        "sign": st.sampled_from([1.0, -1.0]),
        "value": st.sampled_from([np.nan, np.inf, -np.inf]),
        "factor": st.sampled_from([1.0, -3.7, 1e-3, 2.0**40]),
        "offset_sd": st.sampled_from([0.0, 0.3]),
        "variant": st.integers(0, 2),
    }
)


def make_case(family: str, kind: str, k: dict) -> Case:
    """The data of one case of ``kind`` for ``family``, from the knobs ``k``."""
    rng = np.random.default_rng(k["seed"])
    X, y, offset, trials = good_data(family, rng, k["offset_sd"])
    w = np.ones(N)
    j, i, v = k["col"], k["row"], k["variant"]
    other = P - j  # the other non-constant column (P = 3: 1 <-> 2)
    if kind == "good":
        pass
    elif kind == "dup_col":
        X[:, j] = k["factor"] * X[:, other]
    elif kind == "zero_col":
        X[:, j] = 0.0
    elif kind == "const_col":
        X[:, j] = k["factor"]
    elif kind == "tiny_col":
        X[:, j] *= 10.0 ** -k["expo"]
    elif kind == "huge_col":
        X[:, j] *= 10.0 ** k["expo"]
    elif kind == "zero_weights":
        m = 1 + i % (N - 6)  # 1 .. N-6 rows weighted zero; the rest > 0
        w = rng.uniform(0.5, 3.0, N)
        w[rng.permutation(N)[:m]] = 0.0
    elif kind == "few_pos_weights":
        w = np.zeros(N)
        w[[i, (i + 1) % N]] = 1.0
    elif kind == "all_zero_weights":
        w = np.zeros(N)
    elif kind == "neg_weight":
        w[i] = -k["factor"] if k["factor"] > 0 else k["factor"]
    elif kind == "nonfinite_X":
        X[i, (j + v) % P] = k["value"]  # any column, the intercept too
    elif kind == "nonfinite_y":
        y[i] = k["value"]
    elif kind == "nonfinite_weights":
        w[i] = k["value"]
    elif kind == "nonfinite_offset":
        offset[i] = k["value"]
    elif kind == "bad_support":
        y[i] = {
            "Bernoulli": [2.0, -1.0, 0.5][v],
            "Binomial": [-1.0, 0.5, 1.0 + (trials[i] if trials is not None else 0)][v],
            "Categorical": [3.0, -1.0, 1.5][v],
            "Poisson": [-1.0, 0.5, -2.5][v],
            "NegativeBinomial": [-1.0, 0.5, -2.5][v],
            "Gamma": [0.0, -1.0, -1e-300][v],
        }[family]
    elif kind == "const_y":
        c = k["factor"] * k["sign"]
        offset[:] = 0.0  # else a constant y is not an exact fit
        if family in REAL:
            y[:] = c
        elif family == "Gamma":
            y[:] = abs(c)
        elif family == "Bernoulli":
            y[:] = float(v % 2)
        elif family == "Binomial":
            y[:] = 0.0 if v % 2 == 0 else trials
        elif family == "Categorical":
            y[:] = float(v)
        else:  # counts: all zero (the intercept runs to -inf)
            y[:] = 0.0
    elif kind == "separated":
        if v == 0 and family in ("Bernoulli", "Binomial", "Categorical"):
            # complete separation by a threshold (tertiles for Categorical)
            x = X[:, j]
            if family == "Bernoulli":
                y = (x > np.median(x)).astype(float)
            elif family == "Binomial":
                y = np.where(x > np.median(x), trials, 0.0)
            else:
                y = np.digitize(x, np.quantile(x, [1 / 3, 2 / 3])).astype(float)
        else:
            # quasi-complete: an indicator column with y at its lower bound
            S = rng.permutation(N)[: 3 + i % 8]
            X[:, j] = 0.0
            X[S, j] = 1.0
            y[S] = 0.0
    elif kind == "empty_class":
        y[y == v] = (v + 1) % 3  # class v never observed
    elif kind == "no_overdispersion":
        eta = X @ BETA + offset
        if family == "NegativeBinomial":
            mu = np.exp(eta)
            y = np.round(mu) if v == 0 else rng.poisson(mu).astype(float)
            y[:4] = np.maximum(y[:4], 1.0)
        else:  # StudentT on Gaussian noise: df runs to its bound
            y = eta + rng.normal(size=N)
    elif (
        kind == "y_scale"
    ):  # past 1e154 a naive RSS overflows, below 1e-154 it underflows
        c = 10.0 ** (k["sign"] * k["expo"])
        y = y * c
        offset = offset * c if family in REAL else offset + np.log(c)
    else:  # pragma: no cover
        raise AssertionError(kind)
    return Case(kind, X, y, w, offset, trials)


# ----------------------------------------------------------------------------
# fitting, eagerly and under the transforms
# ----------------------------------------------------------------------------
MJ_WARNINGS = (mj.ConvergenceWarning, mj.PerfectSeparationWarning)


def fit_eager(family: str, solver: str, case: Case):
    """``(result or exception, [warnings])`` of an eager ``mj.fit``."""
    with warnings.catch_warnings(record=True) as ws:
        warnings.simplefilter("always")
        try:
            res = mj.fit(
                case.X,
                case.y,
                FAMILIES[family],
                solver=solver,
                weights=case.weights,
                offset=case.offset,
                trials=case.trials,
            )
        except (ValueError, TypeError) as e:
            return e, list(ws)
    return res, list(ws)


@functools.cache
def transformed(family: str, solver: str, transform: str):
    """``mj.fit`` under ``jax.jit``, or under ``jax.jit(jax.vmap(...))``."""
    fam = FAMILIES[family]

    def one(X, y, w, off, trials):
        return mj.fit(X, y, fam, solver=solver, weights=w, offset=off, trials=trials)

    return jax.jit(
        jax.vmap(one) if transform == "vmap" else one, compiler_options=QUICK
    )


def _args(cases):
    """Stack the cases' arrays (one case: as they are) for ``transformed``."""
    if len(cases) == 1:
        c = cases[0]
        return (c.X, c.y, c.weights, c.offset, c.trials)
    tr = None if cases[0].trials is None else np.stack([c.trials for c in cases])
    return tuple(
        np.stack([getattr(c, a) for c in cases])
        for a in ("X", "y", "weights", "offset")
    ) + (tr,)


def fit_transformed(family: str, solver: str, transform: str, cases):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # no warnings are promised under a trace
        return transformed(family, solver, transform)(*_args(cases))


#: partners in a vmapped batch: fixed, well-posed, verified to converge eagerly
PARTNER_SEEDS = (101, 202)


@functools.cache
def partners(family: str, solver: str):
    cases, fits = [], []
    for s in PARTNER_SEEDS:
        c = make_case(
            family,
            "good",
            {
                "seed": s,
                "col": 1,
                "row": 0,
                "expo": 8,
                "sign": 1.0,
                "value": np.nan,
                "factor": 1.0,
                "offset_sd": 0.3,
                "variant": 0,
            },
        )
        res, ws = fit_eager(family, solver, c)
        assert not isinstance(res, Exception), res
        assert bool(res.converged) or not guaranteed(family, solver), (
            family,
            solver,
            res.reason,
            ws,
        )
        cases.append(c)
        fits.append(res)
    return cases, fits


# ----------------------------------------------------------------------------
# the checker
# ----------------------------------------------------------------------------
STATUS_CODES = {int(s) for s in mj.Status}
#: (family, solver, transform, kind) -> Counter of outcomes ("error", status names)
OUTCOMES: dict[tuple, Counter] = {}


def _status_name(code: int) -> str:
    try:
        return mj.Status(code).name
    except ValueError:
        return f"UNKNOWN({code})"


@functools.partial(jax.jit, static_argnames="family")
def _scores(theta, X, y, w, off, trials, family):
    """Per-observation weighted log-likelihood and its scores in theta.

    ``theta = (params, {name: log extra})``; a zero-weight row contributes 0.
    """

    def per_obs(theta):
        params, logx = theta
        eta = X @ params + (off[:, None] if params.ndim == 2 else off)
        kw = {n: jnp.exp(u) for n, u in logx.items()}
        if trials is not None:
            kw["trials"] = trials
        lp = family.log_prob(y, eta, **kw)
        return jnp.where(w > 0, w * lp, 0.0)

    lp = per_obs(theta)
    jac = jax.jacfwd(per_obs)(theta)
    flat = jnp.concatenate(
        [jac[0].reshape(N, -1)] + [jac[1][n][:, None] for n in sorted(jac[1])], axis=1
    )
    return lp, flat


@functools.partial(jax.jit, static_argnames="family")
def _total(theta, X, y, w, off, trials, family):
    params, logx = theta
    eta = X @ params + (off[:, None] if params.ndim == 2 else off)
    kw = {n: jnp.exp(u) for n, u in logx.items()}
    if trials is not None:
        kw["trials"] = trials
    return jnp.sum(jnp.where(w > 0, w * family.log_prob(y, eta, **kw), 0.0))


def _finite(a) -> bool:
    return bool(np.all(np.isfinite(np.asarray(a, np.float64))))


def check_converged(family: str, case: Case, res, where: str) -> None:
    """A converged fit: finite, the reported loglik, and a maximum."""
    fam = FAMILIES[family]
    params = np.asarray(res.params, np.float64)
    stderr = np.asarray(res.stderr, np.float64)
    extra = {n: float(v) for n, v in res.extra.items()}
    loglik = float(res.loglik)
    assert _finite(params), f"{where}: converged with params {params}"
    assert _finite(stderr) and (stderr >= 0).all(), (
        f"{where}: converged with stderr {stderr}"
    )
    for n, v in res.extra_stderr.items():
        assert _finite(v) and float(v) >= 0, (
            f"{where}: converged with extra_stderr[{n!r}] = {float(v)}"
        )
    if family in EXACT and extra["scale"] == 0.0:
        # the documented exact fit: exact coefficients, stderr 0, loglik +inf
        assert loglik == np.inf, f"{where}: exact fit with loglik {loglik}"
        assert (stderr == 0).all(), f"{where}: exact fit with stderr {stderr}"
        fitted = case.X @ params + case.offset
        ok = case.weights > 0
        np.testing.assert_allclose(
            fitted[ok],
            case.y[ok],
            rtol=1e-9,
            atol=1e-9 * np.abs(case.y).max(),
            err_msg=f"{where}: an 'exact fit' that does not fit",
        )
        return
    assert np.isfinite(loglik), f"{where}: converged with loglik {loglik}"
    for n, v in extra.items():
        assert np.isfinite(v) and v > 0, f"{where}: converged with {n} = {v}"
    data = (case.X, case.y, case.weights, case.offset, case.trials)
    if family in REAL:
        # Check the equivalent problem divided by a power of two c near the
        # scale (exact in floating point): with y ~ 1e160 the per-observation
        # scores (r / scale)^2 would overflow in the check itself.
        # log_prob(y / c; eta / c, scale / c) = log_prob(y; eta, scale) + log c.
        c = 2.0 ** np.round(np.log2(extra["scale"]))
        data = (case.X, case.y / c, case.weights, case.offset / c, case.trials)
        params, stderr = params / c, stderr / c
        extra = dict(extra, scale=extra["scale"] / c)
        loglik = loglik + float(np.sum(case.weights[case.weights > 0])) * np.log(c)
    theta = (jnp.asarray(params), {n: jnp.log(v) for n, v in extra.items()})
    lp, S = _scores(theta, *data, family=fam)
    lp, S = np.asarray(lp), np.asarray(S)
    total = float(lp.sum())
    size = float(np.abs(lp).sum()) + 1.0
    assert abs(total - loglik) <= 1e-8 * size, (
        f"{where}: reported loglik {loglik!r} but sum(w * log_prob) = {total!r}"
    )
    # stationarity, scale-free: the score against its per-observation terms
    g, scale = S.sum(0), np.abs(S).sum(0)
    smooth = np.ones(g.shape, bool)
    if family == "Laplace":  # |y - eta| has no gradient at the LAD vertex
        smooth[: params.size] = False
    bad = smooth & ~(np.abs(g) <= 1e-6 * scale)
    assert not bad.any(), (
        f"{where}: converged at a non-stationary point: score {g[bad]} against "
        f"sum|per-observation score| {scale[bad]} (params {params}, extra {extra})"
    )
    # no small random perturbation may raise the loglik
    rng = np.random.default_rng(12345)
    step = 1e-4 * (np.abs(params) + stderr)
    step = np.where(step > 0, step, 1e-4)
    tol = 1e-9 * (1.0 + abs(loglik))
    for _ in range(4):
        z = rng.normal(size=params.shape)
        zu = {n: 1e-4 * rng.normal() for n in extra}
        for s in (1.0, -1.0):
            th = (
                jnp.asarray(params + s * step * z),
                {n: jnp.log(v) + s * zu[n] for n, v in extra.items()},
            )
            ll = float(_total(th, *data, family=fam))
            assert not ll > loglik + tol, (
                f"{where}: converged, but a perturbation raises the loglik from "
                f"{loglik!r} to {ll!r}: not a maximum"
            )


def check_fit(family, solver, transform, case: Case, res, ws=None) -> str:
    """The contract for one outcome; returns its name for the tally."""
    spec = KINDS[case.kind]
    where = f"{family}/{solver}/{transform}/{case.kind}"
    if isinstance(res, Exception):
        assert transform == "eager"
        assert spec.error is not None or spec.may_error, (
            f"{where}: unexpected {type(res).__name__}: {res}"
        )
        if spec.error is not None:
            assert isinstance(res, ValueError) and re.search(
                spec.error, str(res), re.I
            ), f"{where}: error does not name the problem ({spec.error}): {res!r}"
        return "error"
    if transform == "eager":
        assert spec.error is None, (
            f"{where}: expected a ValueError ({spec.error}), got a fit "
            f"(converged={bool(res.converged)}, {res.reason})"
        )
    converged, status = bool(res.converged), int(res.status)
    assert status in STATUS_CODES, f"{where}: unknown status {status}"
    assert converged == (status == int(mj.Status.CONVERGED)), (
        f"{where}: converged={converged} but status {_status_name(status)}"
    )
    if not converged:
        if transform == "eager":
            assert any(issubclass(w.category, MJ_WARNINGS) for w in ws), (
                f"{where}: converged=False ({res.reason}) without a warning"
            )
        assert not (case.kind == "good" and guaranteed(family, solver)), (
            f"{where}: a well-posed problem did not converge: {res.reason}"
        )
        return _status_name(status)
    assert spec.error is None, (
        f"{where}: invalid input (eagerly a ValueError) reported converged=True"
    )
    exact = (
        family in EXACT and case.kind == "const_y" and float(res.extra["scale"]) == 0
    )
    assert not spec.no_mle or exact, (
        f"{where}: the MLE does not exist, yet converged=True "
        f"(params {np.asarray(res.params).ravel()}, extra "
        f"{ {n: float(v) for n, v in res.extra.items()} }, loglik {float(res.loglik)})"
    )
    check_converged(family, case, res, where)
    return "CONVERGED"


def _tally(key, outcome):
    OUTCOMES.setdefault(key, Counter())[outcome] += 1


def _same_params(a, b, where):
    a, b = np.asarray(a.params, np.float64), np.asarray(b.params, np.float64)
    np.testing.assert_allclose(
        a, b, rtol=1e-8, atol=1e-8 * np.abs(b).max(), err_msg=where
    )


# ----------------------------------------------------------------------------
# the tests
# ----------------------------------------------------------------------------
def _params():
    out = []
    for family in FAMILIES:
        for solver in SOLVERS:
            for transform in TRANSFORMS:
                fast = (family, solver, transform) in FAST
                for kind in kinds_for(family):
                    marks = () if fast else (pytest.mark.slow,)
                    out.append(
                        pytest.param(
                            family,
                            solver,
                            transform,
                            kind,
                            fast,
                            marks=marks,
                            id=f"{family}-{solver}-{transform}-{kind}",
                        )
                    )
    return out


def _run(family, solver, transform, kind, knobs):
    case = make_case(family, kind, knobs)
    key = (family, solver, transform, kind)
    if transform == "eager":
        res, ws = fit_eager(family, solver, case)
        _tally(key, check_fit(family, solver, transform, case, res, ws))
        if kind == "y_scale" and family in REAL and bool(res.converged):
            # equivariance: the fit of y / c (c an exact power of two) times c
            c = 2.0 ** np.round(np.log2(np.abs(case.y).max()))
            small = case._replace(y=case.y / c, offset=case.offset / c)
            res2, _ = fit_eager(family, solver, small)
            assert bool(res2.converged), (key, res2.reason)
            a = np.asarray(res.params, np.float64) / c
            b = np.asarray(res2.params, np.float64)
            # to 1e-7 relative, or 1e-4 standard errors (L-BFGS' own precision)
            tol = 1e-7 * np.abs(b) + 1e-4 * np.asarray(res2.stderr, np.float64)
            assert (np.abs(a - b) <= tol).all(), (
                f"{key}: the fit of y is not c times the fit of y / c: "
                f"{a * c} against {b * c}"
            )
        if kind == "zero_weights":  # zero-weight rows are inert: change them
            z = case.weights == 0
            X2, y2 = case.X.copy(), case.y.copy()
            X2[z, 1:] = -X2[z, 1:] * 3.0
            y2[z] = case.y[~z][0]
            if case.trials is not None:  # still in the support: y <= trials
                y2[z] = np.minimum(y2[z], case.trials[z])
            res2, _ = fit_eager(family, solver, case._replace(X=X2, y=y2))
            if solver == "newton" or bool(res.converged) or bool(res2.converged):
                assert int(res2.status) == int(res.status), (
                    key,
                    res.reason,
                    res2.reason,
                )
            # else a first-order run on a likelihood without a maximum (StudentT's
            # df and scale running to 0): where the iterations end (the bound, the
            # cap) depends on rounding; both report non-convergence
            if bool(res.converged):
                _same_params(res2, res, f"{key}: zero-weight rows changed the fit")
    elif transform == "jit":
        res = fit_transformed(family, solver, "jit", [case])
        _tally(key, check_fit(family, solver, transform, case, res))
        if kind == "good" and bool(res.converged):
            ref, _ = fit_eager(family, solver, case)
            if bool(ref.converged):
                _same_params(res, ref, f"{key}: jit vs eager")
    else:
        (g0, g1), (r0, r1) = partners(family, solver)
        res = fit_transformed(family, solver, "vmap", [g0, case, g1])
        assert np.asarray(res.converged).shape == (3,)
        _tally(key, check_fit(family, solver, transform, case, res[1]))
        for m, ref in ((0, r0), (2, r1)):
            assert int(res[m].status) == int(ref.status), (
                f"{key}: good member {m} spoiled: {res[m].reason} "
                f"(eagerly {ref.reason})"
            )
            if bool(ref.converged):  # an unconverged stop (Laplace by L-BFGS) is
                # wherever the iteration cap left it: batched rounding may differ
                _same_params(res[m], ref, f"{key}: good member {m} vs its eager fit")


@pytest.mark.parametrize("family,solver,transform,kind,fast", _params())
def test_degenerate_fuzz(family, solver, transform, kind, fast):
    n = FAST_EXAMPLES if fast else SLOW_EXAMPLES

    @settings(
        max_examples=n,
        deadline=None,
        database=None,
        phases=PHASES,
        suppress_health_check=[HealthCheck.too_slow],
    )
    @given(knobs=KNOBS)
    def run(knobs):
        _run(family, solver, transform, kind, knobs)

    run()


# ----------------------------------------------------------------------------
# fit_likelihood: saddles, minima, flat and unbounded likelihoods
# ----------------------------------------------------------------------------
def _ll_saddle(th, x):
    return jnp.sum(-((th["a"] - x) ** 2)) + jnp.sum((th["b"] - x) ** 2)


def _ll_minimum(th, x):
    return jnp.sum((th["a"] - x) ** 2) + jnp.sum((th["b"] - x) ** 2)


def _ll_flat(th, x):
    return jnp.sum(-((th["a"] - x) ** 2)) + 0.0 * th["b"]


def _ll_unbounded(th, x):
    return jnp.sum(-((th["a"] - x) ** 2)) + th["b"]


def _ll_nan(th, x):
    return jnp.sum(-((th["a"] - x) ** 2)) + jnp.log(-1.0 - th["b"] ** 2)


LIKELIHOODS = {
    # started exactly at the stationary point: the score is zero there
    "saddle": (_ll_saddle, 0.0, True),
    "minimum": (_ll_minimum, 0.0, True),
    "flat": (_ll_flat, 0.0, True),  # b is not identified: no unique MLE
    "unbounded": (_ll_unbounded, 0.0, True),
    "nan": (_ll_nan, 0.0, True),
}
FAST_LIKELIHOODS = ("saddle",)


@pytest.mark.parametrize(
    "name",
    [
        pytest.param(k, marks=() if k in FAST_LIKELIHOODS else (pytest.mark.slow,))
        for k in LIKELIHOODS
    ],
)
@pytest.mark.parametrize(
    "solver", ["newton", pytest.param("lbfgs", marks=pytest.mark.slow)]
)
def test_fit_likelihood_degenerate(name, solver):
    loglik, start, no_mle = LIKELIHOODS[name]
    x = np.linspace(-1.0, 1.0, N)
    init = {"a": jnp.asarray(0.3), "b": jnp.asarray(start)}
    with warnings.catch_warnings(record=True) as ws:
        warnings.simplefilter("always")
        try:
            res = mj.fit_likelihood(loglik, init, x, solver=solver)
        except (ValueError, TypeError) as e:
            _tally(("fit_likelihood", solver, "eager", name), "error")
            assert no_mle, f"fit_likelihood/{solver}/{name}: unexpected {e!r}"
            return
    where = f"fit_likelihood/{solver}/{name}"
    converged, status = bool(res.converged), int(res.status)
    _tally(("fit_likelihood", solver, "eager", name), _status_name(status))
    assert status in STATUS_CODES, f"{where}: unknown status {status}"
    assert converged == (status == 0), f"{where}: {converged} vs {status}"
    if converged:
        assert not no_mle, (
            f"{where}: no maximum exists, yet converged=True at "
            f"{ {k: float(v) for k, v in res.params.items()} }, "
            f"loglik {float(res.loglik)}"
        )
    else:
        assert any(issubclass(w.category, MJ_WARNINGS) for w in ws), (
            f"{where}: converged=False ({res.reason}) without a warning"
        )


@pytest.fixture(scope="module", autouse=True)
def _report_outcomes(request):
    """With ``-v``: which status each (family, solver, transform, kind) gave.

    ``MLEJAX_FUZZ_REPORT=path`` also writes the tally as JSON to ``path`` (under
    xdist each worker writes ``path.<worker id>``): ``{"family/solver/transform/
    kind": {outcome: count}}``, one count per fit checked.
    """
    yield
    out = os.environ.get("MLEJAX_FUZZ_REPORT")
    if out and OUTCOMES:
        worker = os.environ.get("PYTEST_XDIST_WORKER")
        path = f"{out}.{worker}" if worker else out
        with open(path, "w") as fh:
            json.dump(
                {"/".join(k): dict(c) for k, c in sorted(OUTCOMES.items())},
                fh,
                indent=1,
            )
    tr = request.config.pluginmanager.getplugin("terminalreporter")
    if tr is None or request.config.option.verbose < 1 or not OUTCOMES:
        return
    tr.write_line("")
    tr.write_line("fuzz outcomes (family/solver/transform/kind: outcome x count):")
    for key in sorted(OUTCOMES):
        c = ", ".join(f"{o} x{m}" for o, m in sorted(OUTCOMES[key].items()))
        tr.write_line(f"  {'/'.join(key)}: {c}")
