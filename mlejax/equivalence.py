"""Every classic loss is an affine function of a negative log-likelihood.

For a family with a classic loss (``family.loss_name``) and n observations,

    NLL(eta) = -sum_i log p(y_i | eta_i) = a * n * loss(input(eta), y) + b,

with ``a > 0`` and ``b`` free of ``eta`` (they depend on the extra parameters
and, for Poisson, on y through ``sum log(y!)``):

=============  ======================  ===============  ======================
family         loss                    a                b
=============  ======================  ===============  ======================
Gaussian       mse                     1 / (2 sigma^2)  (n/2) log(2 pi sigma^2)
Bernoulli      bce_with_logits         1                0
Categorical    softmax_cross_entropy   1                0  (input = [0, eta])
Poisson        poisson_nll             1                sum log(y_i!)
Laplace        l1                      1 / b            n log(2 b)
=============  ======================  ===============  ======================

So the gradients are proportional too: ``dNLL/deta = a * n * dloss/deta`` and,
with ``eta = X @ beta``, ``dNLL/dbeta = a * n * dloss/dbeta``; minimisers coincide.

>>> import jax.numpy as jnp
>>> import mlejax as mj
>>> y, eta = jnp.array([0.5, -1.0]), jnp.array([0.0, 0.0])
>>> a, b = mj.equivalence.affine_constants(mj.families.Gaussian(), y, scale=2.0)
>>> float(a)
0.125
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

from mlejax import families as fam
from mlejax.losses import LOSSES

__all__ = [
    "affine_constants",
    "loss_input",
    "nll",
    "loss",
    "compare",
    "ridge_prior_sd",
    "ridge_alpha_from_prior_sd",
    "lasso_prior_scale",
    "lasso_alpha_from_prior_scale",
    "alpha_from_sklearn_C",
    "sklearn_C_from_alpha",
    "alpha_from_sklearn_gaussian",
    "alpha_from_glum",
    "glum_alpha_from_alpha",
    "penalty_from_glmnet",
]


def loss_input(family: fam.Family, eta: jax.Array) -> jax.Array:
    """The loss's ``input`` for linear predictor ``eta``: eta, or logits [0, eta]."""
    return family.loss_input(eta)


def nll(family: fam.Family, y: ArrayLike, eta: ArrayLike, **extra) -> jax.Array:
    """Total negative log-likelihood ``-sum log p(y | eta)``."""
    return -jnp.sum(family.log_prob(y, eta, **extra))


def loss(family: fam.Family, y: ArrayLike, eta: ArrayLike) -> jax.Array:
    """The family's classic mean loss at ``eta``."""
    if family.loss_name is None:
        raise ValueError(f"{family.name} has no classic machine-learning loss.")
    return LOSSES[family.loss_name](loss_input(family, eta), y)


def affine_constants(
    family: fam.Family, y: ArrayLike, **extra
) -> tuple[jax.Array, jax.Array]:
    """Constants ``(a, b)`` with ``NLL = a * n * loss + b`` for this family.

    Args:
      family: Gaussian, Bernoulli, Categorical, Poisson or Laplace.
      y: the observations, shape ``(n,)``.
      **extra: ``scale`` for Gaussian (sigma) and Laplace (b).

    Returns:
      ``(a, b)`` as JAX scalars.

    Raises:
      ValueError: for a family without a classic loss.
    """
    return family.loss_constants(jnp.asarray(y), **extra)


def compare(
    family: fam.Family, X: ArrayLike, y: ArrayLike, beta: ArrayLike, **extra
) -> dict[str, jax.Array]:
    """Check the identity numerically at ``eta = X @ beta``.

    Returns the absolute deviations of the value, of the gradient in eta and of
    the gradient in beta between the NLL and ``a * n * loss + b``, next to the
    scale of each quantity (so a relative deviation is one division away).
    """
    X, y, beta = jnp.asarray(X), jnp.asarray(y), jnp.asarray(beta)
    a, b = affine_constants(family, y, **extra)
    n = y.shape[0]

    def f_nll(eta):
        return -jnp.sum(family.log_prob_rows(y.astype(eta.dtype), eta, **extra))

    def f_loss(eta):
        return a * n * loss(family, y, eta) + b

    eta = X @ beta
    g_nll, g_loss = jax.grad(f_nll)(eta), jax.grad(f_loss)(eta)
    gb_nll = jax.grad(lambda bb: f_nll(X @ bb))(beta)
    gb_loss = jax.grad(lambda bb: f_loss(X @ bb))(beta)
    return {
        "a": a,
        "b": b,
        "nll": f_nll(eta),
        "value_dev": jnp.abs(f_nll(eta) - f_loss(eta)),
        "grad_eta_dev": jnp.max(jnp.abs(g_nll - g_loss)),
        "grad_eta_scale": jnp.max(jnp.abs(g_nll)),
        "grad_beta_dev": jnp.max(jnp.abs(gb_nll - gb_loss)),
        "grad_beta_scale": jnp.max(jnp.abs(gb_nll)),
    }


# ----------------------------------------------------------------------------
# Penalties: mlejax's alpha <-> prior scales, scikit-learn, glum, glmnet
# ----------------------------------------------------------------------------
# mlejax minimises  NLL_total(beta) + alpha (r sum w|b| + (1-r)/2 sum w b^2)
# (docs/penalties.md derives every map below).


def ridge_prior_sd(alpha, weight=1.0):
    """Ridge ``alpha/2 w b^2`` is the prior ``N(0, sd^2)`` with ``sd = 1/sqrt(alpha w)``.

    >>> float(ridge_prior_sd(4.0))
    0.5
    """
    return 1.0 / jnp.sqrt(jnp.asarray(alpha) * weight)


def ridge_alpha_from_prior_sd(sd, weight=1.0):
    """Inverse of :func:`ridge_prior_sd`: ``alpha = 1 / (w sd^2)``."""
    return 1.0 / (jnp.asarray(sd) ** 2 * weight)


def lasso_prior_scale(alpha, weight=1.0):
    """Lasso ``alpha w |b|`` is the prior ``Laplace(0, b)`` with ``b = 1/(alpha w)``.

    >>> float(lasso_prior_scale(4.0))
    0.25
    """
    return 1.0 / (jnp.asarray(alpha) * weight)


def lasso_alpha_from_prior_scale(b, weight=1.0):
    """Inverse of :func:`lasso_prior_scale`: ``alpha = 1 / (w b)``."""
    return 1.0 / (jnp.asarray(b) * weight)


def alpha_from_sklearn_C(C):
    """scikit-learn ``LogisticRegression(C=C)`` (l2, l1 or elastic net) -> ``alpha = 1/C``.

    scikit-learn minimises ``C sum_i loss_i + r |w|_1 + (1-r)/2 |w|^2`` with
    the summed (not mean) log-loss = the total Bernoulli NLL; dividing by ``C``
    gives mlejax's objective with ``alpha = 1/C`` and ``l1_ratio = r``. The
    intercept is unpenalised in both (``fit_intercept=True`` with the lbfgs,
    newton-cg, newton-cholesky, sag and saga solvers; liblinear penalises it).
    ``sample_weight`` multiplies ``loss_i`` in both, so the map is unchanged.
    """
    return 1.0 / jnp.asarray(C)


def sklearn_C_from_alpha(alpha):
    """Inverse of :func:`alpha_from_sklearn_C`: ``C = 1/alpha``."""
    return 1.0 / jnp.asarray(alpha)


def alpha_from_sklearn_gaussian(alpha_sklearn, estimator: str, sum_weights, sigma2):
    """scikit-learn's Gaussian estimators -> mlejax's ``alpha`` (same ``l1_ratio``).

    ``Lasso``/``ElasticNet`` minimise ``RSS/(2 n) + a (r|w|_1 + (1-r)/2 |w|^2)``:
    ``alpha = a n / sigma^2``. ``Ridge`` minimises ``RSS + a |w|^2``:
    ``alpha = 2 a / (2 sigma^2) = a / sigma^2``. ``n`` is the sum of the sample
    weights and ``sigma^2`` the Gaussian variance at the MAP, which mlejax
    estimates jointly (``res.extra["scale"]**2 = RSS/n`` at the MAP): the map is
    exact at the solution, so it is applied with the fitted ``sigma^2``.
    """
    a = jnp.asarray(alpha_sklearn)
    if estimator in ("Lasso", "ElasticNet"):
        return a * sum_weights / sigma2
    if estimator == "Ridge":
        return a / sigma2
    raise ValueError(
        f"estimator must be 'Lasso', 'ElasticNet' or 'Ridge'; got {estimator!r}."
    )


def alpha_from_glum(alpha_glum, sum_weights, dispersion=1.0):
    """glum's (and glmnet's ``lambda``) -> mlejax's ``alpha`` (same ``l1_ratio``).

    glum minimises ``D / (2 sum s) + a (r |b|_1 + (1-r)/2 |b|^2)`` with ``D`` the
    weighted deviance; for an exponential family ``NLL = D / (2 phi) + c(y, phi)``,
    so multiplying by ``sum s / phi``: ``alpha = a * sum_s / phi``. ``phi`` is 1
    for Bernoulli, Binomial, Poisson and Categorical, ``sigma^2`` for Gaussian
    and ``1/shape`` for Gamma, at the MAP (mlejax estimates it jointly: use the
    fitted ``res.extra``).
    """
    return jnp.asarray(alpha_glum) * sum_weights / dispersion


def glum_alpha_from_alpha(alpha, sum_weights, dispersion=1.0):
    """Inverse of :func:`alpha_from_glum`: ``a = alpha * phi / sum_s``."""
    return jnp.asarray(alpha) * dispersion / sum_weights


def penalty_from_glmnet(lambda_, alpha_mix, sum_weights, dispersion=1.0, y_sd=None):
    """glmnet's ``(lambda, alpha)`` -> mlejax's ``(alpha, l1_ratio)``.

    glmnet (``standardize=FALSE``, intercept unpenalised) minimises
    ``-loglik/n + lambda (a |b|_1 + (1-a)/2 |b|^2)`` (Gaussian: ``RSS/(2n)``;
    its weights are rescaled to sum to ``n``): as glum, with ``l1_ratio = a``.
    For ``family="gaussian"`` glmnet first divides ``y`` by its standard
    deviation ``s_y`` (1/n form) and ``lambda`` by ``s_y``; an elastic net is
    not homogeneous in ``b``, so on the original scale its ridge part is
    ``lambda (1-a) / s_y``: pass ``y_sd`` then (the lasso, ``a = 1``, is not
    affected). Returns ``(alpha, l1_ratio)`` for ``mj.penalties.ElasticNet``.
    """
    lam = jnp.asarray(lambda_)
    l1 = lam * alpha_mix
    l2 = lam * (1.0 - alpha_mix) / (1.0 if y_sd is None else y_sd)
    total = l1 + l2
    ratio = jnp.where(total > 0, l1 / jnp.where(total > 0, total, 1.0), alpha_mix)
    return alpha_from_glum(total, sum_weights, dispersion), ratio
