"""Root conftest: doctests in mlejax/ run in float64, like the test suite.

The test suite compiles hundreds of small programs whose run time is
negligible: XLA's CPU backend is told to skip LLVM's optimisation passes (as
``mj.fit`` already does for small fits), which cuts compile time by about a
quarter. Set ``XLA_FLAGS`` yourself to override. Numbers must not depend on
it: every tolerance in the suite holds with or without FMA contraction.
"""

import os

os.environ.setdefault("XLA_FLAGS", "--xla_backend_optimization_level=0")

import jax  # noqa: E402 - after XLA_FLAGS, which the backend reads at start

jax.config.update("jax_enable_x64", True)

#: the scripts that made the stored reference numbers (R, glum) are not tests:
#: they need R or glum, which the test suite never does
collect_ignore_glob = ["tests/reference/*"]
