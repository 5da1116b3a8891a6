"""A large NumPy X that cannot be used in place: one aligned host copy, exact."""

import jax
import numpy as np
import pytest

from mlejax import _prepare


@pytest.mark.skipif(jax.default_backend() != "cpu", reason="CPU host copy path")
def test_unaligned_large_x_copied_once_into_aligned_memory():
    n, p = 8192, 32  # 2 MiB of float64: above HOST_COPY_MIN_BYTES
    assert n * p * 8 >= _prepare.HOST_COPY_MIN_BYTES
    raw = np.empty(n * p * 8 + 64, np.uint8)
    start = (-raw.ctypes.data) % 64 + 16  # 16 bytes past a 64-byte boundary
    X = raw[start : start + n * p * 8].view(np.float64).reshape(n, p)
    X[:] = np.random.default_rng(0).standard_normal((n, p))
    assert X.ctypes.data % 64 == 16
    Xd = _prepare._to_device(X, np.dtype(np.float64))
    assert Xd.unsafe_buffer_pointer() % 64 == 0
    assert Xd.unsafe_buffer_pointer() != X.ctypes.data
    np.testing.assert_array_equal(np.asarray(Xd), X)
    X[0, 0] = 1e300  # the fit's copy is its own
    assert np.asarray(Xd)[0, 0] != 1e300
    X[0, 0] = 0.5
    # a dtype change (float64 -> float32) and a Fortran-ordered array take the same path
    X32 = _prepare._to_device(np.asfortranarray(X), np.dtype(np.float32))
    assert X32.dtype == np.float32 and X32.unsafe_buffer_pointer() % 64 == 0
    np.testing.assert_array_equal(np.asarray(X32), X.astype(np.float32))
