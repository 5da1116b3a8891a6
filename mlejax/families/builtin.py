"""The built-in families (see :mod:`mlejax.families`)."""

from __future__ import annotations

import dataclasses
import math
from typing import ClassVar

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.special import gammaln, xlogy

from mlejax import _checks
from mlejax._math import abs0 as _abs
from mlejax._math import log_softmax_at as _log_softmax_at
from mlejax._math import softplus_pair as _softplus_pair
from mlejax.families import links as _links
from mlejax.families._special import (
    _NB_STIRLING_R,
    _lgamma_half_step,
    _n_dtype,
    _stirling_tail,
    _wmean,
)
from mlejax.families.base import Family
from mlejax.families.links import _Linked

_LOG_2PI = math.log(2.0 * math.pi)

#: StudentT degrees of freedom are capped here; reaching it means "use Gaussian".
STUDENT_T_DF_MAX = 1000.0
#: NegativeBinomial alpha below this is no overdispersion: "use Poisson".
NB_ALPHA_MIN = 1e-8
#: Gamma shape above this: y is deterministic given X (coefficient of variation 1e-5).
GAMMA_SHAPE_MAX = 1e10


@dataclasses.dataclass(frozen=True)
class Gaussian(_Linked):
    """Normal noise: ``y ~ N(mu, scale^2)``, ``mu = eta`` (identity link: MSE).

    ``link="log"`` or ``"inverse"`` (``mu = 1/eta``) are fitted by Newton on
    the exact Hessian instead of least squares; their ``stderr`` keeps the OLS
    convention (R's ``summary.glm``: dispersion ``RSS / (n - p)``).
    """

    link: str = "identity"
    allowed_links: ClassVar[tuple[str, ...]] = ("identity", "log", "inverse")
    _loss: ClassVar[str] = "mse"
    extra_names: ClassVar[tuple[str, ...]] = ("scale",)
    ols_convention: ClassVar[bool] = True
    var_weights_mode: ClassVar[str | None] = "dispersion"
    precision_extra: ClassVar[tuple] = ("scale", -0.5)  # N(mu, scale^2 / v)
    variance_power: ClassVar[int] = 0

    @property
    def newton_engine(self) -> str:  # type: ignore[override]  # per instance
        return "lstsq" if self.default_link else "newton"

    def _log_prob(self, y, eta, scale):
        def lp(e):
            z = (y - self._lk.inverse(e)) / scale
            return -0.5 * z * z - jnp.log(scale) - 0.5 * _LOG_2PI

        return self._masked(eta, lp)

    def working_response(self, y, **data):
        return y if self.default_link else self.linkfun(y)  # R's mustart = y

    def expected_eta_weight(self, eta, scale):
        d = _links.derivative(self._lk.inverse, eta)
        return d * d / scale**2

    def init_extra(self, y, mu, w=None):
        return {"scale": jnp.sqrt(_wmean((y - mu) ** 2, w))}

    def loss_constants(self, y, **extra):
        self._no_loss()
        n, dt = _n_dtype(y)
        s2 = jnp.asarray(extra["scale"], dt) ** 2
        return 1.0 / (2.0 * s2), 0.5 * n * (_LOG_2PI + jnp.log(s2))

    def saturated_log_prob(self, y, scale):
        return jnp.zeros_like(y) - jnp.log(scale) - 0.5 * _LOG_2PI

    def deviance_scale(self, scale):
        return scale**2


@dataclasses.dataclass(frozen=True)
class Categorical(Family):
    """Class labels 0..K-1, softmax link with class 0 as reference (logit 0).

    ``eta`` has shape ``(n, K-1)``; its NLL is softmax cross-entropy with
    logits ``[0, eta]``. Newton starts from ``eta = 0``.

    ``y`` may hold labels (strings, pandas categorical): classes in the
    categorical's or sorted order. ``reference`` (a label, or a code for
    integer ``y``) moves that class to the front (``res.classes``).
    """

    n_classes: int = 2
    reference: object = None
    loss_name: ClassVar[str] = "softmax_cross_entropy"
    support: ClassVar[str] = "labels"
    eta_has_axis: ClassVar[bool] = True
    convex: ClassVar[bool] = True
    can_separate: ClassVar[bool] = True
    var_weights_mode: ClassVar[str | None] = "loglik"

    def __post_init__(self):
        if not isinstance(self.n_classes, int) or self.n_classes < 2:
            raise ValueError(
                f"Categorical: n_classes must be an int >= 2; got {self.n_classes!r}."
            )
        if not isinstance(self.reference, str | int | float | np.integer | None):
            raise ValueError(
                f"Categorical: reference must be a class label; got {self.reference!r}."
            )

    @property
    def eta_dim(self) -> int:
        return self.n_classes - 1

    def _label_count(self):
        return self.n_classes

    def empty_class(self, y, w):
        counts = (
            jnp.zeros(self.n_classes, w.dtype)
            .at[y.astype(int)]
            .add(jnp.where(w > 0, w, 0.0), mode="drop")
        )
        return jnp.any(counts <= 0)

    def check_y(self, y, **data) -> None:
        _checks.require_support(self.name, y, "labels", upper=self.n_classes)

    def logits(self, eta):
        """Full logits ``[0, eta]`` of shape ``(..., K)``."""
        zero = jnp.zeros(eta.shape[:-1] + (1,), eta.dtype)
        return jnp.concatenate([zero, eta], axis=-1)

    def _log_prob(self, y, eta):
        return _log_softmax_at(self.logits(eta), y)

    def mean(self, eta):
        return jax.nn.softmax(self.logits(eta), axis=-1)

    def loss_input(self, eta):
        return self.logits(eta)

    def loss_constants(self, y, **extra):
        _, dt = _n_dtype(y)
        return jnp.ones((), dt), jnp.zeros((), dt)


class _Counts(_Linked):
    """Shared by Poisson and NegativeBinomial: links, ``-log y!`` split out."""

    support: ClassVar[str] = "count"
    can_separate: ClassVar[bool] = True
    allowed_links: ClassVar[tuple[str, ...]] = ("log", "identity", "sqrt")

    def log_prob_const(self, y, **data):
        """-log(y!): free of parameters (summed once per fit)."""
        return -gammaln(y + 1.0)

    def working_response(self, y, **data):
        # log link: log(y + 1/2); other links: R's mustart y + 0.1
        return jnp.log(y + 0.5) if self.default_link else self.linkfun(y + 0.1)

    def separation_signs(self, y, **data):
        return np.where(y <= 0, -1.0, 0.0)  # zeros can be driven to mean 0


@dataclasses.dataclass(frozen=True)
class Poisson(_Counts):
    """Counts, log link: ``log p = y*eta - exp(eta) - log(y!)`` (Poisson NLL).

    ``link="identity"`` (``mu = eta > 0``) or ``"sqrt"`` (``mu = eta^2``,
    ``eta > 0``): ``log p = y log mu - mu - log(y!)``, concave in eta as well.
    """

    link: str = "log"
    _loss: ClassVar[str] = "poisson_nll"
    convex: ClassVar[bool] = True
    var_weights_mode: ClassVar[str | None] = "loglik"

    def _log_prob(self, y, eta):
        return self.log_prob_kernel(y, eta) + self.log_prob_const(y)

    def log_prob_kernel(self, y, eta):
        if not self.default_link:
            lk = self._lk
            return self._masked(
                eta,
                lambda e: jnp.where(y > 0, y * lk.log_mean(e), 0.0) - lk.inverse(e),
            )
        return y * eta - jnp.exp(eta)

    def nll_derivs(self, y, eta, **data):
        if not self.default_link:
            return None
        mu = jnp.exp(eta)
        return mu - y, mu

    def expected_eta_weight(self, eta):
        d = self._dlog_mean(eta)
        return d * d * self.mean(eta)

    def loss_constants(self, y, **extra):
        self._no_loss()
        _, dt = _n_dtype(y)
        return jnp.ones((), dt), jnp.sum(gammaln(jnp.asarray(y, dt) + 1.0))

    def saturated_log_prob(self, y, **data):
        return xlogy(y, y) - y + self.log_prob_const(y)


@dataclasses.dataclass(frozen=True)
class Laplace(Family):
    """Double-exponential noise, identity link (median): NLL is L1 / LAD.

    The derivative in eta at a zero residual is 0, as for ``losses.l1`` (and
    PyTorch's ``l1_loss``), so the NLL and L1 gradients agree everywhere. The
    log-likelihood is not smooth: standard errors use the expected information
    (``b^2 (X'WX)^-1`` and ``b^2 / n``) whichever solver fitted it.
    """

    loss_name: ClassVar[str] = "l1"
    extra_names: ClassVar[tuple[str, ...]] = ("scale",)
    smooth: ClassVar[bool] = False
    newton_engine: ClassVar[str] = "lad"

    def _log_prob(self, y, eta, scale):
        return -_abs(y - eta) / scale - jnp.log(2.0 * scale)

    def working_response(self, y, **data):
        return y

    def init_extra(self, y, mu, w=None):
        return {"scale": _wmean(jnp.abs(y - mu), w)}

    def expected_nll_hessian(self, eta, scale):
        # E[d2/deta2] = 1/b^2, E[d2/db2] = 2 E|r|/b^3 - 1/b^2 = 1/b^2, cross 0
        h = jnp.broadcast_to(1.0 / scale**2, eta.shape)
        z = jnp.zeros_like(h)
        return jnp.stack([jnp.stack([h, z], -1), jnp.stack([z, h], -1)], -2)

    def loss_constants(self, y, **extra):
        _, dt = _n_dtype(y)
        b = jnp.asarray(extra["scale"], dt)
        return 1.0 / b, jnp.shape(y)[0] * jnp.log(2.0 * b)


@dataclasses.dataclass(frozen=True)
class StudentT(Family):
    """Student-t noise, identity link; ``df=None`` estimates the degrees of freedom.

    An estimated ``df`` is capped at ``STUDENT_T_DF_MAX``: reaching it stops
    the fit with ``converged=False`` and a warning suggesting ``Gaussian``.
    """

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

    @property
    def extra_bounds(self) -> dict[str, tuple[float, float]]:
        return {} if self.df is not None else {"df": (0.0, STUDENT_T_DF_MAX)}

    def at_bound(self, y, w, extra):
        # scale -> 0 is an exact fit: the likelihood is unbounded
        top = jnp.max(jnp.where(w > 0, jnp.abs(y), 0.0))
        exact = extra["scale"] <= 1e3 * jnp.finfo(y.dtype).eps * jnp.maximum(
            top, 1e-300
        )
        return super().at_bound(y, w, extra) | exact

    def bound_message(self, extra) -> str:
        if "df" in extra and float(extra["df"]) >= STUDENT_T_DF_MAX * (1 - 1e-9):
            return (
                f"StudentT: df reached its bound {STUDENT_T_DF_MAX:g} (df -> inf); the "
                "noise looks Gaussian: fit mj.families.Gaussian() instead. "
                "converged=False."
            )
        return (
            "StudentT: scale -> 0: an exact fit (most residuals are 0), where the "
            "likelihood is unbounded. converged=False."
        )

    def _log_prob(self, y, eta, scale, df=None):
        df = jnp.asarray(self.df, eta.dtype) if df is None else df
        z = (y - eta) / scale
        return (
            _lgamma_half_step(0.5 * df)
            - 0.5 * (jnp.log(df) + math.log(math.pi))
            - jnp.log(scale)
            - 0.5 * (df + 1.0) * jnp.log1p(z * z / df)
        )

    def working_response(self, y, **data):
        return y

    def init_extra(self, y, mu, w=None):
        out = {"scale": jnp.sqrt(_wmean((y - mu) ** 2, w))}
        if self.df is None:
            out["df"] = jnp.asarray(10.0, out["scale"].dtype)
        return out


@dataclasses.dataclass(frozen=True)
class Gamma(_Linked):
    """Positive y, log link, mean ``exp(eta)`` and estimated ``shape`` k.

    ``log p = k log(k/mu) + (k-1) log y - k y / mu - lgamma(k)``.
    ``link="inverse"`` (``mu = 1/eta``, R's canonical Gamma link) and
    ``"identity"`` need ``eta > 0``.
    """

    link: str = "log"
    allowed_links: ClassVar[tuple[str, ...]] = ("log", "inverse", "identity")
    support: ClassVar[str] = "positive"
    extra_names: ClassVar[tuple[str, ...]] = ("shape",)
    var_weights_mode: ClassVar[str | None] = "dispersion"
    precision_extra: ClassVar[tuple] = ("shape", 1)  # variance mu^2 / (shape v)
    variance_power: ClassVar[int] = 2

    def _log_prob(self, y, eta, shape):
        k = shape

        def lp(e):
            lm = self._lk.log_mean(e)
            return k * (jnp.log(k) - lm) + xlogy(k - 1.0, y) - k * y * jnp.exp(-lm)

        return self._masked(eta, lp) - gammaln(k)

    def working_response(self, y, **data):
        return self.linkfun(y)  # R's mustart = y

    def expected_eta_weight(self, eta, shape):
        d = self._dlog_mean(eta)
        return shape * d * d

    @property
    def extra_bounds(self) -> dict[str, tuple[float, float]]:
        return {"shape": (0.0, GAMMA_SHAPE_MAX)}

    def bound_message(self, extra) -> str:
        return (
            f"Gamma: shape reached {GAMMA_SHAPE_MAX:g} (shape -> inf): y is "
            "(nearly) deterministic given X, e.g. constant. converged=False."
        )

    def init_extra(self, y, mu, w=None):
        cv2 = _wmean(((y - mu) / mu) ** 2, w)
        return {"shape": 1.0 / cv2}

    def saturated_log_prob(self, y, shape):
        k = shape
        return k * jnp.log(k) - jnp.log(y) - k - gammaln(k)

    def deviance_scale(self, shape):
        return 1.0 / shape


@dataclasses.dataclass(frozen=True)
class NegativeBinomial(_Counts):
    """Overdispersed counts (NB2), log link: variance ``mu + alpha mu^2``.

    ``link="identity"`` or ``"sqrt"`` as for Poisson (``eta > 0``): the same
    log-likelihood at ``log mu`` from the link.

    With ``r = 1/alpha``: ``log p = lgamma(y+r) - lgamma(r) - log(y!)
    + r log(r/(r+mu)) + y log(mu/(r+mu))``, the last two terms written as
    ``-r*softplus(t) - y*softplus(-t)`` with ``t = eta + log(alpha)`` so that
    neither cancels for small ``alpha*mu`` nor overflows for large ``|eta|``.
    """

    link: str = "log"
    extra_names: ClassVar[tuple[str, ...]] = ("alpha",)

    def _log_prob(self, y, eta, alpha):
        return self.log_prob_kernel(y, eta, alpha) + self.log_prob_const(y)

    def log_prob_kernel(self, y, eta, alpha):
        if self.default_link:
            return self._kernel(y, eta, alpha)
        return self._masked(eta, lambda e: self._kernel(y, self._lk.log_mean(e), alpha))

    def expected_eta_weight(self, eta, alpha):
        d = self._dlog_mean(eta)
        mu = self.mean(eta)
        return d * d * mu / (1.0 + alpha * mu)

    def _kernel(self, y, eta, alpha):
        """The log-link kernel at ``eta = log mu`` (any link: pass ``log mu``)."""
        r = 1.0 / alpha
        t = eta + jnp.log(alpha)  # log(alpha * mu)
        sp, sn = _softplus_pair(t)
        small = gammaln(y + r) - gammaln(r) - r * sp - y * sn
        # For large r = 1/alpha, lgamma(y + r) - lgamma(r) cancels (it lost 126
        # at alpha = 1e-16). Stirling's series for both, with the y log r terms
        # cancelled against -y softplus(-t) analytically:
        #   log p - (-log y!) = y eta - y + (r + y - 1/2) log1p(y/r)
        #                       - (r + y) log1p(mu/r) + c(r + y) - c(r),
        # c(z) = 1/(12 z) - 1/(360 z^3) + 1/(1260 z^5) (error < 1e-17 for z > 100).
        big = r > _NB_STIRLING_R
        rb = jnp.where(big, r, _NB_STIRLING_R)
        # log1p(mu / r) = softplus(t) = sp where this branch is taken (and
        # finite, with finite derivatives, where it is not)
        large = (
            y * eta
            - y
            + (rb + y - 0.5) * jnp.log1p(y / rb)
            - (rb + y) * sp
            + _stirling_tail(rb + y)
            - _stirling_tail(rb)
        )
        return jnp.where(big, large, small)

    @property
    def extra_bounds(self) -> dict[str, tuple[float, float]]:
        return {"alpha": (NB_ALPHA_MIN, math.inf)}

    def bound_message(self, extra) -> str:
        return (
            f"NegativeBinomial: alpha reached {NB_ALPHA_MIN:g} (alpha -> 0): no "
            "overdispersion; fit mj.families.Poisson() instead. converged=False."
        )

    def init_extra(self, y, mu, w=None):
        a = _wmean(((y - mu) ** 2 - mu) / mu**2, w)
        return {"alpha": jnp.clip(a, 0.05, 10.0)}

    def saturated_log_prob(self, y, alpha):
        pos = y > 0
        lm = jnp.log(jnp.where(pos, y, 1.0))  # log mu = log y, whatever the link
        lp = self._kernel(y, lm, alpha) + self.log_prob_const(y)
        return jnp.where(pos, lp, 0.0)
