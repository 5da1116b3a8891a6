"""``fit_likelihood``: the wiring for any log-likelihood over any pytree."""

from __future__ import annotations

import functools
import warnings
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.flatten_util import ravel_pytree

from mlejax import _checks, _prepare, implicit, linear_rows, penalties
from mlejax.engines import likelihood
from mlejax.result import FitResult
from mlejax.status import ConvergenceWarning

__all__ = ["fit_likelihood"]

#: the static arguments of the compiled fit and of its JVP rule
_STATIC = ("loglik", "solver", "max_iter", "n_obs", "cov", "log_prior", "linear")


@functools.partial(jax.jit, static_argnames=_STATIC)
def _fit_likelihood_jit(
    init_params,
    data,
    tol,
    groups,
    penalty=None,
    *,
    loglik,
    solver,
    max_iter,
    n_obs,
    cov,
    log_prior=None,
    linear=None,
):
    fields = likelihood.fit(
        init_params,
        data,
        tol,
        groups,
        loglik=loglik,
        solver=solver,
        max_iter=max_iter,
        n_obs=n_obs,
        cov=cov,
        penalty=penalty if log_prior is None else log_prior,
        linear=linear,
    )
    name = solver if isinstance(solver, str) else "optax"
    hess = fields.pop("hess")  # for mlejax.implicit
    return FitResult(**fields, family="custom", solver=name, cov_type=cov[0]), hess


@functools.partial(jax.custom_jvp, nondiff_argnums=(5, 6, 7, 8, 9, 10, 11))
def _fit_likelihood_traced(
    init_params,
    data,
    tol,
    groups,
    penalty,
    loglik,
    solver,
    max_iter,
    n_obs,
    cov,
    log_prior,
    linear,
):
    return _fit_likelihood_jit(
        init_params,
        data,
        tol,
        groups,
        penalty,
        log_prior=log_prior,
        linear=linear,
        loglik=loglik,
        solver=solver,
        max_iter=max_iter,
        n_obs=n_obs,
        cov=cov,
    )[0]


@functools.partial(jax.jit, static_argnames=_STATIC)
def _fit_likelihood_jvp_jit(primals, data_dot, **kw):
    res, hess = _fit_likelihood_jit(*primals, **kw)
    penalty, free = primals[4], None
    if penalty is not None and penalty.kind == "l1":  # the active set
        free = ravel_pytree(res.params)[0] != 0
    dots = implicit.likelihood_jvp(
        kw["loglik"], res, hess, primals[1], data_dot, free=free
    )
    return res, dots


@_fit_likelihood_traced.defjvp
def _fit_likelihood_traced_jvp(
    loglik, solver, max_iter, n_obs, cov, log_prior, linear, primals, tangents
):
    # the implicit function theorem at the optimum (mlejax.implicit); only the
    # float leaves of data are differentiated (float0 ones cannot enter a jit).
    # A penalty's alpha is not differentiated here (mj.fit differentiates it).
    kw = dict(loglik=loglik, solver=solver, max_iter=max_iter, n_obs=n_obs, cov=cov)
    dd = jax.tree_util.tree_map(
        lambda t: None if t.dtype == jax.dtypes.float0 else t, tangents[1]
    )
    res, dots = _fit_likelihood_jvp_jit(
        primals, dd, log_prior=log_prior, linear=linear, **kw
    )
    return res, implicit.assemble(res, dots)


def fit_likelihood(
    loglik: Callable,
    init_params: Any,
    *data: Any,
    solver: str | optax.GradientTransformation = "newton",
    tol: float = 1e-10,
    max_iter: int = 200,
    n_obs: int | None = None,
    cov_type: str = "nonrobust",
    groups: Any = None,
    n_groups: int | tuple | None = None,
    penalty: Any = None,
    linear: dict | None = None,
) -> FitResult:
    """Maximise any total log-likelihood ``loglik(params, *data)`` over a pytree.

    Gradients and the Hessian are exact (autodiff); standard errors are the
    square roots of the inverse observed information, shaped like
    ``init_params``; ``cov`` is over ``ravel_pytree`` order. ``aic``/``bic``
    count every parameter, with ``n`` the leading length of ``data[0]`` (or
    ``n_obs``). Pass the same ``loglik`` function object to reuse the compiled fit.

    ``loglik`` may return the per-observation contributions ``(n,)`` (they
    are summed for fitting); robust ``cov_type`` (``"HC0"``, ``"HC1"``,
    ``"cluster"`` with ``groups``, as for ``mj.fit``, k = all parameters in
    HC1 and the cluster correction) needs them: a scalar ``loglik`` with a
    robust ``cov_type`` is a ``ValueError``. See docs/inference.md.

    ``penalty``: MAP estimation. A ``mj.penalties.Ridge``/``Lasso``/``ElasticNet``
    acts on every leaf of ``params`` (``weights=None``: weight 1 everywhere;
    or a pytree of weights shaped like ``params``, or one array for the
    flattened parameters), or a callable ``log_prior(params)`` whose negative is
    added to the NLL (pass the same function object to reuse the compiled fit).
    Lasso/ElasticNet use proximal Newton (``solver="newton"``): exact zeros,
    whose stderr is NaN. ``loglik`` stays the unpenalised log-likelihood at the
    MAP, ``res.objective`` is the penalised objective. See docs/penalties.md.

    ``linear``: declare that ``loglik`` is a sum over rows of terms in the
    linear predictors ``data[i] @ params[key]`` (``linear={key: i}``, one
    entry per coefficient leaf, ``(p,)`` or ``(p, m)``) and the remaining
    (few) parameters, each used only through ``data[i] @ params[key]``. The
    fit is then the GLM engine's: exact per-row derivatives of ``loglik``
    itself in ``(eta, rest)`` and the Gram matrix ``X' diag(h) X`` in one pass
    over row blocks, line searches on ``eta``; same MLE, Hessian and standard
    errors as without ``linear``, much faster for large ``n``. Data arrays
    whose leading axis has the design matrices' ``n`` rows are the rows; on
    concrete inputs the declaration is checked against ``loglik`` (a
    ``ValueError`` naming ``linear`` if it does not hold). See
    docs/structured_likelihood.md.

    Differentiable in every float leaf of ``data`` (``jax.grad``, ``jvp``,
    ``jacrev``) by the implicit function theorem at the optimum, not through
    the solver loop (see docs/differentiable.md); not in ``init_params``.

    >>> import jax.numpy as jnp, mlejax as mj
    >>> x = jnp.array([0.5, 1.5, 2.5, 3.5])
    >>> ll = lambda th, x: jnp.sum(-jnp.exp(th["log_rate"]) * x + th["log_rate"])
    >>> res = mj.fit_likelihood(ll, {"log_rate": jnp.array(0.0)}, x)
    >>> round(float(jnp.exp(res.params["log_rate"])), 6)   # 1 / mean(x)
    0.5
    """
    _prepare.check_solver(solver)
    _prepare.check_tol_max_iter(tol, max_iter)
    flat0, _ = ravel_pytree(init_params)
    if n_obs is None:
        n_obs = int(np.shape(data[0])[0]) if data and np.ndim(data[0]) > 0 else 1
    for i, d in enumerate(data):
        _checks.require_finite(f"data[{i}]", d)
    dtype = (
        flat0.dtype
        if jnp.issubdtype(flat0.dtype, jnp.floating)
        else jnp.result_type(float)
    )
    init_params = jax.tree_util.tree_map(lambda a: jnp.asarray(a, dtype), init_params)
    _prepare.check_cov_type(cov_type)
    penalties.check_penalty(penalty, solver, cov_type=cov_type)
    log_prior = None
    if penalty is not None and not isinstance(penalty, penalties.Penalty):
        log_prior, penalty = penalty, None
    spec = None
    if linear is not None:
        spec = linear_rows.check_linear(linear, init_params, data)
    n_rows = n_obs
    if cov_type != "nonrobust":
        out = jax.eval_shape(loglik, init_params, *data)
        if len(out.shape) != 1:
            raise ValueError(
                f"cov_type={cov_type!r} needs per-observation contributions: loglik "
                f"must return an (n,) array (it is summed for fitting); it returns "
                f"shape {tuple(out.shape)}."
            )
        n_rows = out.shape[0]
    groups, bounds = _prepare.prepare_groups(cov_type, groups, n_rows, n_groups)
    cov = (cov_type, bounds)
    args = (init_params, tuple(data), jnp.asarray(tol, dtype), groups, penalty)
    if _prepare.is_traced(*jax.tree_util.tree_leaves(args)):
        return _fit_likelihood_traced(
            *args, loglik, solver, max_iter, n_obs, cov, log_prior, spec
        )
    if spec is not None:
        linear_rows.check_declaration(loglik, spec, init_params, tuple(data))
    res, _ = _fit_likelihood_jit(
        *args,
        loglik=loglik,
        solver=solver,
        max_iter=max_iter,
        n_obs=n_obs,
        cov=cov,
        log_prior=log_prior,
        linear=spec,
    )
    if not bool(res.converged):
        warnings.warn(
            f"fit_likelihood did not converge ({res.reason}) in {int(res.n_iter)} "
            "iterations; the last iterate is returned.",
            ConvergenceWarning,
            stacklevel=2,
        )
    return res
