"""Host-side input checks, run on concrete data before anything is traced.

Every check returns silently when handed a tracer: inside the caller's
``jit``/``vmap`` only static facts (shapes, dtypes) can be checked, and failure
there is data (``converged=False``), never an exception.
"""

from __future__ import annotations

import warnings

import jax
import jax.numpy  # noqa: F401
import numpy as np


def concrete(a):
    """``np.asarray(a)`` for concrete data, ``None`` for a tracer."""
    if a is None or isinstance(a, jax.core.Tracer):
        return None
    try:
        return np.asarray(a)
    except (jax.errors.TracerArrayConversionError, jax.errors.ConcretizationTypeError):
        return None


def _first_bad(mask: np.ndarray) -> str:
    i = int(np.flatnonzero(mask.ravel())[0])
    return f"flat index {i}" if mask.ndim != 1 else f"index {i}"


def require_real_dtype(name: str, a) -> None:
    """TypeError unless ``a`` holds real numbers (bool, int or float).

    Static (dtype only), so it also runs on tracers. Without it strings were
    silently parsed as numbers and complex input died deep inside the solver.
    """
    if a is None:
        return
    try:
        dt = getattr(a, "dtype", None)
        dt = np.dtype(dt if dt is not None else np.asarray(a).dtype)
    except Exception:  # ragged lists, pandas extension dtypes: judge the values
        try:
            dt = np.asarray(a).dtype
        except Exception:  # let np.asarray complain later with its own message
            return
    if dt.kind not in "biuf":
        raise TypeError(
            f"{name} must be a real numeric array; got dtype {dt}. "
            "Convert it first (e.g. np.asarray(..., dtype=float), or encode "
            "categories as dummy columns)."
        )


def require_finite(name: str, a, who: str = "") -> None:
    """ValueError naming the first NaN/inf entry of ``a``."""
    if isinstance(a, jax.Array) and not isinstance(a, jax.core.Tracer):
        # on the device, without copying a large X back to the host; eagerly,
        # even when a concrete array is captured inside the caller's jit
        with jax.ensure_compile_time_eval():
            if not jax.numpy.issubdtype(a.dtype, jax.numpy.inexact) or bool(
                jax.numpy.isfinite(a).all()
            ):
                return
    a = concrete(a)
    if a is None or a.dtype.kind not in "fc":
        return
    with np.errstate(over="ignore", invalid="ignore"):
        if np.isfinite(np.sum(a)):  # one streaming pass, no mask of X's size
            return
    bad = ~np.isfinite(a)
    if bad.any():
        where = _first_bad(bad)
        val = a.ravel()[np.flatnonzero(bad.ravel())[0]].item()
        prefix = f"{who}: " if who else ""
        raise ValueError(
            f"{prefix}{name} has a non-finite value ({val}) at {where}; "
            "drop or impute that row before fitting."
        )


def require_support(family: str, y, kind: str, upper=None) -> None:
    """ValueError when ``y`` lies outside a family's support.

    kind: "binary" {0,1}, "count" {0,1,2,...}, "positive" (0, inf),
    "labels" {0..upper-1}, "bounded_count" {0..upper} (upper an array), "real".
    """
    a = concrete(y)
    if a is None:
        return
    require_finite("y", a, family)
    if kind == "real":
        return
    a = a.astype(np.float64)
    integer = np.equal(np.floor(a), a)
    if kind == "binary":
        bad, expected = ~((a == 0) | (a == 1)), "0 or 1"
    elif kind == "count":
        bad, expected = ~(integer & (a >= 0)), "a non-negative integer count"
    elif kind == "positive":
        bad, expected = ~(a > 0), "a strictly positive value"
    elif kind == "labels":
        bad = ~(integer & (a >= 0) & (a < upper))
        expected = f"an integer class label in 0..{upper - 1}"
    elif kind == "bounded_count":
        u = concrete(upper)
        if u is None:
            u = np.inf
        bad = ~(integer & (a >= 0) & (a <= u))
        expected = "an integer in 0..trials"
    else:  # pragma: no cover - programming error
        raise AssertionError(kind)
    if bad.any():
        i = np.flatnonzero(bad.ravel())[0]
        raise ValueError(
            f"{family}: y has value {a.ravel()[i].item()!r} at {_first_bad(bad)}; "
            f"expected {expected}."
        )


def require_positive(name: str, a, who: str, strict: bool = True) -> None:
    """ValueError when a parameter such as a scale is not (strictly) positive."""
    a = concrete(a)
    if a is None:
        return
    require_finite(name, a, who)
    bad = ~(a > 0) if strict else ~(a >= 0)
    if bad.any():
        word = "positive" if strict else "non-negative"
        raise ValueError(
            f"{who}: {name} must be {word}; got {a.ravel()[np.flatnonzero(bad.ravel())[0]].item()!r}."
        )


def require_same_length(who: str, **arrays) -> None:
    """ValueError when the leading dimensions of the named arrays differ."""
    lengths = {
        k: np.shape(v)[0] for k, v in arrays.items() if v is not None and np.ndim(v) > 0
    }
    if len(set(lengths.values())) > 1:
        desc = ", ".join(f"{k} has {n}" for k, n in lengths.items())
        raise ValueError(f"{who}: mismatched numbers of observations: {desc}.")


def warn_x64_truncation(name: str, a) -> None:
    """Warn when float64 data would silently become float32 (x64 off)."""
    if jax.config.jax_enable_x64:
        return
    dt = getattr(a, "dtype", None)
    if dt is not None and np.dtype(dt) == np.float64:
        warnings.warn(
            f"{name} is float64 but jax_enable_x64 is off, so it is computed in "
            "float32; call mj.enable_x64() first for float64 statistics.",
            UserWarning,
            stacklevel=3,
        )
