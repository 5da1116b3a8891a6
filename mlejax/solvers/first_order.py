"""First-order solvers: Optax's L-BFGS in a while_loop, any Optax transform in a scan."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax

from mlejax.status import Status


class FirstOrderResult(NamedTuple):
    x: jax.Array
    f: jax.Array
    n_iter: jax.Array
    converged: jax.Array
    status: jax.Array
    trace: jax.Array


@functools.cache
def _lbfgs() -> optax.GradientTransformationExtraArgs:
    # Built once: a fresh transform hashes differently and would recompile.
    return optax.lbfgs()


def _status(converged, finite):
    return jnp.where(
        converged,
        int(Status.CONVERGED),
        jnp.where(finite, int(Status.MAX_ITER), int(Status.NON_FINITE)),
    )


def _grad_small(g, f, tol):
    return jnp.max(jnp.abs(g)) <= tol * jnp.maximum(1.0, jnp.abs(f))


def lbfgs(fun: Callable, x0: jax.Array, *, tol, max_iter: int) -> FirstOrderResult:
    """Optax L-BFGS (zoom line search) until ``max|grad| <= tol * max(1, |f|)``.

    Also stops, converged, when the objective and iterate stop changing at the
    rounding level (L-BFGS cannot make further progress in this precision).
    """
    opt = _lbfgs()
    vg = optax.value_and_grad_from_state(fun)
    eps = jnp.finfo(x0.dtype).eps
    f0, g0 = jax.value_and_grad(fun)(x0)
    trace0 = jnp.full((max_iter + 1,), jnp.nan, x0.dtype).at[0].set(f0)

    def cond(c):
        x, state, f, g, k, done, trace = c
        return (~done) & (k < max_iter)

    def body(c):
        x, state, f, g, k, _, trace = c
        value, grad = vg(x, state=state)
        updates, state = opt.update(
            grad, state, x, value=value, grad=grad, value_fn=fun
        )
        x_new = optax.apply_updates(x, updates)
        f_new, g_new = (
            optax.tree_utils.tree_get(state, "value"),
            optax.tree_utils.tree_get(state, "grad"),
        )
        stalled = (jnp.abs(f - f_new) <= 4 * eps * (1.0 + jnp.abs(f))) & (
            jnp.max(jnp.abs(x_new - x) / (1.0 + jnp.abs(x))) <= 16 * eps
        )
        done = _grad_small(g_new, f_new, tol) | stalled | ~jnp.isfinite(f_new)
        return x_new, state, f_new, g_new, k + 1, done, trace.at[k + 1].set(f_new)

    init = (x0, opt.init(x0), f0, g0, jnp.asarray(0), _grad_small(g0, f0, tol), trace0)
    x, _, f, g, k, _, trace = jax.lax.while_loop(cond, body, init)
    f, g = jax.value_and_grad(fun)(x)
    finite = jnp.isfinite(f)
    conv = finite & (_grad_small(g, f, tol) | (k < max_iter))
    status = _status(conv, finite)
    return FirstOrderResult(x, f, k, conv, status, trace)


def optax_loop(
    fun: Callable,
    x0: jax.Array,
    opt: optax.GradientTransformation,
    *,
    tol,
    max_iter: int,
) -> FirstOrderResult:
    """Run ``max_iter`` steps of any Optax transform with ``lax.scan``.

    A ``GradientTransformationExtraArgs`` (``optax.lbfgs()``, any
    ``optax.chain``) gets ``value``, ``grad`` and ``value_fn`` as the keyword
    arguments its line search needs. ``converged`` says whether
    ``max|grad| <= tol * max(1, |f|)`` holds at the end.
    """
    vg = jax.value_and_grad(fun)
    extra_args = isinstance(opt, optax.GradientTransformationExtraArgs)

    def body(c, _):
        x, state = c
        f, g = vg(x)
        if extra_args:
            updates, state = opt.update(g, state, x, value=f, grad=g, value_fn=fun)
        else:
            updates, state = opt.update(g, state, x)
        return (optax.apply_updates(x, updates), state), f

    (x, _), fs = jax.lax.scan(body, (x0, opt.init(x0)), None, length=max_iter)
    f, g = vg(x)
    trace = jnp.concatenate([fs, f[None]])
    conv = jnp.isfinite(f) & _grad_small(g, f, tol)
    status = _status(conv, jnp.isfinite(f))
    return FirstOrderResult(x, f, jnp.asarray(max_iter), conv, status, trace)
