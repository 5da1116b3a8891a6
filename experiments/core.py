"""The shape every experiment shares: independent units, then a summary.

An experiment module defines

* ``units(config) -> list[str]``: the names of its units of work (a solver, a
  family, a chunk of Monte Carlo replications);
* ``run_unit(config, key, unit) -> dict``: one unit, a JSON-able dict; ``key``
  is the experiment's key, so shared data (a design, a dataset) is drawn the
  same way in every unit and on every resume;
* ``summarize(config, unit_results) -> results``: tables, summary numbers and
  the sentences of the report, from the unit results alone;
* ``plot(results, folder) -> list[Path]`` (optional).

:func:`run` wires them: it skips units already finished (resume), hands each
new result to ``on_chunk`` as soon as it exists (the chunk log, progress), and
summarises. Unit results pass through JSON before ``summarize`` whether they
were just computed or read back from ``chunks.jsonl``, so a resumed run gives
exactly the numbers of an uninterrupted one.
"""

from __future__ import annotations

import json
import time
import zlib
from collections.abc import Callable

import jax

from experiments.writers import to_jsonable

__all__ = ["fold", "run", "roundtrip"]


def fold(key: jax.Array, name: str) -> jax.Array:
    """A key for ``name`` derived from ``key`` (stable across runs and resumes)."""
    return jax.random.fold_in(key, zlib.crc32(name.encode("utf-8")) & 0x7FFFFFFF)


def roundtrip(result: dict) -> dict:
    """The unit result as it reads back from ``chunks.jsonl``."""
    return json.loads(json.dumps(to_jsonable(result), allow_nan=False))


def run(
    module,
    config,
    key: jax.Array,
    *,
    completed: dict[str, dict] | None = None,
    on_chunk: Callable[[str, dict, float], None] | None = None,
) -> dict:
    """Run ``module``'s unfinished units, then summarise all of them.

    Args:
      module: an experiment module (see the module docstring).
      config: its config dataclass.
      key: the experiment's PRNG key.
      completed: unit -> result of units finished earlier (skipped here).
      on_chunk: called ``on_chunk(unit, result, seconds)`` after each new unit;
        an exception raised there stops the run (the unit stays recorded only if
        the callback recorded it).

    Returns:
      ``module.summarize(config, unit_results)``.
    """
    done = dict(completed or {})
    for unit in module.units(config):
        if unit in done:
            continue
        t0 = time.perf_counter()
        result = roundtrip(module.run_unit(config, key, unit))
        seconds = time.perf_counter() - t0
        if on_chunk is not None:
            on_chunk(unit, result, seconds)
        done[unit] = result
    ordered = {u: done[u] for u in module.units(config)}
    return module.summarize(config, ordered)
