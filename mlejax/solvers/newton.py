"""Damped Newton with an Armijo line search, as one ``lax.while_loop``.

One loop serves every Newton fit. It sees a *problem*, one of two plug-ins:

* :func:`dense_problem`: any ``theta -> (f, g, H)`` (``fit_likelihood``);
  every evaluation forms the Hessian;
* the structured regression objective :func:`mlejax.objective.make_glm`,
  which exploits a regression likelihood:

  - the line search along ``d`` needs ``X d`` once, after which every trial
    point costs elementwise work on ``eta - t X d`` only;
  - the Hessian (the Gram matrix ``X' diag(h) X``, the dominant cost) is
    recomputed only when it is stale: while the steps taken since it was
    formed total at most ``HESS_STEP_REUSE`` (relative) the last Hessian is
    kept and only the score is evaluated (a chord step, which converges
    linearly at a rate of about that distance; a chord step that shrinks the
    step by less than ``CHORD_RATE`` forces a fresh Hessian). A caller may
    pass an approximate starting Hessian (from a subsample fit) for the first
    steps.

The Hessian returned for inference is always the one at the final iterate
(``HESS_REUSE = 0``), so ``stderr`` does not depend on the path taken.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp

from mlejax.status import Status

#: relative distance up to which the last Hessian serves inference (0: only
#: the Hessian at the final iterate; 1e-8 left 5e-9 differences in stderr
#: between two solver paths to the same MLE)
HESS_REUSE = 0.0
#: relative distance below which the last Hessian is reused for steps
HESS_STEP_REUSE = 1e-2
#: a chord step must shrink the step at least this much, or H is refreshed
CHORD_RATE = 0.25


def newton_direction(g: jax.Array, H: jax.Array, convex: bool) -> jax.Array:
    """Solve ``H d = g`` in equilibrated form; a safeguarded direction if H is not PD.

    Cholesky of ``D H D`` with ``D = diag(H)^{-1/2}``; when it fails (H not
    positive definite away from the optimum) and the problem is not known to be
    convex, the eigenvalues of ``D H D`` are reflected and floored (a
    modified-Newton step that is always a descent direction).
    """
    diag = jnp.abs(jnp.diag(H))
    d = jnp.where(diag > 0, 1.0 / jnp.sqrt(jnp.where(diag > 0, diag, 1.0)), 1.0)
    Hs = H * d[:, None] * d[None, :]
    gs = g * d
    L = jnp.linalg.cholesky(Hs)
    step = jax.scipy.linalg.cho_solve((L, True), gs)
    if convex:
        return step * d
    ok = jnp.all(jnp.isfinite(step))

    def modified(_):
        w, V = jnp.linalg.eigh(Hs)
        floor = jnp.maximum(jnp.max(jnp.abs(w)) * 1e-8, jnp.finfo(w.dtype).tiny)
        w = jnp.maximum(jnp.abs(w), floor)
        return V @ ((V.T @ gs) / w)

    step = jax.lax.cond(ok, lambda _: step, modified, None)
    return step * d


class NewtonProblem(NamedTuple):
    """What the Newton loop needs (a :class:`mlejax.objective.GLMObjective` is one)."""

    evaluate: Callable  # (theta, hess: bool) -> (g, H | None, eta)
    value_at: Callable  # (eta, theta) -> f
    eta: Callable  # theta -> eta (the problem's "linear predictor")
    lin: Callable  # direction[:nb] -> the change of eta along it
    nb: int  # leading entries of theta that enter eta
    cheap_hessian: bool  # form H at every evaluation (no chord steps)


def dense_problem(
    value: Callable[[jax.Array], jax.Array],
    value_grad_hess: Callable[[jax.Array], tuple[jax.Array, jax.Array, jax.Array]],
    k: int,
) -> NewtonProblem:
    """The plug-in for a plain ``theta -> (f, g, H)``: ``eta`` is ``theta``."""

    def evaluate(theta, hess):
        _, g, H = value_grad_hess(theta)
        return g, H, theta

    return NewtonProblem(
        evaluate=evaluate,
        value_at=lambda eta, theta: value(theta),
        eta=lambda theta: theta,
        lin=lambda d: d,
        nb=k,
        cheap_hessian=True,
    )


class NewtonResult(NamedTuple):
    x: jax.Array
    f: jax.Array
    g: jax.Array
    H: jax.Array  # Hessian at x (for inference)
    n_iter: jax.Array
    converged: jax.Array
    status: jax.Array
    trace: jax.Array


class _State(NamedTuple):
    x: jax.Array
    f: jax.Array
    g: jax.Array
    H: jax.Array
    age: jax.Array  # relative distance moved since H was formed (inf: none yet)
    slow: jax.Array  # the last chord step shrank the step by less than CHORD_RATE
    rel_step: jax.Array  # of the last step
    tiny: jax.Array  # the last step's predicted decrease was at rounding level
    ls_fail: jax.Array
    bad_step: jax.Array  # the Newton direction was not finite
    n_iter: jax.Array
    done: jax.Array
    status: jax.Array
    trace: jax.Array


def stop_status(converged, nonfinite, ls_fail) -> jax.Array:
    """Why a Newton-type loop stops: converged, non-finite, line search, or the cap."""
    return jnp.where(
        converged,
        int(Status.CONVERGED),
        jnp.where(
            nonfinite,
            int(Status.NON_FINITE),
            jnp.where(ls_fail, int(Status.LINE_SEARCH), int(Status.MAX_ITER)),
        ),
    )


def newton_loop(
    obj: NewtonProblem,
    x0: jax.Array,
    *,
    tol,
    max_iter: int,
    convex: bool = False,
    project=None,
    max_halvings: int = 40,
    H0=None,
    H0_ok=None,
) -> NewtonResult:
    """Minimise ``obj`` by damped Newton steps.

    Each step solves ``H d = g`` (:func:`newton_direction`), then halves the
    step until the Armijo condition ``f(x - t d) <= f(x) - 1e-4 t g.d + slack``
    holds, ``slack = 256 eps |f|`` (a sum of n terms that partly cancel, as
    Gamma's or NB's, is noisier than ``eps |f|``: at ``16 eps |f|`` a
    compiler's rounding choices alone, FMA or not, were seen to halve the
    final step). Converged when ``max_i |t d_i| / (1 + |x_i|) <= tol`` or the
    predicted decrease ``g.d / 2`` is below the rounding level of ``f``.
    Status (:class:`mlejax.status.Status`): ``CONVERGED``, ``MAX_ITER``,
    ``LINE_SEARCH``, ``NON_FINITE`` (objective, score or Newton direction).

    Each pass of the loop first evaluates the objective at the current point
    (with the Hessian when it is stale, the score alone otherwise, nothing
    once converged with a fresh-enough Hessian), then either stops or takes a
    step; so one compiled copy of each evaluation serves the whole fit.

    ``H0`` (with the flag ``H0_ok``) is an approximate Hessian at ``x0``, such
    as a subsample's scaled to the full data: the first steps are chord steps
    with it, and it is never returned for inference.
    """
    project = project or (lambda x: x)
    nb = obj.nb
    dtype = x0.dtype
    eps = jnp.finfo(dtype).eps
    k = x0.shape[0]
    zero = jnp.zeros((), dtype)
    # The NLL comes from the start and then from each accepted line-search
    # trial (on eta updated along X d): evaluations give only g and H.
    eta_shape = jax.eval_shape(obj.eta, x0).shape
    init = _State(
        x=x0,
        f=obj.value_at(obj.eta(x0), x0),
        g=jnp.zeros(k, dtype),
        H=jnp.zeros((k, k), dtype) if H0 is None else H0,
        # an approximate H0 serves steps but counts as too old for inference
        age=jnp.asarray(jnp.inf, dtype)
        if H0 is None
        else jnp.where(H0_ok, jnp.finfo(dtype).tiny, jnp.inf).astype(dtype),
        slow=jnp.asarray(False),
        rel_step=jnp.asarray(jnp.inf, dtype),
        tiny=jnp.asarray(False),
        ls_fail=jnp.asarray(False),
        bad_step=jnp.asarray(False),
        n_iter=jnp.asarray(0),
        done=jnp.asarray(False),
        status=jnp.asarray(int(Status.MAX_ITER)),
        trace=jnp.full((max_iter + 1,), jnp.nan, dtype),
    )

    def body(s: _State):
        converged = (
            (s.n_iter > 0) & (((s.rel_step <= tol) & ~s.ls_fail) | s.tiny) & ~s.bad_step
        )
        stop = converged | s.ls_fail | s.bad_step | (s.n_iter >= max_iter)
        # lazy Hessians only where the Gram matrix dominates the cost (a
        # cheap one is always refreshed: under vmap both branches would run)
        stale = jnp.where(stop, s.age > HESS_REUSE, (s.age > HESS_STEP_REUSE) | s.slow)
        fresh = stale | (obj.cheap_hessian & ~stop)

        def with_hessian(_):
            g1, H1, e1 = obj.evaluate(s.x, True)
            return g1, H1, e1, zero

        def score_only(_):
            g1, _, e1 = obj.evaluate(s.x, False)
            return g1, s.H, e1, s.age

        def keep(_):  # only when stopping: no step needs eta
            return s.g, s.H, jnp.zeros(eta_shape, dtype), s.age

        if obj.cheap_hessian:
            g, H, eta, age = jax.lax.cond(fresh, with_hessian, keep, None)
        else:
            branch = jnp.where(fresh, 0, jnp.where(stop, 2, 1))
            g, H, eta, age = jax.lax.switch(
                branch, (with_hessian, score_only, keep), None
            )
        f = s.f
        trace = s.trace.at[s.n_iter].set(f)
        nonfinite = ~jnp.isfinite(f) | ~jnp.all(jnp.isfinite(g)) | s.bad_step
        status = stop_status(converged, nonfinite, s.ls_fail)
        done = stop | nonfinite
        s = s._replace(f=f, g=g, H=H, age=age, trace=trace)

        # eta = X x is not carried between passes (under vmap every carried
        # array is copied by a select each pass): the evaluation returns it.
        def take_step(s: _State):
            d = newton_direction(s.g, s.H, convex)
            # A non-finite direction (a singular information: a collinear or
            # empty column, NaN data under jit) is a failure, never a "tiny
            # step" that passes for convergence.
            d_ok = jnp.all(jnp.isfinite(d))
            d = jnp.where(d_ok, d, 0.0)
            slope = jnp.dot(s.g, d)
            Xd = obj.lin(d[:nb])
            # Armijo with a rounding allowance: near the optimum f cannot
            # resolve the decrease, and the full Newton step must be taken.
            slack = 256 * eps * jnp.abs(s.f)

            def trial(t):
                return obj.value_at(eta - t * Xd, project(s.x - t * d))

            def armijo(t, f_new, f_ref):
                ok = f_new <= f_ref - 1e-4 * t * slope + slack
                return ok & jnp.isfinite(f_new)

            def ls_cond(c):
                t, f_new, j, f_ref, _ = c
                # (~done: under vmap a finished fit runs this loop too, on a
                # placeholder eta, and must not hold the others' loop open)
                return ~armijo(t, f_new, f_ref) & (j < max_halvings) & ~done

            def ls_body(c):
                t, f_new, j, f_ref, measured = c

                # On the first failure f is re-measured here, on the same eta
                # as the trials: the carried f came from the previous line
                # search's eta, which differs from X x by rounding, and near
                # the optimum that alone can fail the full step.
                def remeasure(_):
                    return t, f_new, j, obj.value_at(eta, s.x), True

                def halve(_):
                    return 0.5 * t, trial(0.5 * t), j + 1, f_ref, True

                return jax.lax.cond(measured, halve, remeasure, None)

            one = jnp.ones((), dtype)
            t, f_new, j, f_ref, _ = jax.lax.while_loop(
                ls_cond, ls_body, (one, trial(one), 0, s.f, jnp.asarray(False))
            )
            ls_ok = (j < max_halvings) | armijo(t, f_new, f_ref)
            x_new = jnp.where(ls_ok, project(s.x - t * d), s.x)
            rel_step = jnp.max(jnp.abs(x_new - s.x) / (1.0 + jnp.abs(s.x)))
            chord = s.age > 0  # H was not formed at this iterate
            return s._replace(
                slow=chord & (rel_step > CHORD_RATE * s.rel_step),
                x=x_new,
                f=jnp.where(ls_ok, f_new, s.f),
                age=s.age + rel_step,
                rel_step=rel_step,
                tiny=d_ok & (0.5 * jnp.abs(slope) <= 64 * eps * (1.0 + jnp.abs(s.f))),
                ls_fail=~ls_ok,
                bad_step=~d_ok,
                n_iter=s.n_iter + 1,
            )

        s = jax.lax.cond(done, lambda s: s, take_step, s)
        return s._replace(done=done, status=status)

    out = jax.lax.while_loop(lambda s: ~s.done, body, init)
    return NewtonResult(
        out.x, out.f, out.g, out.H, out.n_iter, out.status == 0, out.status, out.trace
    )


def newton(
    value: Callable[[jax.Array], jax.Array],
    value_grad_hess: Callable[[jax.Array], tuple[jax.Array, jax.Array, jax.Array]],
    x0: jax.Array,
    *,
    tol,
    max_iter: int,
    convex: bool = False,
    project: Callable[[jax.Array], jax.Array] | None = None,
) -> NewtonResult:
    """:func:`newton_loop` on a plain ``theta -> (f, g, H)`` (see :func:`dense_problem`)."""
    problem = dense_problem(value, value_grad_hess, x0.shape[0])
    return newton_loop(
        problem, x0, tol=tol, max_iter=max_iter, convex=convex, project=project
    )
