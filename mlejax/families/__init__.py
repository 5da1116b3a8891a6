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

from mlejax.families.base import Family
from mlejax.families.binary import Bernoulli, Binomial
from mlejax.families.builtin import (
    STUDENT_T_DF_MAX,
    Categorical,
    Gamma,
    Gaussian,
    Laplace,
    NegativeBinomial,
    Poisson,
    StudentT,
)

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
    "STUDENT_T_DF_MAX",
]
