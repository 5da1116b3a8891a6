"""Penalties: penalised likelihood as MAP estimation under a prior.

A penalty ``P(beta)`` is added to the TOTAL negative log-likelihood (not the
mean), so ``fit(..., penalty=P)`` minimises ``-loglik(beta) + P(beta)``: the
posterior mode (MAP) under the prior ``p(beta) ~ exp(-P(beta))``.

============  ===========================================  ============================
penalty       ``P(beta)``                                  prior on each ``beta_j``
============  ===========================================  ============================
Ridge         ``alpha/2 sum_j w_j beta_j^2``               ``N(0, 1/(alpha w_j))``
Lasso         ``alpha sum_j w_j |beta_j|``                 ``Laplace(0, b=1/(alpha w_j))``
ElasticNet    ``alpha (r sum w|b| + (1-r)/2 sum w b^2)``   product of both (``r = l1_ratio``)
============  ===========================================  ============================

``ElasticNet(alpha, l1_ratio)`` uses the glmnet / glum parameterisation, so
``Ridge(a) == ElasticNet(a, 0)`` and ``Lasso(a) == ElasticNet(a, 1)``. The maps
to scikit-learn's ``C``, glum's / glmnet's ``alpha`` and to prior scales are in
:mod:`mlejax.equivalence` and ``docs/penalties.md``.

Every penalty is a pytree whose leaves are ``alpha``, ``l1_ratio`` and
``weights`` (static: which penalty it is), so it passes through ``jit``, is
batched by ``vmap`` over ``alpha`` and is differentiable in ``alpha``.
``weights=None`` means the default: 0 for a column of ones in ``X`` (an
intercept is not penalised), 1 otherwise; it is computed from ``X`` inside the
trace (:meth:`Penalty.coef_weights`). Extra parameters (scale, shape, df, NB
alpha) are never penalised.

>>> import mlejax as mj
>>> pen = mj.penalties.Ridge(2.0)
>>> float(pen.value([1.0, 3.0]))   # 2/2 * (1 + 9)
10.0
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree
from jax.typing import ArrayLike

__all__ = ["Penalty", "Ridge", "Lasso", "ElasticNet", "check_penalty", "is_l1"]


def _concrete_number(a):
    """``np.asarray(a)`` when ``a`` is concrete numeric data, else ``None``.

    Tracers, and the placeholders JAX puts in pytrees (``vmap`` axis specs,
    ``object()`` sentinels), are not validated.
    """
    if a is None or isinstance(a, jax.core.Tracer):
        return None
    try:
        arr = np.asarray(a)
    except Exception:
        return None
    return arr if arr.dtype.kind in "biuf" else None


class Penalty:
    """Base class: ``alpha * (r * sum w|b| + (1 - r)/2 * sum w b^2)``.

    Subclasses are frozen dataclasses registered as pytrees. ``kind`` is
    ``"smooth"`` (Ridge: exact Newton) or ``"l1"`` (Lasso, ElasticNet:
    proximal Newton with coordinate descent).
    """

    kind: ClassVar[str] = "smooth"
    alpha: Any
    weights: Any

    # ---- validation (concrete values only; tracers pass) -------------------
    def _validate(self) -> None:
        name = type(self).__name__
        a = _concrete_number(self.alpha)
        if a is not None and (np.any(~np.isfinite(a)) or np.any(a < 0)):
            raise ValueError(
                f"{name}: alpha must be a finite number >= 0; got {self.alpha!r}. "
                "alpha is the penalty strength on the total negative log-likelihood "
                "(alpha = 0 is no penalty)."
            )
        r = _concrete_number(self.l1_ratio)
        if r is not None and (np.any(~np.isfinite(r)) or np.any((r < 0) | (r > 1))):
            raise ValueError(
                f"{name}: l1_ratio must lie in [0, 1]; got {self.l1_ratio!r} "
                "(0 is Ridge, 1 is Lasso)."
            )
        if self.weights is not None:
            for leaf in jax.tree_util.tree_leaves(self.weights):
                w = _concrete_number(leaf)
                if w is not None and (np.any(~np.isfinite(w)) or np.any(w < 0)):
                    raise ValueError(
                        f"{name}: weights must be finite and >= 0; got {w!r}. "
                        "Use weight 0 for an unpenalised coefficient."
                    )

    # ---- the penalty as a function --------------------------------------
    @property
    def l1_strength(self):
        """``alpha * l1_ratio`` (multiplies ``sum w |b|``)."""
        return self.alpha * self.l1_ratio

    @property
    def l2_strength(self):
        """``alpha * (1 - l1_ratio)`` (multiplies ``sum w b^2 / 2``)."""
        return self.alpha * (1.0 - self.l1_ratio)

    def value(self, beta: ArrayLike, weights: ArrayLike | None = None) -> jax.Array:
        """``P(beta)`` with per-element weights (default: ``self.weights`` or 1)."""
        beta = jnp.asarray(beta)
        w = weights if weights is not None else self.weights
        w = jnp.ones_like(beta) if w is None else jnp.broadcast_to(w, beta.shape)
        if beta.ndim == 2 and w.ndim == 1:  # Categorical: one weight per row
            w = jnp.broadcast_to(w[:, None], beta.shape)
        l1 = jnp.sum(w * jnp.abs(beta))
        l2 = 0.5 * jnp.sum(w * beta**2)
        return self.l1_strength * l1 + self.l2_strength * l2

    def coef_weights(self, X: jax.Array, m: int = 1) -> jax.Array:
        """Per-coefficient weights over ``vec(beta)`` (row-major ``(p, m)``).

        ``weights=None``: 0 for a column of ``X`` that is all ones, 1 otherwise
        (works on traced ``X``). ``weights`` of shape ``(p,)`` is repeated over
        the ``m`` predictors of a Categorical; ``(p, m)`` is used as given.
        """
        p = X.shape[1]
        if self.weights is None:
            w = jnp.where(jnp.all(X == 1, axis=0), 0.0, 1.0).astype(X.dtype)
        else:
            w = jnp.asarray(self.weights, X.dtype)
        if w.ndim == 1 and m > 1:
            w = jnp.repeat(w, m)
        return jnp.reshape(w, (p * m,))

    def tree_weights(self, params) -> jax.Array:
        """Flat weights over ``ravel_pytree(params)`` (``fit_likelihood``).

        ``weights=None`` penalises every leaf with weight 1; a pytree of weights
        shaped like ``params`` (or broadcastable per leaf) gives each its own.
        """
        flat, _ = ravel_pytree(params)
        if self.weights is None:
            return jnp.ones_like(flat)
        w_tree = self.weights
        same = jax.tree_util.tree_structure(w_tree) == jax.tree_util.tree_structure(
            params
        )
        if not same:  # one array for every leaf (a scalar, or flat weights)
            return jnp.broadcast_to(jnp.asarray(w_tree, flat.dtype), flat.shape)
        w_b = jax.tree_util.tree_map(
            lambda p, w: jnp.broadcast_to(jnp.asarray(w, flat.dtype), jnp.shape(p)),
            params,
            w_tree,
        )
        return ravel_pytree(w_b)[0]

    def __call__(self, params) -> jax.Array:
        """The penalty on every leaf of a params pytree (``fit_likelihood``)."""
        flat, _ = ravel_pytree(params)
        return self.value(flat, self.tree_weights(params))

    def with_alpha(self, alpha) -> Penalty:
        """The same penalty with another ``alpha`` (``fit_path``)."""
        return dataclasses.replace(self, alpha=alpha)


def _register(cls):
    fields = [f.name for f in dataclasses.fields(cls)]
    return jax.tree_util.register_dataclass(cls, data_fields=fields, meta_fields=[])


@_register
@dataclasses.dataclass(frozen=True)
class Ridge(Penalty):
    """``alpha/2 * sum_j w_j beta_j^2``: a Gaussian prior ``N(0, 1/(alpha w_j))``.

    Fitted by exact Newton (the penalty's gradient ``alpha w beta`` and Hessian
    ``alpha diag(w)`` are added to the likelihood's); any solver works.
    """

    alpha: Any
    weights: Any = None
    kind: ClassVar[str] = "smooth"
    l1_ratio: ClassVar[float] = 0.0

    def __post_init__(self):
        self._validate()


@_register
@dataclasses.dataclass(frozen=True)
class Lasso(Penalty):
    """``alpha * sum_j w_j |beta_j|``: a Laplace prior with scale ``1/(alpha w_j)``.

    Fitted exactly by proximal Newton (coordinate descent on each quadratic
    model, as glmnet and glum's ``irls-cd``): exact zeros, KKT conditions to
    the tolerance. ``solver="newton"`` only.
    """

    alpha: Any
    weights: Any = None
    kind: ClassVar[str] = "l1"
    l1_ratio: ClassVar[float] = 1.0

    def __post_init__(self):
        self._validate()


@_register
@dataclasses.dataclass(frozen=True)
class ElasticNet(Penalty):
    """``alpha * (l1_ratio sum w|b| + (1 - l1_ratio)/2 sum w b^2)`` (glmnet/glum).

    Fitted like :class:`Lasso`.
    """

    alpha: Any
    l1_ratio: Any
    weights: Any = None
    kind: ClassVar[str] = "l1"

    def __post_init__(self):
        self._validate()


def is_l1(penalty) -> bool:
    """Whether the penalty has an L1 part (needs the proximal solver)."""
    return isinstance(penalty, Penalty) and penalty.kind == "l1"


def check_penalty(
    penalty, solver, *, p: int | None = None, family=None, cov_type="nonrobust"
):
    """Host-side checks of ``penalty=`` for ``fit`` (``p`` columns of X) or
    ``fit_likelihood`` (``p=None``). Raises ``ValueError`` naming the argument."""
    if penalty is None:
        return
    if cov_type != "nonrobust":
        raise ValueError(
            f"cov_type={cov_type!r} with penalty= is not supported: a penalised fit "
            "reports the Laplace-approximation posterior covariance "
            "(cov_type='nonrobust')."
        )
    m = 1 if family is None else family.eta_dim
    if not isinstance(penalty, Penalty):
        if p is None and callable(penalty):
            return  # fit_likelihood: a log-prior function
        raise ValueError(
            f"penalty must be mj.penalties.Ridge, Lasso or ElasticNet"
            f"{' (or a callable log_prior(params))' if p is None else ''}; "
            f"got {penalty!r}."
        )
    if penalty.kind == "l1" and solver != "newton":
        raise ValueError(
            f"penalty={type(penalty).__name__} needs solver='newton' (proximal "
            f"Newton with coordinate descent, exact zeros); got solver={solver!r}. "
            "L-BFGS and Optax transforms cannot give exact zeros: use Ridge with them."
        )
    if family is not None and not family.smooth:
        raise ValueError(
            f"penalty= is not supported for {family.name} (its log-likelihood is "
            "not smooth; no Newton or proximal Newton model): fit it unpenalised, "
            "or use fit_likelihood with a smooth surrogate."
        )
    if p is not None and penalty.weights is not None:
        w = _concrete_number(penalty.weights)
        shape = tuple(np.shape(penalty.weights))
        if shape not in ((p,), (p, m)):
            want = f"({p},)" + (f" or ({p}, {m})" if m > 1 else "")
            raise ValueError(
                f"{type(penalty).__name__}: weights must have shape {want} (one per "
                f"column of X); got shape {shape}."
            )
        del w
