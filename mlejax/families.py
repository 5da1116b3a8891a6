"""Noise models as pure log-likelihoods.

Each family is a frozen, hashable dataclass (a valid static argument to
``jax.jit``) whose :meth:`log_prob` returns the per-observation log-likelihood
``log p(y | eta, extra)`` with every normalising constant, where ``eta`` is the
linear predictor. Extra parameters (``scale``, ``df``, ``shape``, ``alpha``) and
Binomial ``trials`` are keywords. All forms are numerically stable for large
``|eta|``: ``softplus``/``log_softmax``/``logaddexp``/``xlogy``, never
``log(sigmoid(x))`` and no clipping to an epsilon.

Called on concrete arrays, ``log_prob`` first checks them on the host (support
of ``y``, finiteness, shapes) and raises a ``ValueError`` that names the family
and the offending value; under ``jit``/``vmap`` only shapes are checked.

>>> import jax.numpy as jnp
>>> import mlejax as mj
>>> float(mj.families.Bernoulli().log_prob(jnp.array(1.0), jnp.array(0.0)))
-0.693147...
"""

from __future__ import annotations

import dataclasses
import math
from typing import ClassVar

import jax
import jax.numpy as jnp
from jax.scipy.special import gammaln, xlogy

from mlejax import _checks
from mlejax.losses import _abs, _log_softmax_at, _softplus_pair

__all__ = [
    "Family",
    "Gaussian",
    "Bernoulli",
    "Binomial",
    "Categorical",
    "Poisson",
    "Laplace",
    "StudentT",
    "Gamma",
    "NegativeBinomial",
]

_LOG_2PI = math.log(2.0 * math.pi)


class Family:
    """Base class: a hashable noise model with a per-observation log-likelihood.

    Subclasses define ``_log_prob(y, eta, **extra)``, the support of ``y``
    (``support``) and the names of their estimated extra parameters
    (``extra_names``, all positive).
    """

    loss_name: ClassVar[str | None] = None
    support: ClassVar[str] = "real"
    extra_names: ClassVar[tuple[str, ...]] = ()
    #: keywords that are data rather than parameters (e.g. Binomial ``trials``)
    data_names: ClassVar[tuple[str, ...]] = ()
    #: whether eta carries a trailing axis of ``eta_dim`` predictors (Categorical,
    #: even with K=2 where that axis has size 1)
    eta_has_axis: ClassVar[bool] = False

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

    def check_y(self, y, trials=None) -> None:
        """ValueError if concrete ``y`` lies outside this family's support."""
        _checks.require_support(self.name, y, self.support)

    def check(self, y, eta, **extra) -> None:
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

    # -- helpers used by the fitting engine ----------------------------------
    def mean(self, eta: jax.Array) -> jax.Array:
        """Inverse link: the mean (or location) of y given eta."""
        return eta

    def working_response(self, y: jax.Array, trials=None) -> jax.Array:
        """A transformed y whose regression on X gives starting coefficients."""
        return y

    def init_extra(self, y, mu, w=None) -> dict:
        """Moment-based starting values of the extra parameters.

        ``w``: frequency weights (rows with weight 0 are ignored); ``None``
        weighs every row 1.
        """
        return {}


@dataclasses.dataclass(frozen=True)
class Gaussian(Family):
    """Normal noise, identity link: ``y ~ N(eta, scale^2)``; its NLL is MSE."""

    loss_name: ClassVar[str] = "mse"
    extra_names: ClassVar[tuple[str, ...]] = ("scale",)

    def _log_prob(self, y, eta, scale):
        z = (y - eta) / scale
        return -0.5 * z * z - jnp.log(scale) - 0.5 * _LOG_2PI

    def init_extra(self, y, mu, w=None):
        return {"scale": jnp.sqrt(_wmean((y - mu) ** 2, w))}


@dataclasses.dataclass(frozen=True)
class Bernoulli(Family):
    """Binary y in {0, 1}, logit link: ``log p = y*eta - softplus(eta)`` (BCE).

    Evaluated as ``-y*softplus(-eta) - (1-y)*softplus(eta)``: the same value
    without cancellation, so ``log p`` near 0 (y=1, eta=30) stays accurate.
    """

    loss_name: ClassVar[str] = "bce_with_logits"
    support: ClassVar[str] = "binary"

    def _log_prob(self, y, eta):
        sp, sn = _softplus_pair(eta)
        return -y * sn - (1.0 - y) * sp

    def _nll_derivs(self, y, eta):
        """First and second derivative of ``-log p`` in ``eta`` (canonical link)."""
        mu = jax.nn.sigmoid(eta)
        return mu - y, mu * (1.0 - mu)

    def mean(self, eta):
        return jax.nn.sigmoid(eta)

    def working_response(self, y, trials=None):
        p = (y + 0.5) / 2.0
        return jnp.log(p) - jnp.log1p(-p)


@dataclasses.dataclass(frozen=True)
class Binomial(Family):
    """Successes y out of ``trials``, logit link, binomial coefficient included."""

    support: ClassVar[str] = "bounded_count"
    data_names: ClassVar[tuple[str, ...]] = ("trials",)

    def check_y(self, y, trials=None) -> None:
        if trials is None:
            raise ValueError(
                "Binomial: trials= is required (number of trials per row)."
            )
        t = _checks.concrete(trials)
        if t is not None:
            _checks.require_finite("trials", t, self.name)
            import numpy as np

            if not (np.all(np.floor(t) == t) and np.all(t >= 0)):
                bad = np.flatnonzero(~((np.floor(t) == t) & (t >= 0)))[0]
                raise ValueError(
                    "Binomial: trials must be non-negative integers; "
                    f"trials[{bad}] = {t.flat[bad]!r}."
                )
        _checks.require_support(self.name, y, "bounded_count", upper=trials)

    def _log_prob(self, y, eta, trials):
        return self._log_prob_kernel(y, eta, trials) + self._log_prob_const(y, trials)

    def _log_prob_kernel(self, y, eta, trials):
        # y*eta - trials*softplus(eta), without cancellation (see Bernoulli)
        sp, sn = _softplus_pair(eta)
        return -y * sn - (trials - y) * sp

    def _log_prob_const(self, y, trials):
        """log C(trials, y): free of parameters (summed once per fit)."""
        return gammaln(trials + 1.0) - gammaln(y + 1.0) - gammaln(trials - y + 1.0)

    def _nll_derivs(self, y, eta, trials):
        mu = jax.nn.sigmoid(eta)
        return trials * mu - y, trials * mu * (1.0 - mu)

    def mean(self, eta):
        return jax.nn.sigmoid(eta)

    def working_response(self, y, trials=None):
        p = (y + 0.5) / (trials + 1.0)
        return jnp.log(p) - jnp.log1p(-p)


@dataclasses.dataclass(frozen=True)
class Categorical(Family):
    """Class labels 0..K-1, softmax link with class 0 as reference (logit 0).

    ``eta`` has shape ``(n, K-1)``; its NLL is softmax cross-entropy with
    logits ``[0, eta]``.
    """

    n_classes: int = 2
    loss_name: ClassVar[str] = "softmax_cross_entropy"
    support: ClassVar[str] = "labels"
    eta_has_axis: ClassVar[bool] = True

    def __post_init__(self):
        if not isinstance(self.n_classes, int) or self.n_classes < 2:
            raise ValueError(
                f"Categorical: n_classes must be an int >= 2; got {self.n_classes!r}."
            )

    @property
    def eta_dim(self) -> int:
        return self.n_classes - 1

    def check_y(self, y, trials=None) -> None:
        _checks.require_support(self.name, y, "labels", upper=self.n_classes)

    def logits(self, eta):
        """Full logits ``[0, eta]`` of shape ``(..., K)``."""
        zero = jnp.zeros(eta.shape[:-1] + (1,), eta.dtype)
        return jnp.concatenate([zero, eta], axis=-1)

    def _log_prob(self, y, eta):
        return _log_softmax_at(self.logits(eta), y)

    def mean(self, eta):
        return jax.nn.softmax(self.logits(eta), axis=-1)


@dataclasses.dataclass(frozen=True)
class Poisson(Family):
    """Counts, log link: ``log p = y*eta - exp(eta) - log(y!)`` (Poisson NLL)."""

    loss_name: ClassVar[str] = "poisson_nll"
    support: ClassVar[str] = "count"

    def _log_prob(self, y, eta):
        return self._log_prob_kernel(y, eta) + self._log_prob_const(y)

    def _log_prob_kernel(self, y, eta):
        return y * eta - jnp.exp(eta)

    def _log_prob_const(self, y):
        """-log(y!): free of parameters (summed once per fit)."""
        return -gammaln(y + 1.0)

    def _nll_derivs(self, y, eta):
        mu = jnp.exp(eta)
        return mu - y, mu

    def mean(self, eta):
        return jnp.exp(eta)

    def working_response(self, y, trials=None):
        return jnp.log(y + 0.5)


@dataclasses.dataclass(frozen=True)
class Laplace(Family):
    """Double-exponential noise, identity link (median): NLL is L1 / LAD.

    The derivative in eta at a zero residual is 0, as for ``losses.l1`` (and
    PyTorch's ``l1_loss``), so the NLL and L1 gradients agree everywhere.
    """

    loss_name: ClassVar[str] = "l1"
    extra_names: ClassVar[tuple[str, ...]] = ("scale",)

    def _log_prob(self, y, eta, scale):
        return -_abs(y - eta) / scale - jnp.log(2.0 * scale)

    def init_extra(self, y, mu, w=None):
        return {"scale": _wmean(jnp.abs(y - mu), w)}


@dataclasses.dataclass(frozen=True)
class StudentT(Family):
    """Student-t noise, identity link; ``df=None`` estimates the degrees of freedom."""

    df: float | None = None

    def __post_init__(self):
        if self.df is not None and not (0 < self.df < math.inf):
            raise ValueError(
                f"StudentT: df must be positive and finite, or None; got {self.df!r} "
                "(infinite df is the Gaussian family)."
            )

    @property
    def extra_names(self) -> tuple[str, ...]:  # type: ignore[override]  # per-instance
        return ("scale",) if self.df is not None else ("scale", "df")

    def _log_prob(self, y, eta, scale, df=None):
        df = jnp.asarray(self.df, eta.dtype) if df is None else df
        z = (y - eta) / scale
        return (
            _lgamma_half_step(0.5 * df)
            - 0.5 * (jnp.log(df) + math.log(math.pi))
            - jnp.log(scale)
            - 0.5 * (df + 1.0) * jnp.log1p(z * z / df)
        )

    def init_extra(self, y, mu, w=None):
        out = {"scale": jnp.sqrt(_wmean((y - mu) ** 2, w))}
        if self.df is None:
            out["df"] = jnp.asarray(10.0, out["scale"].dtype)
        return out


def _wmean(x: jax.Array, w) -> jax.Array:
    """Mean of ``x`` over rows, frequency-weighted by ``w`` when given.

    Rows with weight 0 contribute exactly nothing (not even a non-finite ``x``).
    """
    if w is None:
        return jnp.mean(x)
    return jnp.sum(jnp.where(w > 0, w * x, 0.0)) / jnp.sum(w)


def _lgamma_half_step(x: jax.Array) -> jax.Array:
    """``lgamma(x + 1/2) - lgamma(x)``, without cancellation for large x.

    The difference of two ``lgamma`` values of size ``x log x`` loses about
    ``eps * x log x`` (1e-9 at x = 1e6, everything at x = 1e17); above x = 20 the
    asymptotic series ``log(x)/2 - 1/(8x) + 1/(192x^3) - ...`` (five terms,
    relative error < 1e-18 there) is used instead.
    """
    big = x > 20.0
    xb = jnp.where(big, x, 20.0)  # keeps the branch not taken finite
    w = 1.0 / (xb * xb)
    poly = 1 / 8 - w * (1 / 192 - w * (1 / 640 - w * (17 / 14336 - w * (31 / 18432))))
    return jnp.where(big, 0.5 * jnp.log(xb) - poly / xb, gammaln(x + 0.5) - gammaln(x))


@dataclasses.dataclass(frozen=True)
class Gamma(Family):
    """Positive y, log link, mean ``exp(eta)`` and estimated ``shape`` k.

    ``log p = k log(k/mu) + (k-1) log y - k y / mu - lgamma(k)``.
    """

    support: ClassVar[str] = "positive"
    extra_names: ClassVar[tuple[str, ...]] = ("shape",)

    def _log_prob(self, y, eta, shape):
        k = shape
        return (
            k * (jnp.log(k) - eta)
            + xlogy(k - 1.0, y)
            - k * y * jnp.exp(-eta)
            - gammaln(k)
        )

    def mean(self, eta):
        return jnp.exp(eta)

    def working_response(self, y, trials=None):
        return jnp.log(y)

    def init_extra(self, y, mu, w=None):
        cv2 = _wmean(((y - mu) / mu) ** 2, w)
        return {"shape": 1.0 / cv2}


@dataclasses.dataclass(frozen=True)
class NegativeBinomial(Family):
    """Overdispersed counts (NB2), log link: variance ``mu + alpha mu^2``.

    With ``r = 1/alpha``: ``log p = lgamma(y+r) - lgamma(r) - log(y!)
    + r log(r/(r+mu)) + y log(mu/(r+mu))``, the last two terms written as
    ``-r*softplus(t) - y*softplus(-t)`` with ``t = eta + log(alpha)`` so that
    neither cancels for small ``alpha*mu`` nor overflows for large ``|eta|``.
    """

    support: ClassVar[str] = "count"
    extra_names: ClassVar[tuple[str, ...]] = ("alpha",)

    def _log_prob(self, y, eta, alpha):
        return self._log_prob_kernel(y, eta, alpha) + self._log_prob_const(y)

    def _log_prob_kernel(self, y, eta, alpha):
        r = 1.0 / alpha
        t = eta + jnp.log(alpha)  # log(alpha * mu)
        sp, sn = _softplus_pair(t)
        return gammaln(y + r) - gammaln(r) - r * sp - y * sn

    def _log_prob_const(self, y):
        """-log(y!): free of parameters (summed once per fit)."""
        return -gammaln(y + 1.0)

    def mean(self, eta):
        return jnp.exp(eta)

    def working_response(self, y, trials=None):
        return jnp.log(y + 0.5)

    def init_extra(self, y, mu, w=None):
        a = _wmean(((y - mu) ** 2 - mu) / mu**2, w)
        return {"alpha": jnp.clip(a, 0.05, 10.0)}
