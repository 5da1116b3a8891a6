"""Binary responses: :class:`Bernoulli` and :class:`Binomial`, with R's links."""

from __future__ import annotations

import dataclasses
from typing import ClassVar

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.special import gammaln, xlogy

from mlejax import _checks
from mlejax._math import softplus_pair as _softplus_pair
from mlejax.families import links as _links
from mlejax.families._special import _n_dtype
from mlejax.families.links import _binary_log_prob, _Linked


class _Binary(_Linked):
    """Shared by Bernoulli and Binomial: links, separation at 0 and the top."""

    support: ClassVar[str] = "binary"
    can_separate: ClassVar[bool] = True
    var_weights_mode: ClassVar[str | None] = "loglik"
    allowed_links: ClassVar[tuple[str, ...]] = (
        "logit",
        "probit",
        "cloglog",
        "cauchit",
        "log",
    )

    @property
    def convex(self) -> bool:  # type: ignore[override]  # per instance
        # log mu and log(1 - mu) are concave in eta except for cauchit
        return self.link != "cauchit"

    def separation_log_prob(self, y, eta, **kw):
        if self.default_link:
            return self.log_prob_rows(y, eta, **kw)
        sp, sn = _softplus_pair(eta)  # the logit log p at this eta
        top = kw.get("trials", 1.0)
        return -y * sn - (top - y) * sp

    def expected_eta_weight(self, eta, trials=None):
        # mu'^2 / (mu (1 - mu)) = (d log mu)(-d log(1 - mu)): no 0/0 in the tails
        lk = self._lk
        e = jnp.where(_links.valid(lk, eta), eta, -1.0)
        w = _links.derivative(lk.log_mean, e) * -_links.derivative(lk.log1m_mean, e)
        return w if trials is None else trials * w

    def separation_signs(self, y, **data):
        top = 1.0 if data.get("trials") is None else np.asarray(data["trials"], float)
        return np.where(y <= 0, -1.0, np.where(y >= top, 1.0, 0.0))


@dataclasses.dataclass(frozen=True)
class Bernoulli(_Binary):
    """Binary y in {0, 1}, logit link: ``log p = y*eta - softplus(eta)`` (BCE).

    Evaluated as ``-y*softplus(-eta) - (1-y)*softplus(eta)``: the same value
    without cancellation, so ``log p`` near 0 (y=1, eta=30) stays accurate.
    Newton starts from ``eta = 0``.
    """

    link: str = "logit"
    _loss: ClassVar[str] = "bce_with_logits"

    def _log_prob(self, y, eta):
        if not self.default_link:
            return self._masked(eta, lambda e: _binary_log_prob(self._lk, y, 1.0, e))
        sp, sn = _softplus_pair(eta)
        return -y * sn - (1.0 - y) * sp

    def nll_derivs(self, y, eta, **data):
        """First and second derivative of ``-log p`` in ``eta`` (canonical link)."""
        if not self.default_link:
            return None
        mu = jax.nn.sigmoid(eta)
        return mu - y, mu * (1.0 - mu)

    def working_response(self, y, **data):
        # logit: start from eta = 0; other links: R's mustart (y + 1/2) / 2
        return None if self.default_link else self.linkfun(0.25 + 0.5 * y)

    def loss_constants(self, y, **extra):
        self._no_loss()
        _, dt = _n_dtype(y)
        return jnp.ones((), dt), jnp.zeros((), dt)

    def saturated_log_prob(self, y, **data):
        return jnp.zeros_like(y)


@dataclasses.dataclass(frozen=True)
class Binomial(_Binary):
    """Successes y out of ``trials``, logit link, binomial coefficient included."""

    link: str = "logit"
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
            if not (np.all(np.floor(t) == t) and np.all(t >= 0)):
                bad = np.flatnonzero(~((np.floor(t) == t) & (t >= 0)))[0]
                raise ValueError(
                    "Binomial: trials must be non-negative integers; "
                    f"trials[{bad}] = {t.flat[bad]!r}."
                )
        _checks.require_support(self.name, y, "bounded_count", upper=trials)

    def _log_prob(self, y, eta, trials):
        return self.log_prob_kernel(y, eta, trials) + self.log_prob_const(y, trials)

    def log_prob_kernel(self, y, eta, trials):
        if not self.default_link:
            lk = self._lk
            return self._masked(eta, lambda e: _binary_log_prob(lk, y, trials, e))
        # y*eta - trials*softplus(eta), without cancellation (see Bernoulli)
        sp, sn = _softplus_pair(eta)
        return -y * sn - (trials - y) * sp

    def log_prob_const(self, y, trials):
        """log C(trials, y): free of parameters (summed once per fit)."""
        return gammaln(trials + 1.0) - gammaln(y + 1.0) - gammaln(trials - y + 1.0)

    def nll_derivs(self, y, eta, trials):
        if not self.default_link:
            return None
        mu = jax.nn.sigmoid(eta)
        return trials * mu - y, trials * mu * (1.0 - mu)

    def null_mean(self, y, w, trials=None):
        return jnp.sum(jnp.where(w > 0, w * y, 0.0)) / jnp.sum(
            jnp.where(w > 0, w * trials, 0.0)
        )

    def working_response(self, y, trials=None):
        p = (y + 0.5) / (trials + 1.0)  # R's mustart
        return self.linkfun(p)

    def saturated_log_prob(self, y, trials):
        pr = jnp.where(trials > 0, y / jnp.where(trials > 0, trials, 1.0), 0.0)
        return (
            xlogy(y, pr) + xlogy(trials - y, 1.0 - pr) + self.log_prob_const(y, trials)
        )
