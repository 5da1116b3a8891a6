"""Input coercion and validation for ``fit``: everything before compilation."""

from __future__ import annotations

import mmap

import jax
import jax.numpy as jnp
import numpy as np
import optax

from mlejax import _checks, linalg
from mlejax import families as fam
from mlejax.result import ParamNames

__all__ = [
    "prepare",
    "check_solver",
    "check_tol_max_iter",
    "as_array",
    "names_of",
    "is_traced",
    "spans_processes",
]


def is_traced(*arrays) -> bool:
    """Whether the fit must take the traced path: a tracer (the caller's
    jit/vmap/grad) or an array spread over several processes among the arguments."""
    return any(isinstance(a, jax.core.Tracer) for a in arrays) or spans_processes(
        *arrays
    )


def spans_processes(*arrays) -> bool:
    """Whether any argument is a ``jax.Array`` with shards in other processes.

    Such an array (``jax.distributed``, multi-host) cannot be read on the host
    (``np.asarray`` fails), so it is treated like a tracer: the host checks
    are skipped and invalid data becomes status data
    (``Status.INVALID_INPUT``) in the traced fit.
    """
    return any(
        isinstance(a, jax.Array)
        and not isinstance(a, jax.core.Tracer)
        and not a.is_fully_addressable
        for a in arrays
    )


def names_of(X) -> tuple[str, ...] | None:
    cols = getattr(X, "columns", None)
    return tuple(str(c) for c in cols) if cols is not None else None


def as_array(name: str, a, dtype=None):
    if a is None:
        return None
    if hasattr(a, "to_numpy"):
        a = a.to_numpy()
    if isinstance(a, jax.core.Tracer | jax.Array):
        arr = a
    else:
        _checks.warn_x64_truncation(
            name, np.asarray(a) if not isinstance(a, np.ndarray) else a
        )
        arr = np.asarray(a)
    if dtype is None:
        dtype = arr.dtype if arr.dtype.kind in "fc" else jnp.result_type(float)
    if isinstance(arr, np.ndarray):
        return _to_device(arr, jax.dtypes.canonicalize_dtype(dtype))
    return jnp.asarray(arr, dtype)


#: from this size a NumPy array that cannot be used in place is copied by
#: NumPy into fresh 64-byte aligned memory and then used in place (CPU only)
HOST_COPY_MIN_BYTES = 1 << 20


def _aligned_empty(shape, dtype) -> np.ndarray:
    """Fresh page-aligned host memory, in transparent huge pages where offered.

    Filling fresh memory costs a page fault per 4 KiB page; 2 MiB pages make
    NumPy's copy of a large ``X`` several times cheaper than ``device_put``'s
    own copy (0.1 s against 0.45-1.4 s for 400 MB on the benchmark machine).
    """
    nbytes = max(1, int(np.prod(shape)) * np.dtype(dtype).itemsize)
    buf = mmap.mmap(-1, nbytes, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    if hasattr(mmap, "MADV_HUGEPAGE"):
        try:
            buf.madvise(mmap.MADV_HUGEPAGE)
        except OSError:  # pragma: no cover - a kernel without THP
            pass
    return np.frombuffer(buf, dtype=dtype, count=int(np.prod(shape))).reshape(shape)


def _to_device(arr: np.ndarray, dtype) -> jax.Array:
    """A NumPy array on the default device, without a copy where possible.

    A C-contiguous array of the right dtype in 64-byte aligned memory is used
    in place on the CPU (JAX arrays are immutable and the fit has finished
    with it before ``fit`` returns). Otherwise a large array is copied once by
    NumPy into aligned memory that is then used in place (:func:`_aligned_empty`),
    a small one by ``device_put`` (faster than ``jnp.asarray``).
    """
    in_place = (
        arr.dtype == dtype and arr.flags.c_contiguous and arr.ctypes.data % 64 == 0
    )
    if (
        not in_place
        and hasattr(mmap, "MAP_ANONYMOUS")
        and arr.size * np.dtype(dtype).itemsize >= HOST_COPY_MIN_BYTES
        and jax.default_backend() == "cpu"
    ):
        out = _aligned_empty(arr.shape, dtype)
        np.copyto(out, arr, casting="unsafe")
        arr = out
    elif arr.dtype != dtype or not arr.flags.c_contiguous:
        arr = np.ascontiguousarray(arr, dtype=dtype)
    try:
        return jax.device_put(arr, may_alias=True)
    except TypeError:  # a JAX without may_alias
        return jax.device_put(arr)


def align_index(name: str, a, X):
    """A pandas ``a`` aligned on ``X``'s index (as statsmodels and R would use it).

    Rows are matched by label, not position: a ``y`` whose index is a
    permutation of ``X``'s is reordered; one with other labels is a
    ``ValueError``. Anything without an index is returned as it is.
    """
    ia, ix = getattr(a, "index", None), getattr(X, "index", None)
    if a is None or ia is None or ix is None or not hasattr(a, "reindex"):
        return a
    if ia.equals(ix):
        return a
    if ix.is_unique and ia.is_unique and len(ia) == len(ix) and ia.isin(ix).all():
        return a.reindex(ix)
    raise ValueError(
        f"{name}'s index does not match X's index (labels differ or repeat); rows "
        f"are matched by label. Align them first, e.g. {name}.reindex(X.index), or "
        "pass NumPy arrays to match by position."
    )


def prepare(X, y, family, weights, offset, trials):
    """Host-side coercion and checks; ``(X, y, weights, offset, trials, names)``.

    Everything that can be judged before compilation is (shapes, dtypes,
    finiteness, support, weights, identifiability, rank); under the caller's
    ``jit``/``vmap`` only what is concrete is checked, and arrays spread over
    several processes get only the static checks (shapes, dtypes).
    """
    if not isinstance(family, fam.Family):
        raise TypeError(
            f"family must be an mlejax family such as mj.families.Bernoulli(); got {family!r}."
        )
    names = names_of(X)
    y, weights, offset, trials = (
        align_index(nm, a, X)
        for nm, a in (
            ("y", y),
            ("weights", weights),
            ("offset", offset),
            ("trials", trials),
        )
    )
    y, classes = encode_labels(y, family)
    for nm, a in (
        ("X", X),
        ("y", y),
        ("weights", weights),
        ("offset", offset),
        ("trials", trials),
    ):
        _checks.require_real_dtype(nm, a)
    host_checked = set()
    for nm, a in (("X", X), ("weights", weights), ("offset", offset)):
        if isinstance(a, np.ndarray) and a.dtype.kind in "fc":
            _checks.require_finite(nm, a)  # on the host copy: no device round trip
            host_checked.add(nm)
    X = as_array("X", X)
    if X.ndim != 2:
        raise ValueError(
            f"X must be 2-D (n, p); got shape {X.shape}. Use X[:, None] for one column."
        )
    dtype = X.dtype
    y = as_array("y", y, dtype)
    if y.ndim != 1:
        raise ValueError(f"y must be 1-D (n,); got shape {y.shape}.")
    weights = as_array("weights", weights, dtype)
    offset = as_array("offset", offset, dtype)
    trials = as_array("trials", trials, dtype)
    for nm, a in (("weights", weights), ("offset", offset), ("trials", trials)):
        if a is not None and a.ndim != 1:
            raise ValueError(f"{nm} must be 1-D (n,); got shape {a.shape}.")
    _checks.require_same_length(
        f"{family.name} fit", X=X, y=y, weights=weights, offset=offset, trials=trials
    )
    n, p = X.shape
    if n == 0:
        raise ValueError("the dataset is empty (n = 0 rows); nothing to fit.")
    if p == 0:
        raise ValueError(
            "X has no columns (p = 0); add at least an intercept (mj.add_constant)."
        )
    # arrays spread over several processes are treated as traced: no values read
    readable = not spans_processes(X, y, weights, offset, trials)
    for nm, a in (("X", X), ("weights", weights), ("offset", offset)):
        if readable and nm not in host_checked:
            _checks.require_finite(nm, a)
    takes_trials = "trials" in family.data_names
    if takes_trials and trials is None:
        raise ValueError(
            f"{family.name}: trials= is required (number of trials per row)."
        )
    if trials is not None and not takes_trials:
        raise ValueError(f"trials= is only for Binomial, not {family.name}.")
    if readable:
        family.check_y(y, **({"trials": trials} if takes_trials else {}))
    wc = _checks.concrete(weights) if readable else None
    if wc is not None and (wc < 0).any():
        i = int(np.flatnonzero(wc < 0)[0])
        raise ValueError(
            f"weights must be non-negative frequency weights; weights[{i}] = {wc[i].item()!r}."
        )
    nobs = n if wc is None else float(wc.sum())
    k = p * family.eta_dim + len(family.extra_names)
    if wc is not None or (readable and not is_traced(X)):
        n_eff = nobs if wc is None else float((wc > 0).sum())
        if n_eff < k:
            raise ValueError(
                f"more parameters ({k}) than observations with positive weight ({n_eff:g}); "
                "the model is not identified."
            )
    if weights is None:
        weights = jnp.ones(n, dtype)
    if offset is None:
        offset = jnp.zeros(n, dtype)
    Xc = _checks.concrete(X) if n * p * p <= 2e8 and readable else None
    if Xc is not None and wc is not None:
        Xc = Xc[wc > 0]
    if Xc is not None:
        linalg.check_rank(Xc, names)
    if classes is not None:
        names = ParamNames(names or tuple(f"x{j}" for j in range(p)), classes)
    return X, y, weights, offset, trials, names


def encode_labels(y, family):
    """``(y, classes)``: labels as class codes, booleans as 0/1.

    Categorical (``support == "labels"``): string labels, a pandas Categorical
    or an object Series become codes ``0..K-1`` in the class order (the
    categorical's categories, else the sorted labels) with the family's
    ``reference`` moved to the front; integer codes are reordered the same
    way when a ``reference`` is given (also traced). ``classes`` is that
    order, or ``None`` for integer codes without a reference. Binary
    families: a pandas nullable boolean ``y`` becomes 0.0/1.0 (NaN where
    missing, which the finiteness check then names).
    """
    if y is None:
        return y, None
    if family.support == "binary" and str(getattr(y, "dtype", "")) == "boolean":
        return y.astype("float64"), None
    if family.support != "labels":
        return y, None
    K, ref = family.n_classes, getattr(family, "reference", None)
    cats, codes = _label_codes(y)
    if cats is None:  # integer codes (or tracers): reorder for the reference only
        if ref is None:
            return y, None
        if (
            isinstance(ref, bool)
            or not isinstance(ref, int | np.integer)
            or not (0 <= ref < K)
        ):
            raise ValueError(
                f"Categorical: reference={ref!r} must be a class code in 0..{K - 1} "
                "for integer y (or give y as labels)."
            )
        r = int(ref)
        yv = y.to_numpy() if hasattr(y, "to_numpy") else y
        xp = jnp if isinstance(yv, jax.Array) else np
        yv = xp.asarray(yv)
        moved = xp.where(yv == r, 0, xp.where(yv < r, yv + 1, yv))
        return moved, (r, *(c for c in range(K) if c != r))
    if len(cats) != K:
        raise ValueError(
            f"Categorical(n_classes={K}) but y has {len(cats)} classes "
            f"{list(cats)[:10]}; use mj.families.Categorical({len(cats)}), or give y "
            "as a pandas Categorical whose categories list every class."
        )
    if (codes < 0).any():
        i = int(np.flatnonzero(codes < 0)[0])
        raise ValueError(
            f"y has a missing label at row {i}; drop or impute that row before fitting."
        )
    order = list(range(K))
    if ref is not None:
        hits = [i for i, c in enumerate(cats) if c == ref or str(c) == str(ref)]
        if not hits:
            raise ValueError(
                f"Categorical: reference={ref!r} is not a class of y; the classes "
                f"are {list(cats)}."
            )
        order = [hits[0], *(i for i in order if i != hits[0])]
    pos = np.empty(K, np.int64)
    pos[order] = np.arange(K)
    return pos[codes].astype(np.float64), tuple(
        c.item() if hasattr(c, "item") else c for c in (cats[i] for i in order)
    )


def _label_codes(y):
    """``(classes, codes)`` of label data, or ``(None, None)`` for numbers."""
    if isinstance(y, jax.Array | jax.core.Tracer):
        return None, None
    cat = getattr(y, "cat", None)  # a pandas Series of dtype category
    cat = cat if cat is not None else (y if hasattr(y, "categories") else None)
    if cat is not None and hasattr(cat, "codes"):
        return list(cat.categories), np.asarray(cat.codes, np.int64)
    a = y.to_numpy() if hasattr(y, "to_numpy") else np.asarray(y)
    if a.dtype.kind in "biufc":
        return None, None
    a = a.ravel()
    missing = np.array([v is None or (isinstance(v, float) and v != v) for v in a])
    if missing.any():
        codes = np.full(a.shape, -1, np.int64)
        cats, inv = np.unique(a[~missing].astype(str), return_inverse=True)
        codes[~missing] = inv
        return list(cats), codes
    try:
        cats, inv = np.unique(a, return_inverse=True)
    except TypeError:  # mixed types: order by their text
        cats, inv = np.unique(a.astype(str), return_inverse=True)
    return list(cats), inv.reshape(-1).astype(np.int64)


def check_solver(solver) -> None:
    if isinstance(solver, str):
        if solver not in ("newton", "lbfgs"):
            raise ValueError(
                f"solver must be 'newton', 'lbfgs' or an optax.GradientTransformation; got {solver!r}."
            )
    elif not isinstance(solver, optax.GradientTransformation):
        raise TypeError(
            "solver must be 'newton', 'lbfgs' or an optax.GradientTransformation; "
            f"got {type(solver).__name__}."
        )


def check_tol_max_iter(tol, max_iter) -> None:
    if isinstance(max_iter, bool) or not isinstance(max_iter, int | np.integer):
        raise TypeError(f"max_iter must be an int (static); got {max_iter!r}.")
    if max_iter < 1:
        raise ValueError(f"max_iter must be >= 1; got {max_iter}.")
    t = _checks.concrete(tol)
    if t is not None and (np.ndim(t) != 0 or not np.isfinite(t) or t <= 0):
        raise ValueError(f"tol must be a positive finite scalar; got {tol!r}.")


COV_TYPES = ("nonrobust", "HC0", "HC1", "cluster")


def check_cov_type(cov_type, smooth: bool = True) -> None:
    if cov_type not in COV_TYPES:
        raise ValueError(f"cov_type must be one of {COV_TYPES}; got {cov_type!r}.")
    if cov_type != "nonrobust" and not smooth:
        raise ValueError(
            f"cov_type={cov_type!r} needs a smooth log-likelihood (per-observation "
            "scores and an observed Hessian); Laplace is not smooth: use "
            "cov_type='nonrobust' (its expected information) or bootstrap."
        )


def prepare_groups(cov_type, groups, n: int, n_groups=None):
    """``(codes, bounds)`` for ``cov_type="cluster"``, ``(None, None)`` otherwise.

    Concrete ``groups`` (any labels, ``(n,)`` or ``(n, 2)``) become dense
    integer codes on the host, with the numbers of groups as static bounds
    ``(G,)`` or ``(G1, G2, G12)``. Traced ``groups`` (the caller's
    ``jit``/``vmap``) must be integer codes; the bounds are ``n_groups``
    (an int, or a pair for two-way) or ``n``.
    """
    check_cov_type(cov_type)
    if cov_type != "cluster":
        if groups is not None:
            raise ValueError(
                f"groups= is only used with cov_type='cluster' (got cov_type={cov_type!r})."
            )
        return None, None
    if groups is None:
        raise ValueError("cov_type='cluster' needs groups= ((n,) or (n, 2) codes).")
    if hasattr(groups, "to_numpy"):
        groups = groups.to_numpy()
    shape = np.shape(groups)
    if shape not in ((n,), (n, 1), (n, 2)):
        raise ValueError(
            f"groups must have shape ({n},) or ({n}, 2) (one code per row of X, "
            f"two-way: two columns); got shape {shape}."
        )
    if len(shape) == 2 and shape[1] == 1:
        groups = groups[:, 0]
    two = len(np.shape(groups)) == 2
    if isinstance(groups, jax.core.Tracer):
        if not jnp.issubdtype(groups.dtype, jnp.integer):
            raise ValueError("groups under jit/vmap must be integer codes.")
        if n_groups is None:
            return groups, ((n, n, n) if two else (n,))
        b = tuple(int(g) for g in np.atleast_1d(n_groups))
        if two:
            return groups, (b[0], b[-1], min(b[0] * b[-1], n))
        return groups, b[:1]
    g = np.asarray(groups)
    cols = [g] if not two else [g[:, 0], g[:, 1]]
    codes = [np.unique(c, return_inverse=True)[1].reshape(-1) for c in cols]
    if two:
        pair = codes[0].astype(np.int64) * (codes[1].max() + 1) + codes[1]
        codes.append(np.unique(pair, return_inverse=True)[1].reshape(-1))
    bounds = tuple(int(c.max()) + 1 for c in codes)
    if min(bounds[:2]) < 2:
        raise ValueError(
            f"groups: cluster-robust covariance needs at least 2 groups; got {min(bounds)}."
        )
    out = np.stack(codes[:2], axis=1) if two else codes[0]
    return jnp.asarray(out.astype(np.int32)), bounds


# the per-row data arguments (exposure, var_weights) and the dispersion
# convention live in mlejax/_prepare_rows.py; re-exported here


# the per-row data arguments (exposure, var_weights) and the dispersion
# convention live in mlejax/_prepare_rows.py; re-exported here
from mlejax._prepare_rows import (  # noqa: E402
    DISPERSIONS,
    check_dispersion,
    link_name,
    mask_zero_precision,
    pad_bucket,
    prepare_exposure,
    prepare_rows,
    prepare_var_weights,
)

__all__ += [
    "DISPERSIONS",
    "check_dispersion",
    "link_name",
    "mask_zero_precision",
    "pad_bucket",
    "prepare_exposure",
    "prepare_rows",
    "prepare_var_weights",
]
