"""Helpers shared by the experiments: designs, timing, warnings, families by name."""

from __future__ import annotations

import statistics
import time
import warnings
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

import mlejax as mj

__all__ = [
    "FAMILIES",
    "family_by_name",
    "design",
    "timed",
    "collect_warnings",
    "rel_err",
    "first_below",
]


#: The families an experiment may name (the configs' allow-list is a subset):
#: class name -> constructor. Names are looked up here, never with ``getattr``.
FAMILIES: dict[str, Callable] = {
    "Gaussian": lambda n_classes, df: mj.families.Gaussian(),
    "Bernoulli": lambda n_classes, df: mj.families.Bernoulli(),
    "Categorical": lambda n_classes, df: mj.families.Categorical(n_classes),
    "Poisson": lambda n_classes, df: mj.families.Poisson(),
    "Laplace": lambda n_classes, df: mj.families.Laplace(),
    "StudentT": lambda n_classes, df: mj.families.StudentT(df=df),
}


def family_by_name(name: str, *, n_classes: int = 3, df: float | None = None):
    """A family from its class name (``"Gaussian"``, ``"Categorical"``, ...).

    Raises:
      ValueError: ``name`` is not in :data:`FAMILIES`.
    """
    make = FAMILIES.get(name) if isinstance(name, str) else None
    if make is None:
        raise ValueError(f"unknown family {name!r}; allowed: {', '.join(FAMILIES)}")
    return make(n_classes, df)


def design(key: jax.Array, n: int, p: int, correlation: float = 0.0) -> jax.Array:
    """``(n, p)`` design: a column of ones, then p-1 equicorrelated N(0, 1) columns.

    Column j>0 is ``sqrt(1-rho) z_j + sqrt(rho) z_0`` (pairwise correlation rho).
    """
    z = jax.random.normal(key, (n, p), dtype=jnp.float64)
    rho = correlation
    cols = jnp.sqrt(1.0 - rho) * z[:, 1:] + jnp.sqrt(rho) * z[:, :1]
    return jnp.concatenate([jnp.ones((n, 1)), cols], axis=1)


def timed(fn: Callable, *args, repeats: int = 3, **kw):
    """Call ``fn`` once to compile, then ``repeats`` times; (output, median seconds)."""
    out = jax.block_until_ready(fn(*args, **kw))
    times = []
    for _ in range(max(1, repeats)):
        t0 = time.perf_counter()
        out = jax.block_until_ready(fn(*args, **kw))
        times.append(time.perf_counter() - t0)
    return out, statistics.median(times)


class collect_warnings:
    """Context manager recording warnings as data (names and messages).

    Experiments report non-convergence instead of letting a warning escape
    (the test suite turns warnings into errors).
    """

    def __enter__(self):
        self._cm = warnings.catch_warnings(record=True)
        self.records = self._cm.__enter__()
        warnings.simplefilter("always")
        return self

    def __exit__(self, *exc):
        return self._cm.__exit__(*exc)

    @property
    def messages(self) -> list[str]:
        seen = []
        for w in self.records:
            s = f"{w.category.__name__}: {w.message}"
            if s not in seen:
                seen.append(s)
        return seen


def rel_err(a, b) -> float:
    """``||a - b|| / ||b||`` (Euclidean, flattened)."""
    a, b = np.ravel(np.asarray(a, float)), np.ravel(np.asarray(b, float))
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


def first_below(curve, threshold: float) -> int | None:
    """First index where ``curve <= threshold`` (None if never)."""
    c = np.asarray(curve, float)
    hit = np.flatnonzero(np.isfinite(c) & (c <= threshold))
    return int(hit[0]) if hit.size else None
