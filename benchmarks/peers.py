"""Every method as a callable ``fit(X, y) -> Outcome``, built the way a user would.

Each call constructs and fits the model from scratch (model construction is part
of the timed work, as it is for a user). Designs carry their own intercept
column, so every peer is told ``fit_intercept=False``.
"""

from __future__ import annotations

import dataclasses
import warnings

import numpy as np


@dataclasses.dataclass
class Outcome:
    coef: np.ndarray
    n_iter: float | None = None
    converged: bool | None = None
    note: str = ""


@dataclasses.dataclass
class Method:
    name: str
    fit: object  # callable (X, y) -> Outcome
    is_mlejax: bool = False
    available: bool = True
    why_unavailable: str = ""


def _quiet(fn):
    def wrapped(X, y):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return fn(X, y)

    return wrapped


def _unavailable(name: str, exc: BaseException) -> Method:
    return Method(name, None, available=False, why_unavailable=f"{exc!r}")


# ---------------------------------------------------------------- mlejax


def mlejax_available() -> tuple[bool, str]:
    try:
        import mlejax as mj

        mj.fit  # noqa: B018
        mj.ols  # noqa: B018
    except Exception as exc:  # the engine may not have landed yet
        return False, repr(exc)
    return True, ""


def mlejax_fit(family_name: str, **kwargs) -> Method:
    ok, why = mlejax_available()
    label = "mlejax fit" + (f" ({kwargs['solver']})" if "solver" in kwargs else "")
    if not ok:
        return Method(label, None, True, False, why)
    import mlejax as mj

    family = getattr(mj.families, family_name)()

    def fit(X, y):
        res = mj.fit(X, y, family, **kwargs)
        return Outcome(
            np.asarray(res.params),
            int(res.n_iter),
            bool(res.converged),
        )

    return Method(label, _quiet(fit), is_mlejax=True)


def mlejax_ols() -> Method:
    ok, why = mlejax_available()
    if not ok:
        return Method("mlejax ols", None, True, False, why)
    import mlejax as mj

    def fit(X, y):
        res = mj.ols(X, y)
        return Outcome(np.asarray(res.params), int(res.n_iter), bool(res.converged))

    return Method("mlejax ols", _quiet(fit), is_mlejax=True)


# ---------------------------------------------------------------- statsmodels


def sm_discrete(kind: str) -> Method:
    name = f"statsmodels {kind} (newton)"
    try:
        import statsmodels.api as sm
    except Exception as exc:
        return _unavailable(name, exc)
    model_cls = {"Logit": sm.Logit, "Poisson": sm.Poisson}[kind]

    def fit(X, y):
        res = model_cls(y, X).fit(method="newton", disp=0)
        rv = res.mle_retvals
        return Outcome(
            np.asarray(res.params), rv.get("iterations"), rv.get("converged")
        )

    return Method(name, _quiet(fit))


def sm_glm(family: str) -> Method:
    name = f"statsmodels GLM {family} (irls)"
    try:
        import statsmodels.api as sm
    except Exception as exc:
        return _unavailable(name, exc)
    fam = {"Binomial": sm.families.Binomial, "Poisson": sm.families.Poisson}[family]

    def fit(X, y):
        res = sm.GLM(y, X, family=fam()).fit(method="IRLS")
        return Outcome(
            np.asarray(res.params),
            res.fit_history.get("iteration"),
            getattr(res, "converged", None),
        )

    return Method(name, _quiet(fit))


def sm_ols() -> Method:
    name = "statsmodels OLS (pinv)"
    try:
        import statsmodels.api as sm
    except Exception as exc:
        return _unavailable(name, exc)

    def fit(X, y):
        return Outcome(np.asarray(sm.OLS(y, X).fit().params))

    return Method(name, _quiet(fit))


# ---------------------------------------------------------------- scikit-learn


def _n_iter(est) -> float | None:
    it = getattr(est, "n_iter_", None)
    if it is None:
        return None
    return float(np.max(it))


def sk_logistic(solver: str, tol: float = 1e-8, max_iter: int = 10_000) -> Method:
    name = f"sklearn LogisticRegression ({solver})"
    try:
        import sklearn
        from sklearn.linear_model import LogisticRegression
    except Exception as exc:
        return _unavailable(name, exc)
    major, minor = (int(v) for v in sklearn.__version__.split(".")[:2])
    # scikit-learn >= 1.8 deprecates penalty=None in favour of C=inf (same model)
    nopen = {"C": np.inf} if (major, minor) >= (1, 8) else {"penalty": None}

    def fit(X, y):
        est = LogisticRegression(
            **nopen, solver=solver, tol=tol, max_iter=max_iter, fit_intercept=False
        ).fit(X, y)
        it = _n_iter(est)
        return Outcome(est.coef_.ravel().copy(), it, it is not None and it < max_iter)

    return Method(name, _quiet(fit))


def sk_poisson(solver: str, tol: float = 1e-8, max_iter: int = 10_000) -> Method:
    name = f"sklearn PoissonRegressor ({solver})"
    try:
        from sklearn.linear_model import PoissonRegressor
    except Exception as exc:
        return _unavailable(name, exc)

    def fit(X, y):
        est = PoissonRegressor(
            alpha=0.0, solver=solver, tol=tol, max_iter=max_iter, fit_intercept=False
        ).fit(X, y)
        it = _n_iter(est)
        return Outcome(est.coef_.ravel().copy(), it, it is not None and it < max_iter)

    return Method(name, _quiet(fit))


def sk_linear() -> Method:
    name = "sklearn LinearRegression"
    try:
        from sklearn.linear_model import LinearRegression
    except Exception as exc:
        return _unavailable(name, exc)

    def fit(X, y):
        est = LinearRegression(fit_intercept=False).fit(X, y)
        return Outcome(est.coef_.ravel().copy())

    return Method(name, _quiet(fit))


# ---------------------------------------------------------------- glum


def glum_glm(family: str, gradient_tol: float = 1e-10) -> Method:
    name = f"glum GLM {family}"
    try:
        from glum import GeneralizedLinearRegressor
    except Exception as exc:
        return _unavailable(name, exc)

    def fit(X, y):
        est = GeneralizedLinearRegressor(
            family=family,
            alpha=0.0,
            fit_intercept=False,
            gradient_tol=gradient_tol,
            max_iter=1000,
        ).fit(X, y)
        it = getattr(est, "n_iter_", None)
        return Outcome(np.asarray(est.coef_).ravel().copy(), it, None)

    return Method(name, _quiet(fit))


# ---------------------------------------------------------------- NumPy / SciPy


def np_lstsq() -> Method:
    def fit(X, y):
        return Outcome(np.linalg.lstsq(X, y, rcond=None)[0])

    return Method("numpy.linalg.lstsq (gelsd)", fit)


def scipy_lstsq(driver: str) -> Method:
    import scipy.linalg

    def fit(X, y):
        return Outcome(scipy.linalg.lstsq(X, y, lapack_driver=driver)[0])

    return Method(f"scipy.linalg.lstsq ({driver})", fit)


def normal_cholesky() -> Method:
    import scipy.linalg

    def fit(X, y):
        G = X.T @ X
        c = scipy.linalg.cho_factor(G, overwrite_a=True, check_finite=False)
        return Outcome(scipy.linalg.cho_solve(c, X.T @ y, check_finite=False))

    return Method("normal equations + cho_solve", fit)
