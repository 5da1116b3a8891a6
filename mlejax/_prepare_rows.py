"""Per-row data arguments of ``fit``: ``exposure=``, ``var_weights=``, and the
dispersion convention (``dispersion=``); part of :mod:`mlejax._prepare`.
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np

from mlejax import _buckets, _checks
from mlejax import families as fam
from mlejax._prepare import (  # (defined above its import of us)
    align_index,
    as_array,
    is_traced,
)

# ----------------------------------------------------------------------------
# exposure=, var_weights=, dispersion=
# ----------------------------------------------------------------------------
#: R's name of each built-in family's default link (until families carry ``link_name``)
#: the links of the built-in families without a ``link=`` choice
_FIXED_LINKS = {"StudentT": "identity", "Laplace": "identity", "Categorical": "softmax"}


def link_name(family) -> str | None:
    """R's name of ``family``'s link (``"log"``, ``"logit"``, ...), or ``None``.

    ``family.link_name``; for the built-in families without a link choice
    their fixed link; ``None`` for a user family that does not say.
    """
    name = family.link_name
    if isinstance(name, str):
        return name
    if type(family).__module__.startswith("mlejax.families"):
        return _FIXED_LINKS.get(type(family).__name__)
    return None


def _vector(name: str, a, X):
    """``a`` as a 1-D array of X's dtype and length (host checks of the shape)."""
    _checks.require_real_dtype(name, a)
    a = as_array(name, a, X.dtype)
    if a.ndim != 1:
        raise ValueError(f"{name} must be 1-D (n,); got shape {a.shape}.")
    if a.shape[0] != X.shape[0]:
        raise ValueError(
            f"{name} has length {a.shape[0]} but X has {X.shape[0]} rows; "
            "pass one value per row."
        )
    return a


def prepare_rows(family, X_in, X, offset, exposure, var_weights):
    """``(offset + log(exposure), var_weights)`` checked (pandas aligned on
    ``X_in``'s index, as the other row inputs)."""
    exposure = align_index("exposure", exposure, X_in)
    var_weights = align_index("var_weights", var_weights, X_in)
    offset = prepare_exposure(family, exposure, offset, X)
    return offset, prepare_var_weights(family, var_weights, X)


def prepare_exposure(family, exposure, offset, X):
    """``offset + log(exposure)`` (``offset`` when ``exposure`` is None).

    Log link only. Concrete exposure must be positive and finite; traced
    exposure that is not gives a non-finite offset, which the traced input
    check reports (``Status.INVALID_INPUT``).
    """
    if exposure is None:
        return offset
    link = link_name(family)
    if link != "log":
        what = (
            f"{family.name} has link {link!r}"
            if link is not None
            else f"{family.name} does not declare its link (no link_name)"
        )
        raise ValueError(
            f"exposure= adds log(exposure) to the offset, which is a multiplicative "
            f"exposure only under a log link; {what}. Pass offset= instead "
            "(e.g. offset=np.log(exposure) if that is what you mean)."
        )
    exposure = _vector("exposure", exposure, X)
    e = _checks.concrete(exposure)
    if e is not None:
        bad = ~(np.isfinite(e) & (e > 0))
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise ValueError(
                f"exposure must be positive and finite (it enters as log(exposure)); "
                f"exposure[{i}] = {e[i].item()!r}. Drop that row or fix its exposure."
            )
    return offset + jnp.log(exposure)


def prepare_var_weights(family, var_weights, X):
    """Precision weights as an array (None stays None), checked on the host."""
    if var_weights is None:
        return None
    mode = family.var_weights_mode
    if mode not in ("loglik", "dispersion"):
        raise ValueError(
            f"var_weights= (precision weights) is not supported for {family.name}: "
            "they are defined for Gaussian and Gamma (dispersion phi / v) and for "
            "Poisson, Bernoulli, Binomial and Categorical (v * log p). Use "
            "weights= for frequency weights, or set the family's var_weights_mode."
        )
    var_weights = _vector("var_weights", var_weights, X)
    v = _checks.concrete(var_weights)
    if v is not None:
        bad = ~(np.isfinite(v) & (v >= 0))
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise ValueError(
                "var_weights must be non-negative and finite precision weights; "
                f"var_weights[{i}] = {v[i].item()!r}. Fix or drop that row."
            )
        if not (v > 0).any():
            raise ValueError(
                "var_weights are all 0: no row is left to fit (a row with "
                "var_weights 0 is left out)."
            )
    return var_weights


def mask_zero_precision(data):
    """Rows with precision weight 0 are left out, as R's ``glm``: frequency
    weight 0 and ``v = 1`` (host arrays on the host, traced in the trace)."""
    v = data.var_weights
    if v is None:
        return data
    if is_traced(v, data.weights):
        keep = v > 0
        w, v = jnp.where(keep, data.weights, 0.0), jnp.where(keep, v, 1.0)
        return data._replace(weights=w, var_weights=v)
    vh = np.asarray(v)
    if (vh > 0).all():
        return data
    w = np.where(vh > 0, np.asarray(data.weights), 0.0)
    v = np.where(vh > 0, vh, 1.0)
    return data._replace(weights=jnp.asarray(w), var_weights=jnp.asarray(v))


def pad_bucket(data, family):
    """``data`` padded to its shape bucket (:mod:`mlejax._buckets`); ``v = 1``
    on the padding rows."""
    n = data.X.shape[0]
    n_to = _buckets.bucket_size(n)
    padded = _buckets.pad_rows(*data[:5], family, n_to)
    v = data.var_weights
    if v is not None and n_to > n:
        v = jnp.asarray(np.concatenate([np.asarray(v), np.ones(n_to - n, v.dtype)]))
    return type(data)(*padded, v)


DISPERSIONS = ("mle", "pearson")


def check_dispersion(dispersion, family) -> str:
    """The dispersion convention for ``fit`` (static): ``"mle"``, ``"pearson"``
    or ``""`` (a family without an estimated dispersion)."""
    if dispersion is not None and dispersion not in DISPERSIONS:
        raise ValueError(
            f"dispersion must be None, 'mle' or 'pearson'; got {dispersion!r}."
        )
    if not isinstance(family, fam.Family):
        return ""  # prepare() names the bad family
    has = family.has_dispersion
    if not has:
        if dispersion == "pearson":
            raise ValueError(
                f"dispersion='pearson' is for families with an estimated dispersion "
                f"and a variance function (Gaussian, Gamma); {family.name} has none "
                "(its dispersion is fixed or it is not an exponential-dispersion "
                "family). Leave dispersion=None."
            )
        return ""
    if dispersion is None:
        return "pearson" if family.ols_convention else "mle"
    return dispersion
