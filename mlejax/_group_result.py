"""``GroupFits``: the result of :func:`mlejax.fit_groups` (one fit per group)."""

from __future__ import annotations

import dataclasses
from collections import Counter

import numpy as np

from mlejax.result import FitResult
from mlejax.status import reason as _reason


@dataclasses.dataclass(frozen=True, eq=False)
class GroupFits:
    """One fit per group: ``res[label]``, ``res.groups``, ``res.table()``.

    Attributes:
      fits: the batched :class:`~mlejax.result.FitResult`, leading axis the
        group (in the order of ``groups``); ``res.params``, ``res.stderr``,
        ``res.converged`` … read through to it.
      groups: the group labels (sorted, or a categorical's order).
      notes: the host diagnosis of each flagged group (``None`` where the
        fit's own status says it all).
      sizes: rows per group (as given, before padding).
      buckets: bucket size (rows after padding) -> number of groups.
    """

    fits: FitResult
    groups: np.ndarray
    notes: tuple
    sizes: np.ndarray
    buckets: dict

    def index(self, label) -> int:
        """Position of ``label`` in ``groups`` (``KeyError`` if absent)."""
        hits = np.flatnonzero(self.groups == label)
        if hits.size != 1:
            raise KeyError(
                f"no group {label!r}; groups are labels such as "
                f"{self.groups[:3].tolist()} (res.groups lists them)."
            )
        return int(hits[0])

    def __getitem__(self, label) -> FitResult:
        """The fit of the group labelled ``label`` (a label, not a position)."""
        return self.fits[self.index(label)]

    def __len__(self) -> int:
        return len(self.groups)

    def __iter__(self):
        return iter(self.groups)

    def __getattr__(self, name):
        if name.startswith("_") or name == "fits":
            raise AttributeError(name)
        return getattr(self.fits, name)

    @property
    def reason(self) -> list[str]:
        """Why each group's fit stopped, in words (the host diagnosis if any)."""
        codes = np.asarray(self.fits.status)
        return [
            note if note is not None else _reason(int(c))
            for note, c in zip(self.notes, codes, strict=True)
        ]

    def table(self):
        """Tidy table: one row per group and term (coefficients, then extras).

        Columns ``group, term, estimate, stderr, converged, reason``; a pandas
        DataFrame when pandas is installed, else a dict of NumPy arrays.
        """
        G = len(self.groups)
        params = np.asarray(self.fits.params).reshape(G, -1)
        stderr = np.asarray(self.fits.stderr).reshape(G, -1)
        terms = list(self.fits[0]._row_names(params.shape[1]))
        for key, value in self.fits.extra.items():
            terms.append(key)
            params = np.column_stack([params, np.asarray(value)])
            se = self.fits.extra_stderr.get(key, np.full(G, np.nan))
            stderr = np.column_stack([stderr, np.asarray(se)])
        k = len(terms)
        cols = {
            "group": np.repeat(self.groups, k),
            "term": np.tile(np.asarray(terms, dtype=object), G),
            "estimate": params.ravel(),
            "stderr": stderr.ravel(),
            "converged": np.repeat(np.asarray(self.fits.converged), k),
            "reason": np.repeat(np.asarray(self.reason, dtype=object), k),
        }
        try:
            import pandas as pd
        except ImportError:
            return cols
        return pd.DataFrame(cols)

    def summary(self) -> str:
        """Counts of groups, buckets and outcomes; ``res[label].summary()`` for one."""
        conv = np.asarray(self.fits.converged)
        short = np.asarray(_short_reasons(self.fits.status, self.notes))
        why = Counter(short[~conv].tolist())
        lines = [
            f"{len(self)} {self.fits.family} fits (one per group), solver "
            f"{self.fits.solver}, in {len(self.buckets)} bucket(s) of "
            f"{min(self.buckets)}..{max(self.buckets)} rows",
            f"converged {int(conv.sum())} of {conv.size}",
            *(f"  not converged, {r}: {k}" for r, k in why.most_common()),
            "res.table() for the coefficients; res[label].summary() for one group",
        ]
        return "\n".join(lines)

    def __repr__(self) -> str:
        conv = int(np.asarray(self.fits.converged).sum())
        return (
            f"GroupFits({len(self)} groups, family={self.fits.family!r}, "
            f"converged {conv}/{len(self)})"
        )


def _short_reasons(status, notes) -> list[str]:
    """Per group: the status in words, or "not fitted: too few rows"."""
    return [
        "not fitted: too few rows"
        if note is not None and note.startswith("not fitted")
        else _reason(int(c))
        for c, note in zip(np.asarray(status), notes, strict=True)
    ]
