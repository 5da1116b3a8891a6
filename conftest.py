"""Root conftest: doctests in mlejax/ run in float64, like the test suite."""

import jax

jax.config.update("jax_enable_x64", True)
