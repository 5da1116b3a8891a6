"""FitResult: a registered pytree dataclass with a readable summary."""

from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp
import numpy as np

from mlejax.status import reason as _reason


class ParamNames(tuple):
    """Column names of ``X`` that also carry the class labels of a Categorical fit.

    A tuple (so it compares and hashes as the names do); ``classes`` is the
    class order, reference first, or ``None``.
    """

    classes: tuple | None

    def __new__(cls, names, classes=None):
        out = super().__new__(cls, names)
        out.classes = None if classes is None else tuple(classes)
        return out

    def __reduce__(self):
        return (ParamNames, (tuple(self), self.classes))


@dataclasses.dataclass(frozen=True)
class FitResult:
    """The outcome of one fit; a pytree, so it passes through ``jit`` and ``vmap``.

    Attributes:
      params: coefficients ``(p,)``, ``(p, K-1)`` for Categorical, or any pytree
        (``fit_likelihood``).
      extra: estimated extra parameters on their natural scale (``{"scale": ...}``).
      extra_stderr: their standard errors, same keys.
      stderr: standard errors of ``params`` (same shape).
      cov: covariance of the flattened ``params`` (row-major / ``ravel_pytree`` order).
      loglik: maximised log-likelihood with all constants.
      n_iter: solver iterations.
      converged: whether the solver's tolerance was met (and no separation/bound).
      aic, bic: information criteria, extra parameters counted.
      nobs: number of observations (sum of frequency weights).
      status: reason code, a :class:`mlejax.status.Status` (``reason`` in words).
      trace: objective (NLL) per iteration, NaN-padded to ``max_iter + 1``.
      family, solver, names: static descriptions (pytree metadata).
      model_spec: for ``mj.fit_formula``, the formula's encoding (a
        :class:`mlejax.formula.FormulaSpec`: ``predict`` on a data frame uses
        it); ``None`` otherwise. Pytree metadata.
      objective: penalised fits only: the minimised ``-loglik + penalty``
        (``loglik`` stays the unpenalised log-likelihood at the MAP).
      dispersion: the dispersion ``phi`` used in the model-based covariance
        of the families that estimate one (Gaussian, Gamma; ``None`` for the
        others); ``dispersion_method`` says which: ``"pearson"`` (R's
        ``summary.glm``) or ``"mle"``.
    """

    params: object
    extra: dict
    extra_stderr: dict
    stderr: object
    cov: jax.Array
    loglik: jax.Array
    n_iter: jax.Array
    converged: jax.Array
    aic: jax.Array
    bic: jax.Array
    nobs: jax.Array
    status: jax.Array
    trace: jax.Array
    family: str = ""
    solver: str = ""
    names: tuple | None = None
    deviance: jax.Array | None = None
    null_deviance: jax.Array | None = None
    n_groups: jax.Array | None = None
    cov_type: str = "nonrobust"
    family_obj: object = None
    model_spec: object = None
    #: penalised fits (``penalty=``): the minimised ``-loglik + penalty`` (the
    #: negative log posterior up to a constant); ``None`` for a plain MLE
    objective: jax.Array | None = None
    #: the dispersion phi in the model-based covariance (Gaussian, Gamma), None
    #: for families without one; ``dispersion_method``: "pearson" or "mle"
    dispersion: jax.Array | None = None
    dispersion_method: str = ""

    def replace(self, **kw) -> FitResult:
        return dataclasses.replace(self, **kw)

    @property
    def classes(self) -> tuple | None:
        """Class labels of a Categorical fit, reference first (``None`` when
        ``y`` held integer codes with the default reference)."""
        return getattr(self.names, "classes", None)

    @property
    def batch_shape(self) -> tuple[int, ...]:
        """Leading axes of a batched (vmapped) result; ``()`` for one fit."""
        return tuple(np.shape(self.loglik))

    def __getitem__(self, index) -> FitResult:
        """One fit (or a sub-batch) of a batched result: ``res[i]``, ``res[2:5]``."""
        if not self.batch_shape:
            raise TypeError(
                "this FitResult holds a single fit; indexing is for a batch of "
                "fits (the result of jax.vmap over mj.fit)."
            )
        return jax.tree_util.tree_map(lambda a: a[index], self)

    def __len__(self) -> int:
        if not self.batch_shape:
            raise TypeError("len() of a single fit; only a batch of fits has one.")
        return self.batch_shape[0]

    def _penalty_lines(self) -> list[str]:
        if self.objective is None:
            return []
        return [
            f"penalised (MAP): objective -loglik + penalty "
            f"{float(np.asarray(self.objective)):.6g}; stderr from the Laplace "
            "approximation (NaN at exact zeros)"
        ]

    @property
    def reason(self) -> str | list:
        """Why the fit stopped, in words (a nested list for a batch)."""
        codes = np.asarray(self.status)
        if codes.ndim == 0:
            return _reason(int(codes))
        return np.vectorize(_reason, otypes=[object])(codes).tolist()

    def summary(self, alpha: float = 0.05) -> str:
        """Table of coefficient, stderr, z, two-sided p-value and (1-alpha) Wald interval.

        For a batch of fits: a short overview that says how to index one.
        """
        if self.batch_shape:
            return self._batch_summary()
        params = (
            np.asarray(jax.tree_util.tree_leaves(self.params)[0])
            if not isinstance(self.params, jax.Array | np.ndarray)
            else np.asarray(self.params)
        )
        if params.ndim > 1 or not isinstance(self.params, jax.Array | np.ndarray):
            flat, _ = jax.flatten_util.ravel_pytree(self.params)
            se_flat, _ = jax.flatten_util.ravel_pytree(self.stderr)
            params, se = np.asarray(flat), np.asarray(se_flat)
        else:
            se = np.asarray(self.stderr)
        if params.ndim != 1:
            raise ValueError("summary() is for a single (unbatched) fit.")
        names = self._row_names(len(params))
        from scipy import stats  # lazily: scipy.stats costs ~1 s at import

        _check_alpha(alpha)
        use_t = self.use_t
        df = float(np.asarray(self.df_resid))
        dist = stats.t(df) if use_t else stats.norm
        zq = dist.ppf(1 - alpha / 2)
        with np.errstate(divide="ignore", invalid="ignore"):
            z = params / se
        pval = 2 * dist.sf(np.abs(z))
        lo, hi = params - zq * se, params + zq * se
        ci = f"[{alpha / 2:.3f}"
        ci2 = f"{1 - alpha / 2:.3f}]"
        w = max(12, max(len(s) for s in [*names, *self.extra]) + 1)
        zn, pn = ("t value", "Pr(>|t|)") if use_t else ("z value", "Pr(>|z|)")
        head = (
            f"{'':<{w}}{'Estimate':>13}{'Std. Error':>12}{zn:>9}{pn:>10}"
            f"{ci:>13}{ci2:>13}"
        )
        cov_line = f"covariance {self.cov_type}"
        if self.cov_type == "cluster" and self.n_groups is not None:
            ng = np.atleast_1d(np.asarray(self.n_groups)).tolist()
            cov_line += f" ({' x '.join(str(int(g)) for g in ng)} groups)"
        cov_line += f"   Wald {'t' if use_t else 'z'} distribution" + (
            f" (df_resid {df:g})" if use_t else ""
        )
        link = getattr(self.family_obj, "link_name", None)
        lines = [
            *self._call_lines(),
            f"Family: {self.family}"
            + (f"   Link: {link}" if isinstance(link, str) else "")
            + f"   Solver: {self.solver}",
            cov_line,
            *self._class_lines(),
            *self._penalty_lines(),
            "",
            "Coefficients:",
            head,
            "-" * len(head),
        ]
        for i, nm in enumerate(names):
            lines.append(
                f"{nm:<{w}}{params[i]:>13.6g}{se[i]:>12.4g}{z[i]:>9.3f}{pval[i]:>10.3g}"
                f"{lo[i]:>13.6g}{hi[i]:>13.6g}"
            )
        for k, v in self.extra.items():
            s = self.extra_stderr.get(k, math.nan)
            lines.append(
                f"{k:<{w}}{float(np.asarray(v)):>13.6g}{float(np.asarray(s)):>12.4g}"
                "   (estimated by maximum likelihood)"
            )
        lines += ["---", *self._dispersion_lines(), "", *self._deviance_lines()]
        lines += [
            f"AIC: {float(np.asarray(self.aic)):.6g}   BIC: "
            f"{float(np.asarray(self.bic)):.6g}   log-likelihood: "
            f"{float(np.asarray(self.loglik)):.6g}   nobs: "
            f"{float(np.asarray(self.nobs)):g}",
            "",
            f"Number of {self.solver} iterations: {int(np.asarray(self.n_iter))}   "
            f"converged {bool(np.asarray(self.converged))} ({self.reason})",
        ]
        return "\n".join(lines)

    def _call_lines(self) -> list[str]:
        spec = self.model_spec
        if spec is None:
            return []
        return [f"Call: mj.fit_formula({spec.formula!r}, family={self.family})"]

    def _class_lines(self) -> list[str]:
        classes = self.classes
        if classes is None:
            return []
        return [
            f"classes: {', '.join(map(str, classes))} (reference {classes[0]}: "
            "logit 0; each coefficient is named term[class])"
        ]

    def _dispersion_lines(self) -> list[str]:
        """R's dispersion note, with mlejax's convention where it differs."""
        fam = self.family_obj
        if fam is None or fam.eta_has_axis:
            return []
        how = {
            "pearson": "the Pearson estimate sum(v (y-mu)^2 / V(mu)) / df_resid, "
            "as R's summary.glm",
            "mle": "the maximum-likelihood estimate (MLE)",
        }.get(self.dispersion_method)
        ols = getattr(fam, "ols_convention", False)
        if (
            how
            and self.dispersion is not None
            and (self.dispersion_method == "mle" or not ols)
        ):
            phi = float(np.asarray(self.dispersion))
            return [
                f"(Dispersion parameter for {self.family} family taken to be "
                f"{phi:.6g}: {how})"
            ]
        if ols and self.deviance is not None:
            phi = float(np.asarray(self.deviance)) / float(np.asarray(self.df_resid))
            return [
                f"(Dispersion parameter for {self.family} family taken to be "
                f"{phi:.6g}: the Pearson estimate sum(v r^2) / df_resid, as R's glm and lm; "
                "extra scale is the MLE sqrt(RSS / nobs))"
            ]
        if not fam.extra_names:
            return [f"(Dispersion parameter for {self.family} family taken to be 1)"]
        est = ", ".join(
            f"{k} = {float(np.asarray(v)):.6g}" for k, v in self.extra.items()
        )
        return [
            f"(Dispersion: {est}, estimated jointly by maximum likelihood; R's "
            "summary.glm uses the Pearson estimate instead: dispersion='pearson')"
        ]

    def _deviance_lines(self) -> list[str]:
        if self.deviance is None or not np.isfinite(np.asarray(self.deviance)):
            return []
        nobs = float(np.asarray(self.nobs))
        spec = self.model_spec
        if spec is not None:
            intercept = spec.has_intercept
        elif self.names is not None:
            intercept = any(
                n in ("const", "Intercept", "(Intercept)") for n in self.names
            )
        else:
            intercept = None
        null_df = (
            f"  on {nobs - intercept:g}  degrees of freedom"
            if intercept is not None
            else ""
        )
        lines = [
            f"    Null deviance: {float(np.asarray(self.null_deviance)):.6g}{null_df}",
            f"Residual deviance: {float(np.asarray(self.deviance)):.6g}  on "
            f"{float(np.asarray(self.df_resid)):g}  degrees of freedom",
        ]
        if spec is not None and spec.n_dropped:
            lines.append(
                f"  ({spec.n_dropped} observation{'s' if spec.n_dropped > 1 else ''} "
                "deleted due to missingness)"
            )
        return lines

    # -- inference ------------------------------------------------------------
    @property
    def n_coef(self) -> int:
        """Number of coefficients of one fit (``p * eta_dim``; every parameter of
        a ``fit_likelihood``)."""
        nb = len(self.batch_shape)
        return int(
            sum(
                np.prod(np.shape(a)[nb:], dtype=int)
                for a in jax.tree_util.tree_leaves(self.params)
            )
        )

    @property
    def df_resid(self):
        """Residual degrees of freedom ``nobs - k`` (k coefficients, as R)."""
        return self.nobs - self.n_coef

    @property
    def use_t(self) -> bool:
        """Whether Wald statistics are Student t: an estimated Pearson dispersion
        (Gaussian by default, as R/statsmodels OLS; Gamma with
        ``dispersion="pearson"``, as R's ``summary.glm``)."""
        if self.dispersion_method:
            return self.dispersion_method == "pearson"
        return bool(getattr(self.family_obj, "ols_convention", False))

    @property
    def tvalues(self):
        """Wald statistics ``params / stderr`` (shaped like ``params``)."""
        return jax.tree_util.tree_map(lambda b, s: b / s, self.params, self.stderr)

    @property
    def pvalues(self):
        """Two-sided p-values: Student t with ``df_resid`` (Gaussian), else normal."""
        if self.use_t:
            df = jnp.asarray(self.df_resid)

            def pv(t):
                d = df.reshape(df.shape + (1,) * (t.ndim - df.ndim))
                return jax.scipy.special.betainc(d / 2, 0.5, d / (d + t * t))

        else:

            def pv(t):
                return 2.0 * jax.scipy.special.ndtr(-jnp.abs(t))

        return jax.tree_util.tree_map(pv, self.tvalues)

    def _quantile(self, alpha: float):
        from scipy import stats

        if self.use_t:
            return stats.t.ppf(1 - alpha / 2, np.asarray(self.df_resid))
        return stats.norm.ppf(1 - alpha / 2)

    def conf_int(self, alpha: float = 0.05) -> jax.Array:
        """``(k, 2)`` Wald intervals of the flattened ``params`` (``cov`` order).

        ``params -/+ q stderr`` with ``q`` the ``1 - alpha/2`` quantile of
        the t (Gaussian, ``df_resid``) or the normal. A batch gives
        ``(..., k, 2)``.
        """
        _check_alpha(alpha)
        nb = len(self.batch_shape)
        b, se = (_flat(a, nb) for a in (self.params, self.stderr))
        q = np.asarray(self._quantile(alpha))
        q = q.reshape(q.shape + (1,) * (b.ndim - q.ndim))
        return jnp.stack([b - q * se, b + q * se], axis=-1)

    def wald_test(self, R, q=None):
        """Wald test of ``H0: R @ params = q`` -> ``(statistic, df, pvalue)``.

        ``R``: ``(r, k)`` (or ``(k,)``) over the flattened ``params``; ``q``
        defaults to zeros. The statistic is chi-squared with ``r`` df (for
        Gaussian fits, statsmodels' OLS F statistic is this divided by ``r``).
        """
        from mlejax import stattests

        return stattests.wald_test(self, R, q)

    def predict(self, X_new, offset=None, which="mean", se=False, alpha=0.05):
        """Predictions at ``X_new``; with ``se=True`` a ``Prediction`` (delta method).

        After ``mj.fit_formula``, ``X_new`` may be a data frame: the fit's
        encoding (levels, contrasts, ``offset(...)`` terms) is applied to it; a
        missing column or an unseen factor level is a ``ValueError`` naming it.
        See :func:`mlejax.stattests.predict`.
        """
        from mlejax import stattests

        if self.model_spec is not None and not isinstance(
            X_new, np.ndarray | jax.Array
        ):
            X_new, off = self.model_spec.design(X_new)
            if off is not None:
                offset = off if offset is None else off + np.asarray(offset)

        return stattests.predict(self, X_new, offset, which, se, alpha)

    def _batch_summary(self) -> str:
        conv = np.asarray(self.converged)
        codes, counts = np.unique(np.asarray(self.status), return_counts=True)
        why = ", ".join(
            f"{_reason(int(c))}: {int(k)}" for c, k in zip(codes, counts, strict=True)
        )
        shape = "x".join(str(d) for d in self.batch_shape)
        return "\n".join(
            [
                f"batch of {shape} {self.family} fits, solver {self.solver}",
                f"converged {int(conv.sum())} of {conv.size} ({why})",
                "index one fit for its table: res[i].summary()",
            ]
        )

    def _row_names(self, k: int) -> list[str]:
        p_shape = (
            np.shape(self.params)
            if isinstance(self.params, jax.Array | np.ndarray)
            else None
        )
        base = list(self.names) if self.names is not None else None
        if p_shape is not None and len(p_shape) == 2:
            p, m = p_shape
            base = base or [f"x{j}" for j in range(p)]
            cls = self.classes
            lab = list(cls[1:]) if cls is not None else [c + 1 for c in range(m)]
            return [f"{base[j]}[{lab[c]}]" for j in range(p) for c in range(m)]
        if base is not None and len(base) == k:
            return base
        return [f"x{j}" for j in range(k)]

    def __repr__(self) -> str:
        return (
            f"FitResult(family={self.family!r}, solver={self.solver!r}, "
            f"params={self.params!r}, loglik={self.loglik!r}, converged={self.converged!r})"
        )


def _check_alpha(alpha) -> float:
    if not (isinstance(alpha, int | float | np.floating) and 0 < alpha < 1):
        raise ValueError(f"alpha must lie in (0, 1); got {alpha!r}.")
    return float(alpha)


def _flat(tree, nb: int = 0) -> jax.Array:
    """Leaves raveled per fit (``ravel_pytree`` order), batch axes kept."""
    leaves = jax.tree_util.tree_leaves(tree)
    return jnp.concatenate(
        [jnp.reshape(a, jnp.shape(a)[:nb] + (-1,)) for a in leaves], axis=-1
    )


jax.tree_util.register_dataclass(
    FitResult,
    data_fields=[
        "params",
        "extra",
        "extra_stderr",
        "stderr",
        "cov",
        "loglik",
        "n_iter",
        "converged",
        "aic",
        "bic",
        "nobs",
        "status",
        "trace",
        "deviance",
        "null_deviance",
        "n_groups",
        "objective",
        "dispersion",
    ],
    meta_fields=[
        "family",
        "solver",
        "names",
        "cov_type",
        "family_obj",
        "dispersion_method",
        "model_spec",
    ],
)

import jax.flatten_util  # noqa: E402  (ravel_pytree, used in summary)
import jax.scipy.special  # noqa: E402
