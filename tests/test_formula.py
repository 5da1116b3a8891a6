"""``mj.fit_formula`` against R's ``glm`` (tests/reference/formula.R), and bad input."""

from __future__ import annotations

import pathlib
import re

import numpy as np
import pytest

import mlejax as mj

pd = pytest.importorskip("pandas")
pytest.importorskip("formulaic")

REF = pathlib.Path(__file__).parent / "reference"
F = mj.families

#: model -> (formula as R wrote it, family)
MODELS = {
    "warpbreaks": ("breaks ~ wool * tension", F.Poisson()),
    "mtcars": ("mpg ~ wt + factor(cyl) + wt:hp", F.Gaussian()),
    "mtcars_terms": (
        "mpg ~ 0 + wt + I(wt^2) + poly(hp, 2) + C(factor(cyl), contr.sum) "
        "+ factor(gear)",
        F.Gaussian(),
    ),
    "esoph": ("cbind(ncases, ncontrols) ~ agegp + alcgp", F.Binomial()),
    "airquality": (
        "Ozone ~ Solar.R + Wind + factor(Month) + offset(log(Temp))",
        F.Poisson(),
    ),
}


def _with_r_levels(name: str, df):
    """R's factors as pandas categoricals in R's level order (the CSV loses it)."""
    lev = pd.read_csv(REF / "formula_levels.csv")
    for col, g in lev[(lev.dataset == name) & lev.column.isin(df.columns)].groupby(
        "column"
    ):
        cats = list(g.sort_values("position").level)
        df[col] = pd.Categorical(df[col], categories=cats)
    return df


def _data(name: str):
    name = name.split("_")[0]  # mtcars_terms: a second model on mtcars
    return _with_r_levels(name, pd.read_csv(REF / f"formula_{name}.csv"))


def _ref(name: str):
    r = pd.read_csv(REF / "formula_ref.csv", keep_default_na=False)
    r = r[r.model == name]
    out = {}
    for q, g in r.groupby("quantity", sort=False):
        out[q] = (list(g.name.astype(str)), g.value.astype(float).to_numpy())
    return out


class _Fits(dict):
    """Each model fitted once, when a test first asks for it."""

    def __missing__(self, name):
        f, fam = MODELS[name]
        self[name] = mj.fit_formula(f, _data(name), fam)
        return self[name]


@pytest.fixture(scope="module")
def fits():
    return _Fits()


# each model compiles a fit of its own shape (~4 s on one core from a cold
# cache): the default run keeps the Poisson pair (interactions; NA rows,
# factor() and offset()), -m slow adds two Gaussian (I(), poly(), sum
# contrasts, no intercept) and the cbind() Binomial
@pytest.mark.parametrize(
    "name",
    [
        "warpbreaks",
        pytest.param("mtcars", marks=pytest.mark.slow),
        pytest.param("mtcars_terms", marks=pytest.mark.slow),
        pytest.param("esoph", marks=pytest.mark.slow),
        pytest.param("airquality", marks=pytest.mark.slow),
    ],
)
def test_matches_r_glm(fits, name):
    res, ref = fits[name], _ref(name)
    names, coef = ref["coef"]
    assert res.names == tuple(names)  # R's names, exactly, in R's order
    np.testing.assert_allclose(res.params, coef, rtol=1e-8)
    np.testing.assert_allclose(res.stderr, ref["stderr"][1], rtol=1e-6)
    for ours, theirs in (
        (res.deviance, "deviance"),
        (res.null_deviance, "null_deviance"),
        (res.aic, "aic"),
        (res.loglik, "loglik"),
        (res.nobs, "nobs"),
        (res.df_resid, "df_residual"),
    ):
        np.testing.assert_allclose(ours, ref[theirs][1][0], rtol=1e-8, err_msg=theirs)
    dropped = int(ref["n_deleted"][1][0])
    assert res.model_spec.n_dropped == dropped
    text = res.summary()
    for nm in names:
        assert nm in text
    assert (f"{dropped} observations deleted due to missingness" in text) == (
        dropped > 0
    )
    # R's lines: "Null deviance: ... on 53  degrees of freedom", residual alike
    for df in (ref["df_null"][1][0], ref["df_residual"][1][0]):
        assert re.search(rf"deviance: \S+  on {int(df)}  degrees of freedom", text)
    assert f"Call: mj.fit_formula({MODELS[name][0]!r}" in text
    # predict(fit, newdata, se.fit = TRUE), both scales, on R's new rows
    new = pd.read_csv(REF / f"formula_new_{name}.csv")
    new = _with_r_levels(name.split("_")[0], new)
    for which, scale in (("linear", "link"), ("mean", "response")):
        p = res.predict(new, which=which, se=True)
        np.testing.assert_allclose(p.mean, ref[f"predict_{scale}"][1], rtol=1e-8)
        np.testing.assert_allclose(p.se, ref[f"predict_se_{scale}"][1], rtol=1e-6)


def test_dropped_rows_offset_and_factor_match_statsmodels(fits):
    """NA rows, offset() and factor() in the default run, on warpbreaks' shape
    (airquality, R's reference for the same features, runs with -m slow)."""
    smf = pytest.importorskip("statsmodels.formula.api")
    sm = pytest.importorskip("statsmodels.api")
    wb = _data("warpbreaks")
    wb["hours"] = np.linspace(1.0, 3.0, len(wb))
    nas = wb.iloc[:3].copy()
    nas["breaks"] = [np.nan, 20.0, 30.0]
    nas["hours"] = [2.0, np.nan, 2.0]
    nas["wool"] = pd.Categorical(["A", "B", None], categories=["A", "B"])
    df = pd.concat([nas, wb], ignore_index=True)
    formula = "breaks ~ factor(wool) * tension + offset(log(hours))"
    res = mj.fit_formula(formula, df, F.Poisson())
    assert res.model_spec.n_dropped == 3 and float(res.nobs) == len(wb)
    assert res.names[:2] == ("(Intercept)", "factor(wool)B")
    assert "3 observations deleted due to missingness" in res.summary()
    ref = smf.glm(
        "breaks ~ wool * tension",
        wb,
        family=sm.families.Poisson(),
        offset=np.log(wb["hours"]),
    ).fit(tol=1e-14)
    np.testing.assert_allclose(res.params, ref.params, rtol=1e-8)
    np.testing.assert_allclose(res.stderr, ref.bse, rtol=1e-6)
    np.testing.assert_allclose(res.deviance, ref.deviance, rtol=1e-8)
    new = pd.DataFrame({"wool": ["B"], "tension": ["H"], "hours": [2.5]})
    np.testing.assert_allclose(
        res.predict(new),
        ref.predict(new, offset=np.log(new["hours"])),
        rtol=1e-8,
    )


def test_na_action_names_and_frames(fits):
    df = _data("airquality")
    with pytest.raises(ValueError, match=r"na_action='raise'.*Ozone"):
        mj.fit_formula("Ozone ~ Wind", df, F.Poisson(), na_action="raise")
    with pytest.raises(ValueError, match="na_action must be"):
        mj.fit_formula("Ozone ~ Wind", df, F.Poisson(), na_action="omit")
    with pytest.raises(ValueError, match="no column 'Wnd'"):
        mj.fit_formula("Ozone ~ Wnd + Temp", df, F.Poisson())
    with pytest.raises(ValueError, match="has no response"):
        mj.fit_formula("~ Wind", df, F.Poisson())
    with pytest.raises(ValueError, match="cbind"):
        mj.fit_formula("cbind(Ozone, Temp) ~ Wind", df, F.Poisson())
    res = fits["warpbreaks"]
    new = pd.DataFrame({"wool": ["A", "C"], "tension": ["L", "M"]})
    with pytest.raises(ValueError, match=r"'wool'.*level 'C'"):
        res.predict(new)
    with pytest.raises(ValueError, match="no column 'tension'"):
        res.predict(new[["wool"]])
    # plain strings in a new frame encode as the fit's categoricals did
    np.testing.assert_allclose(
        res.predict(pd.DataFrame({"wool": ["B"], "tension": ["M"]})),
        np.exp(np.sum(np.asarray(res.params)[[0, 1, 2, 4]])),
        rtol=1e-12,
    )
    # per-row keywords: a column name, or an array cut to the kept rows
    wb = _data("warpbreaks")
    w = wb.assign(w=1.0)
    res_w = mj.fit_formula("breaks ~ wool * tension", w, F.Poisson(), weights="w")
    np.testing.assert_allclose(res_w.params, res.params, rtol=1e-12)
    w.loc[3, "w"] = np.nan
    with pytest.raises(ValueError, match="weights has a missing value at row 3"):
        mj.fit_formula(
            "breaks ~ wool * tension", w, F.Poisson(), weights="w", na_action="raise"
        )
    with pytest.raises(ValueError, match="weights='v' names no column"):
        mj.fit_formula("breaks ~ wool", w, F.Poisson(), weights="v")
    # formulaic's own names on request; same design, same fit
    res_f = mj.fit_formula(
        "breaks ~ wool * tension", wb, F.Poisson(), names="formulaic"
    )
    assert res_f.names[:2] == ("Intercept", "wool[T.B]")
    np.testing.assert_allclose(res_f.params, res.params, rtol=1e-12)


def test_labelled_classes_match_statsmodels_mnlogit():
    sm = pytest.importorskip("statsmodels.api")
    rng = np.random.default_rng(5)
    x = rng.normal(size=60)
    labels = np.array(["setosa", "versicolor", "virginica"])
    y = labels[rng.integers(0, 3, 60)]
    X = mj.add_constant(x)
    # reference "virginica": class order (virginica, setosa, versicolor)
    order = ["virginica", "setosa", "versicolor"]
    codes = np.array([order.index(v) for v in y])
    ref = sm.MNLogit(codes, X).fit(disp=0, method="newton", tol=1e-14, maxiter=100)
    fam = F.Categorical(3, reference="virginica")
    res = mj.fit(X, y, fam)
    assert res.classes == tuple(order)
    np.testing.assert_allclose(res.params, ref.params, rtol=1e-8)
    np.testing.assert_allclose(res.stderr, ref.bse, rtol=1e-6)
    text = res.summary()
    assert "x1[versicolor]" in text and "reference virginica" in text
    # the same fit from integer codes with reference=2, from a pandas
    # Categorical whose order puts virginica first, and from a formula
    int_codes = np.array([list(labels).index(v) for v in y])
    res2 = mj.fit(X, int_codes, F.Categorical(3, reference=2))
    assert res2.classes == (2, 0, 1)
    cat = pd.Series(pd.Categorical(y, categories=order))
    res3 = mj.fit(X, cat, F.Categorical(3))
    df = pd.DataFrame({"species": y, "x": x})
    res4 = mj.fit_formula("species ~ x", df, fam)
    assert res4.names == ("(Intercept)", "x") and res4.classes == tuple(order)
    for r in (res2, res3, res4):
        np.testing.assert_allclose(r.params, ref.params, rtol=1e-8)
    with pytest.raises(ValueError, match="reference='daisy' is not a class"):
        mj.fit(X, y, F.Categorical(3, reference="daisy"))
    with pytest.raises(ValueError, match=r"n_classes=4\) but y has 3 classes"):
        mj.fit(X, y, F.Categorical(4))
    with pytest.raises(ValueError, match="missing label at row 2"):
        mj.fit(X, np.where(np.arange(60) == 2, None, y), fam)
    assert hash(fam) == hash(F.Categorical(3, reference="virginica"))


@pytest.mark.slow  # a Bernoulli compile of its own (CI budget)
def test_bernoulli_booleans_match_statsmodels_logit():
    sm = pytest.importorskip("statsmodels.api")
    rng = np.random.default_rng(6)
    x = rng.normal(size=60)
    X = mj.add_constant(x)
    yb = rng.random(60) < 1 / (1 + np.exp(-x))
    ref = sm.Logit(yb.astype(float), X).fit(disp=0, method="newton", tol=1e-14)
    for y in (yb, pd.Series(yb), pd.Series(yb, dtype="boolean")):
        res = mj.fit(X, y, F.Bernoulli())
        np.testing.assert_allclose(res.params, ref.params, rtol=1e-8)
        np.testing.assert_allclose(res.stderr, ref.bse, rtol=1e-6)
    with pytest.raises(ValueError, match="non-finite"):
        mj.fit(
            X, pd.Series(yb, dtype="boolean").where(np.arange(60) != 3), F.Bernoulli()
        )


def test_polars_frame_gives_the_pandas_fit(fits):
    pl = pytest.importorskip("polars")
    df = _data("warpbreaks")
    res = mj.fit_formula(MODELS["warpbreaks"][0], pl.from_pandas(df), F.Poisson())
    assert res.names == fits["warpbreaks"].names
    np.testing.assert_allclose(res.params, fits["warpbreaks"].params, rtol=1e-12)
