"""``fit``, ``ols`` and ``fit_likelihood``: the wiring, and nothing else.

checks (:mod:`mlejax._prepare`) -> engine (:mod:`mlejax.engines`, which uses
the objective, the solvers and :mod:`mlejax.inference`) -> ``FitResult`` ->
host diagnostics (:mod:`mlejax.diagnostics`). ``mlejax.fit`` is this module,
and calling it calls :func:`fit`.
"""

from __future__ import annotations

import functools
import inspect
import sys
import types

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.typing import ArrayLike

from mlejax import (
    _batched,
    _buckets,
    _prepare,
    _scaling,
    diagnostics,
    engines,
    implicit,
    inference,
    linalg,
)
from mlejax.any_likelihood import fit_likelihood
from mlejax.families import Family, Gaussian
from mlejax.objective import GLMData
from mlejax.penalties import Penalty, check_penalty
from mlejax.result import FitResult
from mlejax.status import Status

__all__ = ["fit", "ols", "fit_likelihood"]

#: up to this many elements of X (n * p) a fit is compiled with LLVM's
#: optimisation off: that halves XLA's compile time (about 1 s -> 0.5 s on a
#: laptop-class CPU), which dominates a small fit, and costs at most a few
#: milliseconds of run time there.
QUICK_COMPILE_SIZE = 1 << 17


def _fit_core(data, pearson, tol, groups, *pen, family, solver, max_iter, traced, cov):
    # pen: (penalty,) or (penalty, theta0) for a warm start (mj.fit_path)
    raw, data = data, _prepare.mask_zero_precision(data)
    X, weights = data.X, data.weights
    info = cov[2] if len(cov) > 2 else "observed"  # cov: (type, bounds, information)
    eng, solver_name = engines.run(
        family, data, solver, tol, max_iter, *pen, information=info
    )
    status, converged = eng.status, eng.converged
    if traced:  # the host checks could not run: invalid input is data
        ok = diagnostics.input_ok(family, raw)
        status = jnp.where(ok, status, int(Status.INVALID_INPUT))
        converged = converged & ok
    nobs = jnp.sum(weights)
    k = X.shape[1] * family.eta_dim + len(family.extra_names)
    aic, bic = inference.information_criteria(eng.loglik, k, nobs)
    dev, null_dev = inference.deviances(family, data, eng.params, eng.extra, eng.loglik)
    cov_b, se_b, phi = inference.apply_dispersion(
        family, data, eng.params, eng.extra, eng.cov, eng.stderr, pearson
    )
    res = FitResult(
        params=eng.params,
        extra=eng.extra,
        extra_stderr=eng.extra_stderr,
        stderr=se_b,
        cov=cov_b,
        loglik=eng.loglik,
        n_iter=eng.n_iter,
        converged=converged,
        aic=aic,
        bic=bic,
        nobs=nobs,
        status=status,
        trace=eng.trace,
        family=family.name,
        solver=solver_name,
        family_obj=family,
        deviance=dev,
        null_deviance=null_dev,
        dispersion=phi,
        objective=eng.objective,
    )
    if traced:  # the host path runs finish_jit: one fit compile for every cov_type
        res = inference.finish(res, data, groups, family, cov)
    return res, eng.r_eq, (eng.hess, eng.basis)  # the last for mlejax.implicit


_STATIC = ("family", "solver", "max_iter", "traced", "cov")
_fit_jit = jax.jit(_fit_core, static_argnames=_STATIC)
try:
    _fit_jit_quick = jax.jit(
        _fit_core,
        static_argnames=_STATIC,
        compiler_options={"xla_backend_optimization_level": 0},
    )
except TypeError:  # a JAX without per-function compiler options
    _fit_jit_quick = _fit_jit


def _fit_general(data, pearson, tol, groups, penalty, *, family, solver, max_iter, cov):
    st = dict(family=family, solver=solver, max_iter=max_iter, cov=cov)
    return _fit_jit(data, pearson, tol, groups, penalty, traced=True, **st)[:2]


@functools.partial(jax.custom_jvp, nondiff_argnums=(5, 6, 7, 8, 9))
def _fit_traced(data, pearson, tol, groups, penalty, family, solver, max_iter, cov, w1):
    # jit: the plain fit; vmap: the batched kernel where it serves
    # (mlejax._batched); jvp/grad: the rule below
    st = (("family", family), ("solver", solver), ("max_iter", max_iter), ("cov", cov))
    f = _batched.vmappable(_fit_general, st, w1)  # w1: no weights= (all 1)
    return f(data, pearson, tol, groups, penalty)


@functools.partial(jax.jit, static_argnames=_STATIC)
def _fit_jvp_jit(primals, tangents, **kw):
    res, r_eq, aux = _fit_core(*primals, **kw)  # implicit function theorem:
    dots = implicit.fit_jvp(kw["family"], res, aux, primals, tangents)
    return res, r_eq, dots


@_fit_traced.defjvp
def _fit_traced_jvp(family, solver, max_iter, cov, w1, primals, tangents):
    kw = dict(family=family, solver=solver, max_iter=max_iter, traced=True, cov=cov)
    res, r_eq, dots = _fit_jvp_jit(primals, tangents, **kw)
    return (res, r_eq), (implicit.assemble(res, dots), implicit.zero_tangents(r_eq))


def fit(
    X: ArrayLike,
    y: ArrayLike,
    family: Family,
    *,
    solver: str | optax.GradientTransformation = "newton",
    weights: ArrayLike | None = None,
    offset: ArrayLike | None = None,
    trials: ArrayLike | None = None,
    exposure: ArrayLike | None = None,
    var_weights: ArrayLike | None = None,
    dispersion: str | None = None,
    tol: float = 1e-10,
    max_iter: int = 100,
    buckets: bool = False,
    cov_type: str = "nonrobust",
    groups: ArrayLike | None = None,
    n_groups: int | tuple | None = None,
    penalty: Penalty | None = None,
    information: str = "observed",
) -> FitResult:
    """Maximum-likelihood fit of a regression ``eta = X @ params + offset``.

    Args:
      X: design ``(n, p)`` (NumPy, JAX or pandas; no intercept is added: use
        ``mj.add_constant``).
      y: response ``(n,)`` in the family's support.
      family: an ``mj.families`` instance.
      solver: ``"newton"`` (damped Newton with Armijo line search and exact
        Hessian; Gaussian is solved by :func:`ols`; Laplace by exact LAD: IRLS
        and simplex pivots to a certified vertex), ``"lbfgs"`` (Optax L-BFGS, stops when
        ``max|grad| <= tol * max(1, |f|)`` on the mean NLL), or any
        ``optax.GradientTransformation`` run for ``max_iter`` steps on the mean NLL
        (build it once and reuse it: a fresh transform recompiles).
      weights: frequency weights ``(n,)`` (same as replicating rows).
      offset: added to eta, e.g. ``log(exposure)``.
      trials: Binomial numbers of trials.
      exposure: adds ``log(exposure)`` to the offset (log link only).
      var_weights: precision weights ``(n,)`` (R's ``glm(weights=)``):
        Gaussian ``N(mu, scale^2/v)``, Gamma shape ``shape*v``; Poisson,
        Bernoulli, Binomial, Categorical ``v log p``. docs/weights.md.
      dispersion: Gaussian/Gamma covariance with ``"pearson"`` (R's
        ``summary.glm``) or ``"mle"`` dispersion; default: Gaussian
        ``"pearson"`` (OLS), Gamma ``"mle"``. ``res.dispersion``.
      tol: Newton: relative step ``max|d_i|/(1+|theta_i|)``; L-BFGS/Optax: gradient.
      max_iter: iteration cap (static).
      buckets: pad ``n`` up to the next shape bucket (``m * 2**e``, ``m`` in
        8..15: at most 12.5% more rows for ``n >= 8``) with rows of frequency
        weight 0 (``X = 0``, ``offset = 0``, ``y`` in the support, Binomial
        ``trials = 0``), after the checks. Zero-weight rows contribute exactly
        nothing, so the result is the fit of the given rows (``nobs`` and the
        information criteria included), while every ``n`` in a bucket shares
        one compiled fit. Inputs under the caller's ``jit``/``vmap`` (tracers),
        arrays sharded over several devices and ``groups`` are not padded.
      cov_type: ``"nonrobust"`` (inverse observed information), ``"HC0"``,
        ``"HC1"`` (HC0 x n/(n-k), k coefficients) or ``"cluster"`` (with
        ``groups`` ``(n,)`` or ``(n, 2)``; ``n_groups``: static bound on the
        number of groups under ``jit``/``vmap``). See docs/inference.md.
      penalty: ``mj.penalties.Ridge``/``Lasso``/``ElasticNet``: MAP fit, added to
        the total NLL (``loglik`` unpenalised, ``res.objective`` penalised, ``cov``
        the Laplace approximation). See docs/penalties.md.
      information: ``"observed"`` (exact Hessian) or ``"expected"`` (Fisher: R's
        ``summary.glm``, statsmodels' IRLS); static. See docs/links.md.

    Returns:
      FitResult. ``converged=False`` (plus a warning when not traced) on
      non-convergence, separation or an extra parameter at its bound
      (StudentT df); ``res.reason`` says which (:class:`mlejax.status.Status`).
      Under the caller's ``jit``/``vmap``, data the host checks would reject
      (non-finite, outside the support, negative weights) give
      ``status=INVALID_INPUT`` and ``converged=False`` instead of an error.
      Differentiable in ``X``, ``y``, ``weights``, ``offset`` by the implicit
      function theorem (docs/differentiable.md); ``stderr``/``cov`` get zero
      tangents, a non-converged fit NaN ones.

    Raises:
      ValueError: bad shapes, non-finite values, y outside the support, negative
        weights, more parameters than observations, a rank-deficient X.
    """
    _prepare.check_solver(solver)
    _prepare.check_tol_max_iter(tol, max_iter)
    if not isinstance(buckets, bool | np.bool_):
        raise TypeError(f"buckets must be True or False; got {buckets!r}.")
    dispersion, X0 = _prepare.check_dispersion(dispersion, family), X
    w1 = weights is None
    X, y, weights, offset, trials, names = _prepare.prepare(
        X, y, family, weights, offset, trials
    )
    offset, var_weights = _prepare.prepare_rows(
        family, X0, X, offset, exposure, var_weights
    )
    _prepare.check_cov_type(cov_type, family.smooth)
    check_penalty(penalty, solver, p=X.shape[1], family=family, cov_type=cov_type)
    inference.check_information(information, family)
    groups, bounds = _prepare.prepare_groups(cov_type, groups, X.shape[0], n_groups)
    cov = (cov_type, bounds, information)
    tol = jnp.asarray(tol, X.dtype)
    data = GLMData(X, y, weights, offset, trials, var_weights)
    # a data flag, not static: both conventions share one compiled fit
    pearson = np.asarray(dispersion == "pearson")
    leaves = jax.tree_util.tree_leaves((data, tol, groups, penalty))
    if _prepare.is_traced(*leaves):  # _fit_core checks and masks v
        res, r_eq = _fit_traced(
            data, pearson, tol, groups, penalty, family, solver, max_iter, cov, w1
        )
        return res.replace(names=names, dispersion_method=dispersion)
    data = _prepare.mask_zero_precision(data)
    # (a penalty is not invariant to rescaling a column: no scaling with one)
    scale = _scaling.column_scales(X) if penalty is None else None
    if scale is not None:  # exact: powers of two; undone on the result below
        X = X * scale[None, :]
        data = data._replace(X=X)
    if buckets and groups is None and _buckets.paddable(*data):
        # after the checks: they and the rank test saw only the given rows
        data = _prepare.pad_bucket(data, family)
    n, p = X.shape
    compiled = _fit_jit_quick if n * p <= QUICK_COMPILE_SIZE else _fit_jit
    st = dict(family=family, solver=solver, max_iter=max_iter)
    st["cov"] = ("nonrobust", None, information)
    res, r_eq, _ = compiled(data, pearson, tol, None, penalty, traced=False, **st)
    res = inference.finish_jit(res, data, groups, family, cov).replace(
        names=names, dispersion_method=dispersion
    )
    if r_eq is not None:
        cols = linalg.collinear_columns(r_eq, names)
        if cols is not None:
            raise linalg.rank_error(cols, X.shape[1])
    w = data.weights[: X.shape[0]]  # precision-0 rows out, no padding
    res = diagnostics.post_check(res, X, y, family, w, trials, names)
    return res if scale is None else _scaling.unscale(res, scale)


def ols(X: ArrayLike, y: ArrayLike, weights=None, var_weights=None) -> FitResult:
    """Least squares to near the float64 limit (see :mod:`mlejax.linalg`).

    Same ``FitResult`` fields as ``fit(X, y, Gaussian())``: ``stderr`` uses
    ``sigma^2 = RSS / (n - p)``, ``extra["scale"]`` is the MLE ``sqrt(RSS / n)``.
    ``weights``: frequency weights; ``var_weights``: precision weights
    (weighted least squares, R's ``lm(weights=)``).

    >>> import numpy as np, mlejax as mj
    >>> X = mj.add_constant(np.arange(5.0))
    >>> y = 1.0 + 2.0 * np.arange(5.0) + [0, 0.1, -0.1, 0, 0]
    >>> [round(float(b), 12) for b in mj.ols(X, y).params]  # by hand: 1.02, 1.99
    [1.02, 1.99]
    """
    return fit(X, y, Gaussian(), weights=weights, var_weights=var_weights)


class _CallableModule(types.ModuleType):
    """``mlejax.fit`` is this module; calling it calls :func:`fit`."""

    def __call__(self, *args, **kwargs) -> FitResult:
        return fit(*args, **kwargs)


_module = sys.modules[__name__]
_module.__class__ = _CallableModule
_module.__signature__ = inspect.signature(fit)  # type: ignore[attr-defined]
_module.__wrapped__ = fit  # type: ignore[attr-defined]
