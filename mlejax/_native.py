"""Native (C++) kernels registered as XLA FFI custom calls on CPU.

One kernel today: the Newton loop of the batched logistic fits
(``_native_logit.cc``, called by :mod:`mlejax._batched_kernel`), with the
covariance, the robust sandwich, the data's summaries and the null deviance
after it. XLA:CPU runs that loop's many small per-fit operations at a fixed
cost each and its 15 x 200 Hessian products at about 6 GFLOP/s; the C++ loop
takes one fit after another with its rows in L1, four rows to a vector.

The source is compiled on first use, once per machine and column count
(about 2 s), with the system C++ compiler (``$CXX``, else ``c++``) against
XLA's FFI C header that jaxlib ships, into ``$MLEJAX_NATIVE_DIR`` (default
``~/.cache/mlejax/native``), keyed by a hash of the source, the compiler,
jaxlib and the CPU (it is built with ``-march=native``). Without a compiler,
with ``MLEJAX_NATIVE=0``, or when anything fails, :func:`load` returns False
(and logs why) and the XLA formulation serves: the same answers, slower.
Nothing here is used on GPU.
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import logging
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

log = logging.getLogger(__name__)

_SRC = Path(__file__).with_name("_native_logit.cc")
#: the FFI target name of the logistic Newton loop (one per column count)
LOGIT_NEWTON = "mlejax_logit_newton"
#: the FFI target of the kernel's vectorised exp (for its accuracy test)
EXP_NONPOS = "mlejax_exp_nonpos"
#: the most columns the native loop takes (and so the batched kernel:
#: ``mlejax._batched.MAX_P``)
MAX_P = 8
_FLAGS = [
    "-O3",
    "-march=native",
    "-std=c++17",
    "-shared",
    "-fPIC",
    "-w",
]


def _cache_dir() -> Path:
    path = os.environ.get("MLEJAX_NATIVE_DIR")
    if path:
        return Path(path)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(
        os.path.expanduser("~"), ".cache"
    )
    return Path(base) / "mlejax" / "native"


def _cpu_id() -> str:
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        return ""
    keep = [ln for ln in lines if ln.startswith(("model name", "flags"))]
    return "\n".join(sorted(set(keep)))


def _build(cxx: str, p: int, out: Path) -> None:
    include = jax.ffi.include_dir()
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(suffix=".so", dir=out.parent)
    os.close(fd)
    try:
        cmd = [cxx, *_FLAGS, f"-DMLEJAX_P={p}", f"-I{include}", str(_SRC), "-o", tmp]
        subprocess.run(cmd, check=True, capture_output=True, timeout=300)
        os.replace(tmp, out)  # atomic: concurrent builders agree
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def target(p: int) -> str:
    """The FFI target name of the logistic Newton loop for ``p`` columns."""
    return f"{LOGIT_NEWTON}_p{p}"


@functools.cache
def load(p: int) -> bool:
    """Build (once per machine and column count ``p``: about 2 s) and register
    the native loop for ``p`` columns; False if it is unavailable (then the
    XLA formulation serves)."""
    if os.environ.get("MLEJAX_NATIVE", "1").lower() in ("0", "off", "false", "no"):
        return False
    cxx = os.environ.get("CXX") or "c++"
    if shutil.which(cxx) is None:
        log.info("mlejax: no C++ compiler (%s); native kernels off", cxx)
        return False
    try:
        version = subprocess.run(
            [cxx, "--version"], capture_output=True, text=True, timeout=60
        ).stdout
        import jaxlib

        parts = [_SRC.read_text(), version, jaxlib.__version__, _cpu_id(), *_FLAGS]
        key = hashlib.sha256("\0".join(parts).encode()).hexdigest()[:20]
        lib = _cache_dir() / f"logit_p{p}_{key}.so"
        if not lib.exists():
            _build(cxx, p, lib)
        handle = ctypes.cdll.LoadLibrary(str(lib))
        jax.ffi.register_ffi_target(
            target(p), jax.ffi.pycapsule(handle.MlejaxLogitNewton), platform="cpu"
        )
        jax.ffi.register_ffi_target(
            f"{EXP_NONPOS}_p{p}",
            jax.ffi.pycapsule(handle.MlejaxExpNonpos),
            platform="cpu",
        )
    except Exception as err:  # noqa: BLE001 - any failure: the XLA path serves
        log.warning("mlejax: native kernels unavailable (%s); using XLA", err)
        return False
    return True


def available(dtype, p: int) -> bool:
    """Whether the native logistic loop serves ``p`` columns of ``dtype`` here
    (float64, CPU as the default backend, and the kernel built)."""
    return (
        dtype == jnp.float64
        and 1 <= p <= MAX_P
        and jax.default_backend() == "cpu"
        and load(p)
    )


#: the columns of the native kernel's per-fit summaries (``kStats`` there)
STATS = (
    "nobs",
    "npos",
    "sw",
    "swy",
    "swo",
    "f0",
    "ok",
    "near_sep",
    "has_const",
    "no_off",
    "null_dev",
)


def logit_newton(X, y, w, offset, tol, C, max_iter, robust):
    """:func:`mlejax._batched_kernel._xla_loop` as one custom call, fit by
    fit: the Newton loop, the covariance (and robust sandwich) at the final
    point, the data's summaries and the null deviance: ``(state, stats)``,
    dicts of ``(C, ...)`` arrays. Any argument may have a leading axis of 1
    (shared by the ``C`` fits)."""
    n, p = X.shape[-2:]
    f64, i64 = jnp.float64, jnp.int64
    shapes = [
        jax.ShapeDtypeStruct(shape, dt)
        for shape, dt in [
            ((C, p), f64),  # x
            ((C, p, p), f64),  # inverse information at the final point
            ((C,), f64),  # f
            ((C,), i64),  # n_iter
            ((C,), i64),  # status
            ((C, max_iter + 1), f64),  # trace
            ((C, p, p), f64),  # robust sandwich (zeros unless robust)
            ((C, len(STATS)), f64),  # STATS
        ]
    ]
    call = jax.ffi.ffi_call(target(p), shapes)
    tol = jnp.broadcast_to(jnp.asarray(tol, f64), (C,))
    args = [
        jnp.reshape(a, (-1, *shape))
        for a, shape in [(X, (n, p)), (y, (n,)), (w, (n,)), (offset, (n,))]
    ]
    x, cov, f, n_iter, status, trace, rcov, stats = call(
        *args, tol, max_iter=np.int64(max_iter), robust=bool(robust)
    )
    st = {k: stats[:, i] for i, k in enumerate(STATS)}
    for k in ("ok", "near_sep", "has_const", "no_off"):
        st[k] = st[k] != 0
    s = dict(x=x, cov=cov, f=f, n_iter=n_iter, status=status, trace=trace)
    if robust:
        s["rcov"] = rcov
    return s, st


def exp_nonpos(x, p: int = 1):
    """The native kernel's ``exp(x)`` for ``x <= 0`` (float64) on ``x``, as
    compiled in the library for ``p`` columns (for its accuracy test)."""
    if not load(p):
        raise RuntimeError("mlejax: the native library is unavailable here")
    x = jnp.asarray(x, jnp.float64)
    return jax.ffi.ffi_call(
        f"{EXP_NONPOS}_p{p}", jax.ShapeDtypeStruct(x.shape, x.dtype)
    )(x)
