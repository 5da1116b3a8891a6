"""R's coefficient names for formulaic's columns, and R's spellings in formulas.

Private helpers of :mod:`mlejax.formula`: level text as R's ``as.character``
writes it, contrast column labels as R names them, the first factor of an
interaction varying fastest, and ``^`` inside ``I()`` as a power.
"""

from __future__ import annotations

import itertools
import re

import numpy as np

__all__ = ["r_names", "r_level", "r_power", "scan"]


def scan(s: str, start: int) -> int:
    """Index just past the parenthesis that closes the one at ``s[start]``."""
    depth = 0
    for i in range(start, len(s)):
        if s[i] == "(":
            depth += 1
        elif s[i] == ")":
            depth -= 1
            if depth == 0:
                return i + 1
    raise ValueError(f"unbalanced parentheses in {s!r}.")


def r_level(v) -> str:
    """A factor level as R's ``as.character`` writes it (6 not 6.0, TRUE)."""
    v = v.item() if hasattr(v, "item") else v
    if isinstance(v, bool):
        return "TRUE" if v else "FALSE"
    if isinstance(v, float) and v.is_integer():
        return str(int(v))
    return str(v)


def _factor_parts(spec, sf) -> list[tuple[str, str]] | None:
    """(formulaic's, R's) column labels of one scoped factor, in column order."""
    expr = sf.factor.expr
    kind, state = spec.encoder_state.get(expr, (None, {}))
    if getattr(kind, "value", kind) != "categorical":
        return [(expr, _r_expr(expr))]
    cs = state.get("contrasts")
    if cs is None:
        return None
    levels = list(cs.levels)
    contrasts, reduced = cs.contrasts, sf.reduced
    fmt = contrasts.get_factor_format(levels, reduced_rank=reduced)
    fields = contrasts.get_coding_column_names(levels, reduced_rank=reduced)
    by_str = {str(lv): r_level(lv) for lv in levels}
    kind_name = type(contrasts).__name__
    out = []
    for i, f in enumerate(fields):
        if not reduced or kind_name == "TreatmentContrasts":
            r = by_str.get(str(f), str(f))
        elif kind_name in ("SumContrasts", "HelmertContrasts"):
            r = str(i + 1)  # R's contr.sum / contr.helmert columns: 1..K-1
        elif kind_name == "PolyContrasts":
            r = (".L", ".Q", ".C")[i] if i < 3 else f"^{i + 1}"
        else:
            r = str(f)
        out.append((fmt.format(name=expr, field=f), f"{expr}{r}"))
    return out


def r_names(spec) -> tuple[tuple[str, ...], np.ndarray | None]:
    """R's coefficient names for formulaic's columns, and the column order.

    Term by term: the names are built from the levels and contrasts (R's
    level text, first factor varying fastest) and matched to formulaic's
    columns; a term that does not match (a multi-column transform such as
    ``poly(x, 2)``) gets formulaic's names with the brackets dropped.
    """
    names, order, start = [], [], 0
    for s in spec.structure:
        cols = list(s.columns)
        built = []
        for st in s.scoped_terms:
            if not st.factors:
                built.append(("Intercept", "(Intercept)"))
                continue
            parts = [_factor_parts(spec, sf) for sf in st.factors]
            if any(p is None for p in parts):
                built = None
                break
            for combo in itertools.product(*reversed(parts)):
                combo = combo[::-1]  # the first factor varies fastest (as R)
                built.append(tuple(":".join(c[i] for c in combo) for i in (0, 1)))
        where = {c: i for i, c in enumerate(cols)}
        if (
            built is None
            or sorted(a for a, _ in built) != sorted(cols)
            or len(where) != len(cols)
        ):
            built = [(c, _r_fallback(c)) for c in cols]
        names += [r for _, r in built]
        order += [start + where[a] for a, _ in built]
        start += len(cols)
    order = np.asarray(order, dtype=np.int64)
    return tuple(names), None if np.array_equal(order, np.arange(start)) else order


def _r_fallback(col: str) -> str:
    if col == "Intercept":
        return "(Intercept)"
    return _r_expr(re.sub(r"\[(?:T\.|S\.|H\.)?([^\[\]]*)\]", r"\1", col))


def _r_expr(expr: str) -> str:
    """formulaic's expression text as R deparses it (``x ** 2`` -> ``x^2``)."""
    return re.sub(r"\s*\*\*\s*", "^", expr)


def r_power(rhs: str) -> str:
    """R's ``^`` inside ``I(...)`` as Python's ``**`` (outside, ``^`` is crossing)."""
    out, i = [], 0
    for m in re.finditer(r"(?<![\w.])I\s*\(", rhs):
        if m.start() < i:
            continue
        j = scan(rhs, m.end() - 1)
        out += [rhs[i : m.start()], rhs[m.start() : j].replace("^", "**")]
        i = j
    return "".join(out) + rhs[i:]
