"""``fit_formula``: R-style model formulas (via formulaic) on top of :func:`mlejax.fit`.

``mj.fit_formula("breaks ~ wool * tension", data, mj.families.Poisson())`` builds
the dense design with `formulaic <https://matthewwardrop.github.io/formulaic/>`_
(R's treatment contrasts by default, ``- 1`` / ``0 +`` drop the intercept,
``C(g)`` and R's ``factor(g)`` make a factor), drops and counts the rows with
missing values, fits once with :func:`mlejax.fit`, and names the coefficients
as R does (``(Intercept)``, ``woolB``, ``woolB:tensionM``, ``factor(cyl)6``).
The encoding is kept on the result (``res.model_spec``), so
``res.predict(new_data)`` applies it to a new frame. See docs/formulas.md.
"""

from __future__ import annotations

import dataclasses
import re
import sys
import warnings
from collections.abc import Mapping

import numpy as np

from mlejax._formula_names import r_level, r_names, r_power, scan
from mlejax.families import Family
from mlejax.result import FitResult

__all__ = ["fit_formula", "FormulaSpec"]

#: fit keywords that hold one value per row: subset with the kept rows, and a
#: string names a column of ``data`` (as R's ``glm(weights = w)``)
ROW_KEYWORDS = ("weights", "offset", "trials", "exposure", "var_weights", "groups")


def _formulaic():
    try:
        import formulaic
        from formulaic.transforms.contrasts import C
    except ImportError as e:  # pragma: no cover - exercised without the extra
        raise ImportError(
            "mj.fit_formula needs formulaic: pip install 'mlejax[formula]' "
            "(or pip install formulaic)."
        ) from e
    return formulaic, C


@dataclasses.dataclass(frozen=True, eq=False)
class FormulaSpec:
    """What a formula fit needs to encode new data (static metadata of a FitResult).

    Hashable by identity (``eq=False``), so it rides on the ``FitResult``
    pytree as metadata like ``names``.

    Attributes:
      formula: the formula as given.
      model_spec: formulaic's ``ModelSpec`` of the right-hand side (levels,
        contrasts, stateful transforms).
      names: coefficient names, R's (``names="R"``) or formulaic's.
      offsets: the ``offset(...)`` expressions of the formula.
      n_dropped: rows dropped because of missing values.
      has_intercept: whether the design has an intercept column.
      context: the names visible to the formula (the caller's variables,
        ``factor``), reused to encode new data.
    """

    formula: str
    model_spec: object
    names: tuple[str, ...]
    offsets: tuple[str, ...]
    n_dropped: int
    has_intercept: bool
    context: Mapping = dataclasses.field(repr=False, default_factory=dict)

    def design(self, data) -> tuple[np.ndarray, np.ndarray | None]:
        """``(X, offset)`` of ``data`` with the fit's encoding (offset ``None`` if none).

        Raises:
          ValueError: a missing column, a factor level not seen in the fit, or a
            missing value in a used column.
        """
        formulaic, _ = _formulaic()
        df = _as_frame("new_data", data)
        spec = self.model_spec
        _require_columns("new_data", df, set(spec.required_variables), self.context)
        _check_levels(spec, df)
        with warnings.catch_warnings():
            warnings.simplefilter("error", formulaic.errors.DataMismatchWarning)
            try:
                mm = spec.get_model_matrix(df, context=self.context, na_action="raise")
            except (ValueError, formulaic.errors.FormulaicError) as e:
                raise ValueError(
                    f"new_data cannot be encoded as the fit's data: {e} Remove or "
                    "impute the rows with missing values (predictions need every "
                    "used column)."
                ) from e
            except formulaic.errors.DataMismatchWarning as e:  # pragma: no cover
                raise ValueError(f"new_data: {e}") from e
        X = np.asarray(mm, dtype=float)
        off = None
        if self.offsets:
            rhs = " + ".join(f"I({o})" for o in self.offsets)
            om = formulaic.model_matrix(
                "0 + " + rhs, df, context=self.context, na_action="raise"
            )
            off = np.asarray(om, dtype=float).sum(axis=1)
        return X, off


def fit_formula(
    formula: str,
    data,
    family: Family,
    *,
    na_action: str = "drop",
    names: str = "R",
    context: Mapping | None = None,
    **fit_kwargs,
) -> FitResult:
    """Fit ``family`` to an R-style formula on a data frame: ``mj.fit`` of its design.

    Args:
      formula: ``"y ~ x1 + C(g) + x1:x2"``. formulaic's grammar with R's
        conventions: treatment contrasts by default (``C(g, contr.sum)`` and
        the other formulaic contrasts by name), ``factor(g)`` as R's spelling
        of ``C(g)``, ``- 1`` or ``0 +`` to drop the intercept,
        ``offset(expr)`` terms added to the linear predictor (not
        coefficients), and ``cbind(successes, failures) ~ ...`` for
        ``Binomial`` (then ``trials = successes + failures``). A string,
        pandas categorical or boolean response goes to :func:`mlejax.fit`
        as labels (Categorical, Bernoulli).
      data: a pandas DataFrame (a polars DataFrame or a mapping of columns is
        converted to one).
      family: an ``mj.families`` instance.
      na_action: ``"drop"`` (R's ``na.omit``: rows with a missing value in a
        used column, including per-row keywords, are dropped and counted in
        ``res.model_spec.n_dropped`` and ``summary()``) or ``"raise"``.
      names: ``"R"`` (``(Intercept)``, ``woolB``, ``woolB:tensionM``,
        ``factor(cyl)6``) or ``"formulaic"`` (``Intercept``, ``wool[T.B]``).
      context: extra names visible to the formula (default: the caller's
        variables).
      **fit_kwargs: passed to :func:`mlejax.fit`. Per-row keywords
        (``weights``, ``offset``, ``trials``, ``exposure``, ``var_weights``,
        ``groups``) may name a column of ``data``; arrays of ``len(data)`` are
        subset to the kept rows.

    Returns:
      The ``FitResult`` of ``mj.fit``, with ``names`` the coefficient names,
      ``nobs`` counting the kept rows and ``model_spec`` a
      :class:`FormulaSpec`: ``res.predict(new_data)`` encodes a new frame the
      same way.

    Raises:
      ValueError: a column the formula names is missing from ``data``; missing
        values with ``na_action="raise"``; no rows left; the checks of
        :func:`mlejax.fit`.

    >>> import pandas as pd, mlejax as mj
    >>> df = pd.DataFrame({"y": [1.0, 2.0, 4.0, 5.0, 6.0],
    ...                    "g": ["a", "a", "b", "b", "b"]})
    >>> res = mj.fit_formula("y ~ g", df, mj.families.Gaussian())
    >>> res.names
    ('(Intercept)', 'gb')
    >>> [round(float(b), 10) for b in res.params]  # group means 1.5 and 5
    [1.5, 3.5]
    """
    import pandas as pd

    from mlejax.fit import fit

    formulaic, C = _formulaic()
    if not isinstance(formula, str) or "~" not in formula:
        raise ValueError(
            f"formula must be a string 'y ~ terms' with a response; got {formula!r}."
        )
    if na_action not in ("drop", "raise"):
        raise ValueError(f"na_action must be 'drop' or 'raise'; got {na_action!r}.")
    if names not in ("R", "formulaic"):
        raise ValueError(f"names must be 'R' or 'formulaic'; got {names!r}.")
    if not isinstance(family, Family):
        raise TypeError(
            f"family must be an mlejax family such as mj.families.Poisson(); got {family!r}."
        )
    df = _as_frame("data", data).reset_index(drop=True)
    if context is None:
        frame = sys._getframe(1)
        context = {**frame.f_globals, **frame.f_locals}
    ctx = {**context, "factor": C}
    lhs, rhs = formula.split("~", 1)
    lhs, rhs = lhs.strip(), rhs.strip()
    if not lhs:
        raise ValueError(
            f"formula {formula!r} has no response (left of '~'); write 'y ~ ...'."
        )
    rhs, offsets = _split_offsets(r_power(rhs))
    ys = _cbind(lhs)
    lhs_terms = [f"I({e})" for e in ys] if ys else [lhs]
    lhs_terms += [f"I({o})" for o in offsets]
    full = " + ".join(lhs_terms) + " ~ " + rhs
    try:
        parsed = formulaic.Formula(full)
    except Exception as e:
        raise ValueError(f"formula {formula!r} could not be parsed: {e}") from e
    _require_columns("data", df, set(parsed.required_variables), ctx)

    try:
        mm = formulaic.model_matrix(full, df, na_action=na_action, context=ctx)
    except ValueError as e:
        if na_action == "raise" and "null values" in str(e):
            raise ValueError(
                f"na_action='raise': {e} Drop or impute those rows, or use "
                "na_action='drop' (R's na.omit)."
            ) from e
        raise ValueError(f"formula {formula!r}: {e}") from e
    except formulaic.errors.FormulaicError as e:
        raise ValueError(f"formula {formula!r}: {e}") from e
    Xf, Yf = mm.rhs, mm.lhs
    keep = np.asarray(Xf.index, dtype=np.int64)
    row_kw = {}
    for key in ROW_KEYWORDS:
        v = fit_kwargs.pop(key, None)
        if v is None:
            continue
        if isinstance(v, str):
            if v not in df.columns:
                raise ValueError(
                    f"{key}={v!r} names no column of data; columns: {list(df.columns)}."
                )
            v = df[v]
        v = v.to_numpy() if hasattr(v, "to_numpy") else np.asarray(v)
        if v.shape[:1] != (len(df),):
            raise ValueError(
                f"{key} must have one value per row of data ({len(df)}); got shape "
                f"{v.shape}."
            )
        row_kw[key] = v
    ok = np.ones(len(keep), bool)
    for key, v in row_kw.items():
        bad = np.asarray(pd.isna(v[keep])).reshape(len(keep), -1).any(axis=1)
        if bad.any():
            if na_action == "raise":
                raise ValueError(
                    f"na_action='raise': {key} has a missing value at row "
                    f"{int(keep[np.flatnonzero(bad)[0]])}."
                )
            ok &= ~bad
    pos = np.flatnonzero(ok)
    keep = keep[pos]
    if len(keep) == 0:
        raise ValueError(
            f"no rows left after dropping the {len(df)} rows with missing values."
        )
    n_dropped = len(df) - len(keep)

    spec = Xf.model_spec
    X = np.asarray(Xf, dtype=float)[pos]
    if names == "R":
        rnames, order = r_names(spec)
    else:
        rnames, order = tuple(str(c) for c in Xf.columns), None
    if order is not None:
        X = X[:, order]
    Y = np.asarray(Yf, dtype=float)[pos] if Yf.shape[1] else None
    kw = {k: v[keep] for k, v in row_kw.items()}
    n_y = len(ys) if ys else (Yf.shape[1] - len(offsets))
    if offsets:
        off = Y[:, n_y:].sum(axis=1)
        kw["offset"] = off if "offset" not in kw else kw["offset"] + off
    if ys:
        if len(ys) != 2 or "trials" not in family.data_names:
            raise ValueError(
                f"cbind(...) response: give two columns, cbind(successes, failures), "
                f"with a family that takes trials (Binomial); got {len(ys)} columns "
                f"and {family.name}."
            )
        if "trials" in kw:
            raise ValueError(
                "cbind(successes, failures) already gives the trials; drop trials=."
            )
        y = Y[:, 0]
        kw["trials"] = Y[:, 0] + Y[:, 1]
    else:
        y = _response(df, lhs, keep, Y, n_y)
    Xd = pd.DataFrame(X, columns=list(rnames))
    res = fit(Xd, y, family, **kw, **fit_kwargs)
    info = FormulaSpec(
        formula=formula,
        model_spec=spec,
        names=tuple(rnames),
        offsets=tuple(offsets),
        n_dropped=int(n_dropped),
        has_intercept="Intercept" in Xf.columns,
        context=ctx,
    )
    return res.replace(model_spec=info)


# -- helpers ------------------------------------------------------------------
def _as_frame(name: str, data):
    import pandas as pd

    if isinstance(data, pd.DataFrame):
        return data
    mod = type(data).__module__.split(".")[0]
    if mod == "polars":
        try:
            return data.to_pandas()
        except ImportError:  # polars without pyarrow
            return pd.DataFrame(data.to_dict(as_series=False))
    if isinstance(data, Mapping):
        return pd.DataFrame(dict(data))
    raise TypeError(
        f"{name} must be a pandas DataFrame (or a polars DataFrame, or a dict of "
        f"columns); got {type(data).__name__}."
    )


def _require_columns(name: str, df, needed: set, ctx: Mapping) -> None:
    cols = [str(c) for c in df.columns]

    def present(v: str) -> bool:  # formulaic reads `Solar.R` as variable `Solar`
        return v in ctx or v in cols or any(c.startswith(v + ".") for c in cols)

    missing = sorted(v for v in needed if not present(v))
    if missing:
        raise ValueError(
            f"{name} has no column {missing[0]!r}"
            + (f" (missing: {missing})" if len(missing) > 1 else "")
            + f"; the formula uses it. Columns: {cols}."
        )


def _split_offsets(rhs: str) -> tuple[str, list[str]]:
    """The right-hand side without its ``offset(...)`` terms, and their insides."""
    offsets = []
    pat = re.compile(r"(^|[\s+~(])offset\s*\(")
    while (m := pat.search(rhs)) is not None:
        a = m.start() + len(m.group(1))
        b = scan(rhs, m.end() - 1)
        offsets.append(rhs[m.end() : b - 1].strip())
        head = rhs[:a].rstrip()
        head = head[:-1].rstrip() if head.endswith("+") else head
        tail = rhs[b:].lstrip()
        if not head and tail.startswith("+"):
            tail = tail[1:].lstrip()
        rhs = f"{head} + {tail}" if head and tail else head or tail
    return (rhs or "1"), offsets


def _cbind(lhs: str) -> list[str] | None:
    """The column expressions of ``cbind(a, b)``, or None for another response."""
    m = re.fullmatch(r"cbind\s*\((.*)\)", lhs.strip(), flags=re.S)
    if m is None:
        return None
    parts, depth, cur = [], 0, ""
    for ch in m.group(1):
        if ch == "," and depth == 0:
            parts.append(cur.strip())
            cur = ""
            continue
        depth += ch in "([{"
        depth -= ch in ")]}"
        cur += ch
    parts.append(cur.strip())
    return parts


def _response(df, lhs: str, keep, Y, n_y):
    """y: the raw column for labels (strings, categories, booleans), else numeric."""
    col = df[lhs] if lhs in df.columns else None
    if col is not None and col.dtype.kind not in "iuf":
        return col.iloc[keep].reset_index(drop=True)
    if n_y != 1:
        raise ValueError(
            f"the response {lhs!r} encodes to {n_y} columns; give one numeric "
            "column (or labels for Categorical), or cbind(successes, failures) "
            "for Binomial."
        )
    return Y[:, 0]


def _check_levels(spec, df) -> None:
    """ValueError naming a factor whose new data has a level unseen in the fit."""
    for expr, (kind, state) in spec.encoder_state.items():
        if getattr(kind, "value", kind) != "categorical":
            continue
        var = spec.factor_variables.get(_factor_by_expr(spec, expr), None)
        names = sorted(getattr(v, "name", str(v)) for v in (var or ()))
        names = [v for v in names if v in df.columns]
        if len(names) != 1:
            continue
        levels = list(state.get("categories", ()))
        vals = df[names[0]].dropna().unique()
        seen = set(levels) | {r_level(v) for v in levels}
        bad = [v for v in vals if v not in seen and r_level(v) not in seen]
        if bad:
            raise ValueError(
                f"new_data column {names[0]!r} (factor {expr}) has level {bad[0]!r} "
                f"not seen in the fit; the fitted levels are {levels}."
            )


def _factor_by_expr(spec, expr):
    for f in spec.factor_variables:
        if getattr(f, "expr", None) == expr:
            return f
    return None
