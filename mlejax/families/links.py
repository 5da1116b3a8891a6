"""Link functions of the GLM families, named as in R's ``make.link``.

A family stores its link as a string (``Bernoulli(link="probit")``), so it
stays a hashable, static value; :func:`get` turns the name into a
:class:`Link`: a small table of pure elementwise functions of the linear
predictor ``eta``.

* ``inverse(eta)``: the mean ``mu`` (R's ``linkinv``);
* ``linkfun(mu)``: ``eta`` (R's ``linkfun``);
* ``log_mean(eta)``: ``log mu``, and for the binary links ``log1m_mean(eta)``:
  ``log(1 - mu)``, each in a form that keeps its accuracy for large ``|eta|``
  (``log_ndtr`` and ``log1p(-Phi(-x))`` for the probit tails, ``log(-expm1(-e^eta))`` with its asymptote
  for cloglog, ``atan2`` for cauchit, softplus for logit);
* ``domain``: where ``eta`` gives a valid mean (``"real"``, ``"positive"``:
  ``eta > 0``, ``"negative"``: ``eta < 0``, ``"nonzero"``); see :func:`valid`.

Derivatives are left to autodiff: every function is written so that its
first and second derivatives are finite wherever the value is.

>>> import jax.numpy as jnp
>>> from mlejax.families import links
>>> float(links.LINKS["probit"].log_mean(jnp.array(-40.0)))  # log Phi(-40)
-804.608...
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from typing import ClassVar

import jax
import jax.numpy as jnp
from jax.scipy.special import log_ndtr, ndtr, ndtri

from mlejax.families.base import Family

__all__ = ["Link", "get", "valid", "derivative", "LINKS"]

_LOG_PI = math.log(math.pi)
#: below this eta, cloglog's log mu uses its asymptote eta - e^eta / 2
_CLOGLOG_LOW = -30.0


@dataclasses.dataclass(frozen=True)
class Link:
    """One link: its name, the mean and its logs as functions of ``eta``."""

    name: str
    inverse: Callable
    linkfun: Callable
    log_mean: Callable
    domain: str = "real"
    log1m_mean: Callable | None = None


def _safe(eta, ok, fill):
    """``eta`` where ``ok``, else ``fill``: keeps a branch not taken finite."""
    return jnp.where(ok, eta, fill)


def _log_ndtr(x):
    """``log Phi(x)``; for x > 0 as ``log1p(-Phi(-x))``, exact to rounding where
    ``Phi(x)`` is near 1 (``log_ndtr`` loses ~1e-10 relative there)."""
    up = x > 0
    xu = _safe(x, up, 1.0)
    return jnp.where(up, jnp.log1p(-ndtr(-xu)), log_ndtr(_safe(x, ~up, -1.0)))


def _log_pos(eta):
    """``log eta`` for eta > 0; NaN-free elsewhere (the caller masks those rows)."""
    return jnp.log(_safe(eta, eta > 0, 1.0))


def _cloglog_log_mean(eta):
    # log(1 - exp(-e^eta)); for eta < -30 its asymptote eta - e^eta/2 (the
    # next term e^(2 eta)/24 < 1e-27), which keeps working where e^eta underflows
    low = eta < _CLOGLOG_LOW
    e_hi = _safe(eta, ~low, 0.0)
    e_lo = _safe(eta, low, _CLOGLOG_LOW - 1.0)
    return jnp.where(
        low, e_lo - 0.5 * jnp.exp(e_lo), jnp.log(-jnp.expm1(-jnp.exp(e_hi)))
    )


def _log_neg_expm1(eta):
    """``log(1 - e^eta)`` for eta < 0 (binomial log link)."""
    e = _safe(eta, eta < 0, -1.0)
    return jnp.where(e > -math.log(2.0), jnp.log(-jnp.expm1(e)), jnp.log1p(-jnp.exp(e)))


LINKS: dict[str, Link] = {
    "logit": Link(
        "logit",
        jax.nn.sigmoid,
        lambda mu: jnp.log(mu) - jnp.log1p(-mu),
        lambda eta: -jax.nn.softplus(-eta),
        log1m_mean=lambda eta: -jax.nn.softplus(eta),
    ),
    "probit": Link(
        "probit",
        ndtr,
        ndtri,
        _log_ndtr,
        log1m_mean=lambda eta: _log_ndtr(-eta),
    ),
    "cloglog": Link(
        "cloglog",
        lambda eta: -jnp.expm1(-jnp.exp(eta)),
        lambda mu: jnp.log(-jnp.log1p(-mu)),
        _cloglog_log_mean,
        log1m_mean=lambda eta: -jnp.exp(eta),
    ),
    "cauchit": Link(
        "cauchit",
        lambda eta: jnp.arctan2(1.0, -eta) / math.pi,
        lambda mu: jnp.tan(math.pi * (mu - 0.5)),
        lambda eta: jnp.log(jnp.arctan2(1.0, -eta)) - _LOG_PI,
        log1m_mean=lambda eta: jnp.log(jnp.arctan2(1.0, eta)) - _LOG_PI,
    ),
    "log": Link("log", jnp.exp, jnp.log, lambda eta: eta),
    "identity": Link(
        "identity", lambda eta: eta, lambda mu: mu, _log_pos, domain="positive"
    ),
    "sqrt": Link(
        "sqrt",
        lambda eta: eta * eta,
        jnp.sqrt,
        lambda eta: 2.0 * _log_pos(eta),
        domain="positive",
    ),
    "inverse": Link(
        "inverse",
        lambda eta: 1.0 / eta,
        lambda mu: 1.0 / mu,
        lambda eta: -_log_pos(eta),
        domain="positive",
    ),
}

#: the binomial log link: mean e^eta < 1, log(1 - mu) = log(-expm1(eta))
BINOMIAL_LOG = Link(
    "log", jnp.exp, jnp.log, lambda eta: eta, "negative", _log_neg_expm1
)
#: Gaussian's identity and inverse links: any real (non-zero) mean is valid
GAUSSIAN_IDENTITY = dataclasses.replace(LINKS["identity"], domain="real")
GAUSSIAN_INVERSE = dataclasses.replace(LINKS["inverse"], domain="nonzero")


def get(family: str, name: str, allowed: tuple[str, ...]) -> Link:
    """The :class:`Link` called ``name`` for ``family`` (ValueError if not allowed).

    The binomial log link and Gaussian's identity and inverse links differ
    from the table's in their valid range (``domain``), so the family's name
    picks the variant.
    """
    if not isinstance(name, str) or name not in allowed:
        raise ValueError(
            f"{family}: link={name!r} is not available; {family} supports the "
            f"links {list(allowed)} (R's names; default {allowed[0]!r})."
        )
    if family in ("Bernoulli", "Binomial") and name == "log":
        return BINOMIAL_LOG
    if family == "Gaussian" and name == "identity":
        return GAUSSIAN_IDENTITY
    if family == "Gaussian" and name == "inverse":
        return GAUSSIAN_INVERSE
    return LINKS[name]


def valid(link: Link, eta: jax.Array) -> jax.Array:
    """Traced: whether each ``eta`` gives a mean in the family's range."""
    finite = jnp.isfinite(eta)
    if link.domain == "positive":
        return finite & (eta > 0)
    if link.domain == "negative":
        return finite & (eta < 0)
    if link.domain == "nonzero":
        return finite & (eta != 0)
    return finite


def at_edge(link: Link, eta: jax.Array, keep: jax.Array, rtol: float) -> jax.Array:
    """Traced: whether a kept row's ``eta`` lies within ``rtol`` of the edge.

    For the links whose valid range ends at a finite ``eta = 0`` (identity,
    sqrt and inverse on a positive mean, the binomial log link), relative to
    the largest ``|eta|`` of the kept rows: a fit there has its MLE on (or
    beyond) the edge of the mean's range, where R's ``glm`` stops with
    "no valid set of coefficients".
    """
    if link.domain not in ("positive", "negative"):
        return jnp.asarray(False)
    a = jnp.where(keep, jnp.abs(eta), 0.0)
    scale = jnp.max(a)
    return jnp.any(keep & (a <= rtol * scale))


def derivative(fn: Callable, eta: jax.Array) -> jax.Array:
    """Elementwise derivative of an elementwise ``fn`` at ``eta`` (forward mode)."""
    return jax.jvp(fn, (eta,), (jnp.ones_like(eta),))[1]


# ---------------------------------------------------------------------------
# The family side: a ``link`` field and what follows from it
# ---------------------------------------------------------------------------
class _Linked(Family):
    """A family with a choice of link (R's names), stored as the field ``link``.

    ``allowed_links[0]`` is the default link, the one with closed-form fast
    paths (``nll_derivs``) and, where one exists, the classic loss; any other
    link goes through the autodiff path of the family contract, with
    ``log_prob`` written in the link's stable ``log mu`` / ``log(1 - mu)``
    forms and ``-inf`` where ``eta`` leaves the link's valid range.
    """

    allowed_links: ClassVar[tuple[str, ...]] = ()
    _loss: ClassVar[str | None] = None

    def __post_init__(self):
        get(self.name, self.link, self.allowed_links)

    @property
    def link_name(self) -> str:
        return self.link

    @property
    def default_link(self) -> bool:
        """Whether the link is the family's default (the fast closed forms)."""
        return self.link == self.allowed_links[0]

    @property
    def loss_name(self) -> str | None:  # type: ignore[override]  # per instance
        return self._loss if self.default_link else None

    @property
    def _lk(self) -> Link:
        return get(self.name, self.link, self.allowed_links)

    def mean(self, eta):
        return self._lk.inverse(eta)

    def linkfun(self, mu):
        return self._lk.linkfun(mu)

    def valid_eta(self, eta):
        return None if self._lk.domain == "real" else valid(self._lk, eta)

    def mean_out_of_range(self, eta, keep):
        if self._lk.domain == "real":
            return None
        bad = jnp.any(keep & ~valid(self._lk, eta))
        return bad | at_edge(self._lk, eta, keep, EDGE_RTOL)

    def _masked(self, eta, fn):
        """``fn(eta)`` where ``eta`` is valid for the link, ``-inf`` elsewhere.

        The invalid rows are evaluated at a harmless point, so that neither the
        value nor a derivative of the branch not taken is NaN.
        """
        lk = self._lk
        if lk.domain == "real":
            return fn(eta)
        ok = valid(lk, eta)
        safe = -1.0 if lk.domain == "negative" else 1.0
        return jnp.where(ok, fn(jnp.where(ok, eta, safe)), -jnp.inf)

    def _dlog_mean(self, eta):
        return derivative(self._lk.log_mean, eta)

    def _no_loss(self):
        if not self.default_link and type(self)._loss is not None:
            raise ValueError(
                f"{self.name}(link={self.link!r}) has no classic machine-learning "
                f"loss: its NLL is {type(self)._loss!r} only with the canonical link "
                f"{self.allowed_links[0]!r}."
            )


#: a fitted eta within this relative distance of the edge of its link's valid
#: range (e.g. a Poisson identity-link mean of 1e-9 times the largest) is at
#: the edge: ``Status.INVALID_MEAN``
EDGE_RTOL = 1e-7


def _binary_log_prob(lk, y, top, eta):
    """``y log mu + (top - y) log(1 - mu)`` (``0 log 0 = 0``), stable forms."""
    a = jnp.where(y > 0, y * lk.log_mean(eta), 0.0)
    return a + jnp.where(top > y, (top - y) * lk.log1m_mean(eta), 0.0)
