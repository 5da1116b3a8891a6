"""The family contract: :class:`Family`, the base of every noise model."""

from __future__ import annotations

from typing import ClassVar

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

from mlejax import _checks

__all__ = ["Family"]


class Family:
    """Base class of a hashable noise model: the family contract.

    **Required**: the per-observation log-likelihood. Override
    ``log_prob(y, eta, **extra)`` (user families: it is the whole story) or,
    to get the host-side input checks of the built-in families for free,
    ``_log_prob(y, eta, **extra)``. Declare the estimated extra parameters in
    ``extra_names`` (all positive; the solvers work on their logs), data
    keywords such as Binomial's ``trials`` in ``data_names``, and the support
    of ``y`` in ``support``. With that alone ``mj.fit`` gives Newton with the
    exact Hessian (autodiff of ``log_prob`` per row), standard errors, ``vmap``
    and shape buckets.

    **Optional** methods give speed or features; each default is derived from
    ``log_prob`` or is neutral:

    ========================  =================================================
    ``nll_derivs``            closed-form first/second eta-derivatives of
                              ``-log p`` (no extras); default: autodiff
    ``log_prob_const``        the parameter-free part of ``log p`` (``-log y!``),
                              summed once per fit; with ``log_prob_kernel``
    ``working_response``      a transformed ``y`` whose regression on ``X``
                              starts Newton; default: start at ``eta = 0``
    ``mean``                  inverse link, for start values and predictions
    ``init_extra``            moment start values of the extras; default 1
    ``extra_bounds``,         bounds of extras (StudentT ``df``, NB ``alpha``,
    ``at_bound``,             Gamma ``shape``): a fit that ends on one stops
    ``bound_message``         with ``Status.BOUND`` and says which, and why
    ``empty_class``           a level of y without observations (Categorical)
    ``can_separate``          whether fitted probabilities can reach 1
                              (discrete families): enables the separation check
    ``separation_signs``      per-row signs for the host LP that names the
                              separating columns
    ``expected_nll_hessian``  per-row expected information, used when the
                              log-likelihood is not smooth (``smooth = False``)
    ``expected_eta_weight``   per-row Fisher weight in eta
                              (``information="expected"``)
    ``linkfun``, ``link_name``  the link and R's name of it
    ``valid_eta``,            the valid range of eta (non-canonical links):
    ``mean_out_of_range``     start values and ``Status.INVALID_MEAN``
    ``pad_value``             a harmless ``y`` for zero-weight padding rows
    ``loss_input``,           the classic-loss reading of the NLL
    ``loss_constants``        (``mj.equivalence``)
    ========================  =================================================

    Class-level flags: ``convex`` (the NLL is convex in the coefficients:
    Newton needs no safeguard), ``smooth``, ``newton_engine`` (``"newton"``;
    ``"lstsq"`` for Gaussian's closed form; ``"lad"`` for Laplace's exact LAD),
    ``ols_convention`` (Gaussian: ``stderr`` from ``RSS / (n - p)``);
    precision weights and dispersion: ``var_weights_mode``,
    ``precision_extra``, ``variance_power`` (docs/weights.md).
    """

    loss_name: ClassVar[str | None] = None
    support: ClassVar[str] = "real"
    extra_names: ClassVar[tuple[str, ...]] = ()
    #: keywords that are data rather than parameters (e.g. Binomial ``trials``)
    data_names: ClassVar[tuple[str, ...]] = ()
    #: whether eta carries a trailing axis of ``eta_dim`` predictors (Categorical,
    #: even with K=2 where that axis has size 1)
    eta_has_axis: ClassVar[bool] = False
    convex: ClassVar[bool] = False
    smooth: ClassVar[bool] = True
    can_separate: ClassVar[bool] = False
    newton_engine: ClassVar[str] = "newton"
    ols_convention: ClassVar[bool] = False
    #: how precision weights ``var_weights=`` enter (see :meth:`precision_extras`):
    #: ``"loglik"``: ``v * log p`` (no dispersion parameter: Poisson, Bernoulli,
    #: Binomial, Categorical; statsmodels' GLM ``var_weights``); ``"dispersion"``:
    #: the dispersion of row i is ``phi / v_i`` (Gaussian, Gamma; R's
    #: ``glm(weights=)``); ``None``: not supported (a ValueError names the family)
    var_weights_mode: ClassVar[str | None] = None
    #: ``"dispersion"`` mode: ``(name, power)``: the extra ``name`` of a row
    #: with precision weight ``v`` is ``extra * v**power`` (Gaussian
    #: ``("scale", -0.5)``, Gamma ``("shape", 1)``)
    precision_extra: ClassVar[tuple | None] = None
    #: families with an estimated dispersion: ``V(mu) = mu**variance_power``
    #: (Gaussian 0, Gamma 2), see :meth:`variance`
    variance_power: ClassVar[int | None] = None
    #: set for subclasses that override ``log_prob`` itself (user families)
    _overrides_log_prob: ClassVar[bool] = False

    def __init_subclass__(cls, **kwargs) -> None:
        super().__init_subclass__(**kwargs)
        if "log_prob" in cls.__dict__:
            cls._overrides_log_prob = True

    @property
    def name(self) -> str:
        return type(self).__name__

    @property
    def eta_dim(self) -> int:
        """Number of linear predictors per observation (K-1 for Categorical)."""
        return 1

    def log_prob(self, y: jax.Array, eta: jax.Array, **extra) -> jax.Array:
        """Per-observation log-likelihood ``log p(y | eta, **extra)``."""
        self._check_keywords(extra)
        self.check(y, eta, **extra)
        dtype = jnp.result_type(eta, float)
        y = jnp.asarray(y, dtype)
        extra = {k: jnp.asarray(v, dtype) for k, v in extra.items()}
        return self._log_prob(y, jnp.asarray(eta, dtype), **extra)

    def _log_prob(self, y: jax.Array, eta: jax.Array, **extra) -> jax.Array:
        raise NotImplementedError(
            f"{self.name} must define log_prob(y, eta, **extra) (the per-observation "
            "log-likelihood)."
        )

    def log_prob_rows(self, y: jax.Array, eta: jax.Array, **extra) -> jax.Array:
        """``log p`` without the host-side checks: what the engine traces."""
        if self._overrides_log_prob:
            return self.log_prob(y, eta, **extra)
        return self._log_prob(y, eta, **extra)

    # -- optional: speed ------------------------------------------------------
    def nll_derivs(
        self, y: jax.Array, eta: jax.Array, **data
    ) -> tuple[jax.Array, jax.Array] | None:
        """``(d/deta, d^2/deta^2)`` of ``-log p`` in closed form, or ``None``.

        Only used for families without extras and without an eta axis; ``None``
        (the default) means autodiff of :meth:`log_prob_rows`.
        """
        return None

    def log_prob_const(self, y: jax.Array, **data) -> jax.Array | None:
        """The parameter-free part of ``log p`` (``-log y!``), or ``None``.

        When it is not ``None``, :meth:`log_prob_kernel` must be ``log p``
        minus it: the fit sums the constant once instead of every evaluation.
        """
        return None

    def log_prob_kernel(self, y: jax.Array, eta: jax.Array, **kw) -> jax.Array:
        """``log p - log_prob_const`` (default: ``log p``)."""
        return self.log_prob_rows(y, eta, **kw)

    # -- optional: start values -------------------------------------------------
    def mean(self, eta: jax.Array) -> jax.Array:
        """Inverse link: the mean (or location) of y given eta."""
        return eta

    def linkfun(self, mu: jax.Array) -> jax.Array | None:
        """The link, the inverse of :meth:`mean` (``None``: not available)."""
        return None

    @property
    def link_name(self) -> str | None:
        """R's name of the link (``"logit"``, ``"log"``, ...); ``None``: not said."""
        return None

    def valid_eta(self, eta: jax.Array) -> jax.Array | None:
        """Traced: whether each ``eta`` gives a mean in range, or ``None``.

        ``None`` (the default) means every finite ``eta`` is valid (no check
        is compiled). Links with a finite edge (Poisson ``identity``: ``eta >
        0``; binomial ``log``: ``eta < 0``) say where it is; the start values
        are pulled inside it and the fit reports ``Status.INVALID_MEAN``
        when its answer is not (see :meth:`mean_out_of_range`).
        """
        return None

    def mean_out_of_range(self, eta: jax.Array, keep: jax.Array) -> jax.Array | None:
        """Traced: whether the fitted means of the ``keep`` rows leave (or sit
        on the edge of) the valid range; ``None`` (default): they cannot."""
        return None

    def null_mean(self, y: jax.Array, w: jax.Array, **data) -> jax.Array:
        """The mean of the intercept-only model without offset (weighted mean of y).

        Exact for the exponential families whatever the link; with
        :meth:`linkfun` it starts the null-deviance fit at (or near) its answer.
        """
        return jnp.sum(jnp.where(w > 0, w * y, 0.0)) / jnp.sum(w)

    def working_response(self, y: jax.Array, **data) -> jax.Array | None:
        """A transformed y whose regression on X gives starting coefficients.

        ``None`` (the default) starts from ``eta = 0``.
        """
        return None

    def init_extra(
        self, y: jax.Array, mu: jax.Array | None, w: jax.Array | None = None
    ) -> dict:
        """Moment-based starting values of the extra parameters (default 1).

        ``mu`` is the start's mean (``None`` when the start is ``eta = 0``);
        ``w``: frequency weights (rows with weight 0 are ignored).
        """
        dtype = jnp.result_type(y, float)
        return {k: jnp.ones((), dtype) for k in self.extra_names}

    @property
    def extra_bounds(self) -> dict[str, tuple[float, float]]:
        """``{name: (lower, upper)}`` on the natural scale for bounded extras.

        The solvers keep each extra inside its bounds; a fit that ends on one
        reports ``Status.BOUND`` (the MLE is on the boundary of the parameter
        space or beyond it: NegativeBinomial alpha -> 0 is Poisson, StudentT
        df -> inf is Gaussian). Default: none.
        """
        return {}

    def at_bound(self, y: jax.Array, w: jax.Array, extra: dict) -> jax.Array:
        """Traced: whether the fitted extras sit on a boundary of their space.

        Default: an extra within a relative 1e-9 of one of its ``extra_bounds``.
        """
        hit = jnp.asarray(False)
        for k, (lo, hi) in self.extra_bounds.items():
            if lo > 0:
                hit = hit | (extra[k] <= lo * (1 + 1e-9))
            if np.isfinite(hi):
                hit = hit | (extra[k] >= hi * (1 - 1e-9))
        return hit

    def bound_message(self, extra: dict) -> str:
        """The warning for a fit that ended on a boundary (concrete ``extra``)."""
        where = []
        for k, (lo, hi) in self.extra_bounds.items():
            v = float(extra[k])
            if lo > 0 and v <= lo * (1 + 1e-9):
                where.append(f"{k} at its lower bound {lo:g}")
            if np.isfinite(hi) and v >= hi * (1 - 1e-9):
                where.append(f"{k} at its upper bound {hi:g}")
        what = "; ".join(where) or "an extra parameter at a boundary"
        return f"{self.name}: {what}: the MLE is not interior. converged=False."

    def empty_class(self, y: jax.Array, w: jax.Array) -> jax.Array:
        """Traced: whether a level of ``y`` that has coefficients never occurs."""
        return jnp.asarray(False)

    # -- optional: diagnostics ----------------------------------------------------
    def separation_log_prob(self, y: jax.Array, eta: jax.Array, **kw) -> jax.Array:
        """The ``log p`` that the traced separation check compares with 0.

        Default :meth:`log_prob_rows`. A link whose probabilities reach 1 at a
        moderate ``eta`` (probit, cloglog: ``1 - 1e-12`` at ``eta = 3.3``)
        answers with the logit ``log p`` at the same ``eta``, so that only
        diverging coefficients (``|eta| > 25``) count as separation.
        """
        return self.log_prob_rows(y, eta, **kw)

    def separation_signs(self, y: np.ndarray, **data) -> np.ndarray | None:
        """Host side: +1 where y is at the top of its support, -1 at the bottom.

        Rows with sign 0 are interior. A direction ``b`` with ``s_i x_i b >= 0``
        for every row (and ``x_i b = 0`` for interior rows) separates. ``None``:
        no linear-programming check (the separation is reported unnamed).
        """
        return None

    def in_support(self, y: jax.Array, **data) -> jax.Array:
        """Traceable: whether each ``y`` lies in the support (for jit/vmap fits)."""
        return _in_support(self.support, y, data.get("trials"), self._label_count())

    def _label_count(self):
        return None

    def pad_value(self) -> float:
        """A harmless ``y`` for a zero-weight padding row (``buckets=True``)."""
        try:
            return _PAD_Y[self.support]
        except KeyError:
            raise ValueError(
                f"buckets=True: no padding value for {self.name} (support "
                f"{self.support!r}); fit without buckets or define pad_value()."
            ) from None

    # -- optional: inference ----------------------------------------------------
    def expected_nll_hessian(self, eta: jax.Array, **extra) -> jax.Array | None:
        """Per-row expected Hessian of ``-log p`` in ``(eta, extras)``, or None.

        Shape ``(n, m + q, m + q)``, extras on their natural scale. Required
        when ``smooth`` is False (the observed Hessian is not informative).
        """
        return None

    def expected_eta_weight(self, eta: jax.Array, **kw) -> jax.Array | None:
        """Per-row expected information ``E[-d^2 log p / d eta^2]``, or ``None``.

        The GLM weight ``mu'(eta)^2 / Var(y)`` (the IRLS weight of R's
        ``glm``); ``kw``: the extras and data keywords. It gives
        ``information="expected"`` (``None``: that option is refused).
        """
        return None

    # -- optional: the classic-loss reading -------------------------------------
    def loss_input(self, eta: jax.Array) -> jax.Array:
        """The classic loss's ``input`` for linear predictor ``eta``."""
        return eta

    def loss_constants(self, y: jax.Array, **extra) -> tuple[jax.Array, jax.Array]:
        """``(a, b)`` with ``NLL = a * n * loss + b`` (see :mod:`mlejax.equivalence`)."""
        raise ValueError(
            f"{self.name} has no classic machine-learning loss "
            "(families with one: Gaussian, Bernoulli, Categorical, Poisson, Laplace)."
        )

    # -- host-side checks -------------------------------------------------
    def _check_keywords(self, extra) -> None:
        allowed = set(self.extra_names) | set(self.data_names)
        unknown = set(extra) - allowed
        missing = allowed - set(extra)
        if unknown or missing:
            raise ValueError(
                f"{self.name}.log_prob takes keywords {sorted(allowed) or 'none'}; "
                f"got {sorted(extra) or 'none'}"
                + (f" (unknown {sorted(unknown)})" if unknown else "")
                + (f" (missing {sorted(missing)})" if missing else "")
                + "."
            )

    def check_y(self, y: ArrayLike, **data) -> None:
        """ValueError if concrete ``y`` lies outside this family's support."""
        _checks.require_support(self.name, y, self.support)

    def check(self, y: ArrayLike, eta: ArrayLike, **extra) -> None:
        """Check shapes (always) and values (when concrete) of log_prob inputs."""
        ys, es = jnp.shape(y), jnp.shape(eta)
        want = es[:-1] if self.eta_has_axis else es
        if self.eta_has_axis and (len(es) == 0 or es[-1] != self.eta_dim):
            raise ValueError(
                f"{self.name}: eta must have a trailing axis of size {self.eta_dim} "
                f"(one logit per non-reference class); got shape {es}."
            )
        try:
            jnp.broadcast_shapes(ys, want)
            ok = len(ys) == len(want)  # (n,) against (n, 1) is no silent outer product
        except ValueError:
            ok = False
        if not ok:
            raise ValueError(
                f"{self.name}: y has shape {ys} but eta has shape {es}; "
                "they must match (one eta per observation)."
            )
        _checks.require_finite("eta", eta, self.name)
        for k in self.extra_names:
            _checks.require_positive(k, extra[k], self.name)
        self.check_y(y, **{k: extra[k] for k in self.data_names})

    # -- optional: precision weights and dispersion (var_weights=, dispersion=) --
    def precision_extras(self, v: jax.Array, **extra) -> dict:
        """The extras of rows with precision weights ``v`` (``"dispersion"`` mode).

        ``extra`` holds the fitted extras (scalars); the result maps the same
        names to per-row values whose dispersion is ``phi / v`` (Gaussian:
        ``scale / sqrt(v)``; Gamma: ``shape * v``), from ``precision_extra``.
        """
        name, power = self.precision_extra
        return {**extra, name: extra[name] * v**power}

    def variance(self, mu: jax.Array) -> jax.Array | None:
        """The variance function ``V(mu)`` (``var y = phi V(mu) / v``), or ``None``.

        Defined for the families with an estimated dispersion ``phi``
        (``variance_power`` set, or this method overridden): Gaussian 1,
        Gamma ``mu**2``. It gives the Pearson dispersion
        ``sum(v (y - mu)**2 / V(mu)) / df_resid`` of ``dispersion="pearson"``;
        :meth:`deviance_scale` gives the MLE of ``phi`` from the extras.
        """
        if self.variance_power is None:
            return None
        return mu**self.variance_power

    @property
    def has_dispersion(self) -> bool:
        """Whether the family estimates a dispersion with a variance function."""
        return self.variance_power is not None or (
            type(self).variance is not Family.variance
        )

    # -- optional: deviance (appended for the inference issue) -----------------
    def saturated_log_prob(self, y: jax.Array, **extra) -> jax.Array | None:
        """Per-row ``log p`` of the saturated model (mean = ``y``), or ``None``.

        With :meth:`deviance_scale` it defines R's deviance
        ``D = deviance_scale * 2 * sum w (saturated_log_prob - log_prob)``
        (``res.deviance``, ``res.null_deviance``); ``None`` (the default):
        no deviance (NaN). ``extra``: the fitted extras (and ``trials``).
        """
        return None

    def deviance_scale(self, **extra) -> jax.Array | float:
        """The dispersion ``phi`` that makes the deviance dispersion-free.

        Default 1 (Bernoulli, Binomial, Poisson, NegativeBinomial with its
        fitted alpha); Gaussian ``scale**2`` (so the deviance is the RSS),
        Gamma ``1 / shape``.
        """
        return 1.0


#: y of a padding row, per support: in the support, with a finite log_prob
_PAD_Y = {
    "real": 0.0,
    "binary": 0.0,
    "count": 0.0,
    "labels": 0.0,
    "bounded_count": 0.0,  # with trials 0
    "positive": 1.0,
}


def _in_support(kind: str, y: jax.Array, trials=None, n_labels=None) -> jax.Array:
    """Traceable twin of :func:`mlejax._checks.require_support` (a bool per row)."""
    finite = jnp.isfinite(y)
    integer = jnp.floor(y) == y
    if kind == "binary":
        return (y == 0) | (y == 1)
    if kind == "count":
        return finite & integer & (y >= 0)
    if kind == "positive":
        return finite & (y > 0)
    if kind == "labels":
        return integer & (y >= 0) & (y < n_labels)
    if kind == "bounded_count":
        return finite & integer & (y >= 0) & (y <= trials)
    return finite
