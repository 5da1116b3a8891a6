"""mlejax: maximum-likelihood estimation in JAX.

Every classic machine-learning loss is a negative log-likelihood: families are
pure log-likelihood functions, ``jax.grad``/``jax.hessian`` give exact
derivatives, Newton, L-BFGS and any Optax optimiser fit them, and the inverse
Fisher information gives standard errors.

>>> import mlejax as mj
>>> mj.add_constant([[2.0], [3.0]]).tolist()
[[1.0, 2.0], [1.0, 3.0]]
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

from mlejax import equivalence, families, fit, losses, penalties, stattests, status
from mlejax.families import STUDENT_T_DF_MAX
from mlejax.fit import fit_likelihood, ols
from mlejax.formula import fit_formula
from mlejax.groups import GroupFits, fit_groups
from mlejax.path import fit_path
from mlejax.profile import profile_ci
from mlejax.profile_likelihood import profile_ci_likelihood
from mlejax.result import FitResult
from mlejax.stattests import delta_method, lr_test, score_test
from mlejax.status import ConvergenceWarning, PerfectSeparationWarning, Status

__version__ = "0.1.0"


def _enable_compilation_cache() -> None:
    """Persist compiled fits across processes (the second run compiles nothing).

    mlejax points JAX's persistent compilation cache at
    ``$MLEJAX_COMPILATION_CACHE`` (default ``~/.cache/mlejax/jax``) unless the
    caller already configured one; set ``MLEJAX_COMPILATION_CACHE=0`` to turn
    this off.
    """
    import os

    path = os.environ.get("MLEJAX_COMPILATION_CACHE")
    if path in ("0", "", "off", "false") or jax.config.jax_compilation_cache_dir:
        return
    if path is None:
        base = os.environ.get("XDG_CACHE_HOME") or os.path.join(
            os.path.expanduser("~"), ".cache"
        )
        path = os.path.join(base, "mlejax", "jax")
    try:
        os.makedirs(path, exist_ok=True)
    except OSError:
        return
    jax.config.update("jax_compilation_cache_dir", path)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.2)


_enable_compilation_cache()


def enable_x64(enable: bool = True) -> None:
    """Turn on (or off) float64 computation in JAX (``jax_enable_x64``).

    Call it once at the top of a script, before creating arrays. Statistics
    default to float64; float32 data still give float32 fits.
    """
    jax.config.update("jax_enable_x64", bool(enable))


def add_constant(X: ArrayLike, prepend: bool = True) -> Any:
    """Add a column of ones to ``X`` (like ``statsmodels.add_constant``).

    Args:
      X: array of shape ``(n, p)`` or ``(n,)``; a pandas DataFrame gets a
        ``"const"`` column and stays a DataFrame.
      prepend: put the column first (default) or last.

    Returns:
      ``(n, p + 1)`` array of the same kind (NumPy, JAX or pandas) and dtype.
    """
    if hasattr(X, "columns") and hasattr(X, "insert"):
        out = X.copy()
        out.insert(0 if prepend else out.shape[1], "const", 1.0)
        return out
    is_jax = isinstance(X, jax.Array)
    xp = jnp if is_jax else np
    X = xp.asarray(X)
    if X.dtype.kind not in "fc":
        X = X.astype(xp.result_type(float))
    if X.ndim == 1:
        X = X[:, None]
    if X.ndim != 2:
        raise ValueError(f"add_constant: X must be 1-D or 2-D; got shape {X.shape}.")
    ones = xp.ones((X.shape[0], 1), X.dtype)
    return xp.concatenate([ones, X] if prepend else [X, ones], axis=1)


__all__ = [
    "__version__",
    "FitResult",
    "Status",
    "ConvergenceWarning",
    "PerfectSeparationWarning",
    "STUDENT_T_DF_MAX",
    "fit",
    "fit_likelihood",
    "fit_formula",
    "fit_path",
    "fit_groups",
    "GroupFits",
    "ols",
    "add_constant",
    "enable_x64",
    "equivalence",
    "families",
    "losses",
    "penalties",
    "status",
    "stattests",
    "lr_test",
    "score_test",
    "delta_method",
    "profile_ci",
    "profile_ci_likelihood",
]
