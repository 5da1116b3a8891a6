"""The negative log-likelihood and the classic loss have proportional gradients.

For each family with a classic loss (``family.loss_name``), ``NLL = a n loss + b``
(``mj.equivalence.affine_constants``), hence ``grad NLL = a n grad loss``. This
experiment checks it numerically against three implementations of the loss:
mlejax's (``mj.losses``), Optax's (``squared_error``,
``sigmoid_binary_cross_entropy``, ``softmax_cross_entropy_with_integer_labels``;
Optax has no Poisson or L1 loss) and PyTorch's ``torch.nn`` modules (float64):

* at ``n_points`` random coefficient vectors and at ``fit_steps`` iterates of an
  Adam fit: the fitted constant ``a_hat = <g_nll, g_loss> / <g_loss, g_loss>``
  next to the theoretical ``a n``, and ``max |g_nll - a n g_loss| / max |g_nll|``;
* the estimates: the MLE ``mj.fit(X, y, family)`` against the minimiser of the
  loss alone (SciPy ``trust-exact`` on the mlejax loss; a linear program for L1);
* two PyTorch training snippets, ``torch.nn.Linear`` with ``MSELoss`` and with
  ``BCEWithLogitsLoss`` (float64, L-BFGS), landing on the mlejax MLE.

PyTorch is optional (the ``compare`` extra): without it, or with ``torch =
false``, the torch comparisons are skipped and the report says so.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import scipy.optimize

import mlejax as mj
from experiments import common
from experiments.config import GradientEquivalence
from experiments.core import fold

NAME = "gradient_equivalence"
Config = GradientEquivalence

#: true extra parameters used to simulate and held fixed in the NLL
SCALES = {"Gaussian": 1.5, "Laplace": 0.8}
#: estimates closer than this count as "the same" in the report
SAME_ESTIMATES_ATOL = 1e-6
#: float64 machine epsilon: the unit of the gradient-deviation plot
EPS = float(np.finfo(np.float64).eps)
TORCH_SNIPPETS = {"torch_mse": "Gaussian", "torch_bce": "Bernoulli"}


def torch_available() -> bool:
    try:
        import torch  # noqa: F401 - availability probe

        return True
    except ImportError:
        return False


def data(config: GradientEquivalence, key: jax.Array, name: str):
    """``(family, X, y, beta_true, extra)`` for family ``name``."""
    fam = common.family_by_name(name, n_classes=config.n_classes)
    kx, kb, ky = jax.random.split(fold(key, f"data/{name}"), 3)
    X = common.design(kx, config.n, config.p, 0.3)
    shape = (config.p, config.n_classes - 1) if name == "Categorical" else (config.p,)
    beta = 0.6 * jax.random.normal(kb, shape, jnp.float64)
    eta = X @ beta
    extra = {"scale": SCALES[name]} if name in SCALES else {}
    if name == "Gaussian":
        y = eta + SCALES[name] * jax.random.normal(ky, eta.shape, jnp.float64)
    elif name == "Laplace":
        y = eta + SCALES[name] * jax.random.laplace(ky, eta.shape, jnp.float64)
    elif name == "Bernoulli":
        y = jax.random.bernoulli(ky, jax.nn.sigmoid(eta)).astype(jnp.float64)
    elif name == "Poisson":
        y = jax.random.poisson(ky, jnp.exp(eta)).astype(jnp.float64)
    elif name == "Categorical":
        y = jax.random.categorical(ky, fam.logits(eta)).astype(jnp.float64)
    else:
        raise ValueError(f"gradient_equivalence: no classic loss for {name!r}")
    return fam, X, y, beta, extra


def _optax_loss(name: str):
    """Optax's mean loss as a function of ``(input, y)``, or None where it has none."""
    if name == "Gaussian":
        return lambda x, y: jnp.mean(optax.losses.squared_error(x, y))
    if name == "Bernoulli":
        return lambda x, y: jnp.mean(optax.losses.sigmoid_binary_cross_entropy(x, y))
    if name == "Categorical":
        return lambda z, y: jnp.mean(
            optax.losses.softmax_cross_entropy_with_integer_labels(
                z, y.astype(jnp.int32)
            )
        )
    return None


def _torch_loss_grad(name: str, X, y):
    """A function beta -> gradient of the torch.nn loss in beta (float64)."""
    import torch

    Xt = torch.from_numpy(np.array(X))  # a writable copy
    yt = torch.from_numpy(np.array(y))
    loss_fn = {
        "Gaussian": torch.nn.MSELoss(),
        "Bernoulli": torch.nn.BCEWithLogitsLoss(),
        "Categorical": torch.nn.CrossEntropyLoss(),
        "Poisson": torch.nn.PoissonNLLLoss(log_input=True, full=False),
        "Laplace": torch.nn.L1Loss(),
    }[name]

    def grad(beta):
        b = torch.tensor(np.asarray(beta), dtype=torch.float64, requires_grad=True)
        eta = Xt @ b
        if name == "Categorical":
            zeros = torch.zeros(eta.shape[0], 1, dtype=torch.float64)
            loss = loss_fn(torch.cat([zeros, eta], dim=1), yt.long())
        else:
            loss = loss_fn(eta, yt)
        loss.backward()
        return b.grad.numpy().copy()

    return grad


def _loss_minimiser(fam, name, X, y):
    """Minimiser of the classic loss alone, by SciPy (independent of mlejax solvers)."""
    Xn, yn = np.asarray(X), np.asarray(y)
    if name == "Laplace":  # LAD as a linear program: min sum(u + v), X b + u - v = y
        n, p = Xn.shape
        c = np.concatenate([np.zeros(p), np.ones(2 * n)])
        A = np.hstack([Xn, np.eye(n), -np.eye(n)])
        bounds = [(None, None)] * p + [(0, None)] * (2 * n)
        lp = scipy.optimize.linprog(c, A_eq=A, b_eq=yn, bounds=bounds, method="highs")
        return lp.x[:p]
    shape = (X.shape[1], fam.eta_dim) if name == "Categorical" else (X.shape[1],)
    loss = mj.losses.LOSSES[fam.loss_name]

    def f(b):
        eta = X @ b.reshape(shape)
        return loss(mj.equivalence.loss_input(fam, eta), y)

    fj = jax.jit(f)
    gj, hj = jax.jit(jax.grad(f)), jax.jit(jax.hessian(f))
    out = scipy.optimize.minimize(
        lambda b: float(fj(b)),
        np.zeros(int(np.prod(shape))),
        jac=lambda b: np.asarray(gj(b)),
        hess=lambda b: np.asarray(hj(b)),
        method="trust-exact",
        options={"gtol": 1e-13, "maxiter": 200},
    )
    return out.x.reshape(shape)


def _family_unit(config: GradientEquivalence, key, name: str) -> dict:
    fam, X, y, beta_true, extra = data(config, key, name)
    n = y.shape[0]
    a, b = mj.equivalence.affine_constants(fam, y, **extra)
    an = float(a) * n

    def nll(beta):
        return -jnp.sum(fam.log_prob(y, X @ beta, **extra))

    def mj_loss(beta):
        eta = X @ beta
        return mj.losses.LOSSES[fam.loss_name](mj.equivalence.loss_input(fam, eta), y)

    impls = {"mlejax": jax.jit(jax.grad(mj_loss))}
    ox = _optax_loss(name)
    if ox is not None:
        impls["optax"] = jax.jit(
            jax.grad(lambda bb: ox(mj.equivalence.loss_input(fam, X @ bb), y))
        )
    if config.torch and torch_available():
        impls["torch"] = _torch_loss_grad(name, X, y)
    g_nll = jax.jit(jax.grad(nll))

    # random points around the truth, then the iterates of an Adam fit
    kp = fold(key, f"points/{name}")
    pts = beta_true[None] + 0.5 * jax.random.normal(
        kp, (config.n_points, *beta_true.shape), jnp.float64
    )
    opt = optax.adam(0.1)
    loss_grad = impls["mlejax"]

    def adam_step(carry, _):
        bb, st = carry
        upd, st = opt.update(loss_grad(bb), st, bb)
        bb = optax.apply_updates(bb, upd)
        return (bb, st), bb

    b0 = jnp.zeros_like(beta_true)
    _, path = jax.lax.scan(adam_step, (b0, opt.init(b0)), None, length=config.fit_steps)
    sets = {"random": np.asarray(pts), "along_fit": np.asarray(path)}

    rows = []
    for where, points in sets.items():
        G = np.stack([np.asarray(g_nll(jnp.asarray(p))).ravel() for p in points])
        for impl, gfun in impls.items():
            L = np.stack([np.asarray(gfun(jnp.asarray(p))).ravel() for p in points])
            a_hat = float(np.sum(G * L) / np.sum(L * L))
            dev = np.max(np.abs(G - an * L), axis=1) / np.max(np.abs(G), axis=1)
            rows.append(
                {
                    "family": name,
                    "loss": fam.loss_name,
                    "implementation": impl,
                    "points": where,
                    "n_points": len(points),
                    "a_n_theory": an,
                    "a_n_fitted": a_hat,
                    "a_rel_diff": abs(a_hat / an - 1.0),
                    "max_rel_grad_dev": float(np.max(dev)),
                }
            )
    # the constant b: NLL - a n loss is the same at every point
    offs = np.array(
        [float(nll(jnp.asarray(p)) - an * mj_loss(jnp.asarray(p))) for p in pts]
    )
    with common.collect_warnings() as caught:
        res = mj.fit(X, y, fam)
    b_loss = _loss_minimiser(fam, name, X, y)
    est_dev = float(np.max(np.abs(np.asarray(res.params) - b_loss)))
    return {
        "family": name,
        "loss": fam.loss_name,
        "a": float(a),
        "b_theory": float(b),
        "b_fitted_mean": float(np.mean(offs)),
        "b_spread": float(np.max(offs) - np.min(offs)),
        "rows": rows,
        "mle": np.asarray(res.params).tolist(),
        "loss_minimiser": np.asarray(b_loss).tolist(),
        "estimate_max_abs_diff": est_dev,
        "mle_converged": bool(res.converged),
        "torch_compared": "torch" in impls,
        "warnings": caught.messages,
    }


def _torch_unit(config: GradientEquivalence, key, unit: str) -> dict:
    """Train ``torch.nn.Linear`` on the family's data; compare with the mlejax MLE."""
    import torch

    name = TORCH_SNIPPETS[unit]
    fam, X, y, _, _ = data(config, key, name)
    with common.collect_warnings() as caught:
        res = mj.fit(X, y, fam)
    mle = np.asarray(res.params)
    torch.manual_seed(0)
    Xt = torch.from_numpy(np.array(X)[:, 1:])  # nn.Linear's bias is the intercept
    yt = torch.from_numpy(np.array(y)).unsqueeze(1)
    model = torch.nn.Linear(Xt.shape[1], 1, dtype=torch.float64)
    loss_fn = (
        torch.nn.MSELoss() if unit == "torch_mse" else torch.nn.BCEWithLogitsLoss()
    )
    opt = torch.optim.LBFGS(
        model.parameters(),
        lr=1.0,
        max_iter=config.torch_max_iter,
        tolerance_grad=1e-14,
        tolerance_change=1e-16,
        history_size=20,
        line_search_fn="strong_wolfe",
    )

    def closure():
        opt.zero_grad()
        loss = loss_fn(model(Xt), yt)
        loss.backward()
        return loss

    for _ in range(3):  # restarts: LBFGS stops at max_iter or its tolerances
        final_loss = opt.step(closure)
    est = np.concatenate(
        [model.bias.detach().numpy().ravel(), model.weight.detach().numpy().ravel()]
    )
    return {
        "snippet": unit,
        "family": name,
        "torch_loss": type(loss_fn).__name__,
        "torch_params": est.tolist(),
        "mle": mle.tolist(),
        "max_abs_diff": float(np.max(np.abs(est - mle))),
        "final_loss": float(final_loss.detach()),
        "warnings": caught.messages,
    }


def units(config: GradientEquivalence) -> list[str]:
    out = list(config.families)
    if config.torch and torch_available():
        out += [u for u, fam in TORCH_SNIPPETS.items() if fam in config.families]
    return out


def run_unit(config: GradientEquivalence, key: jax.Array, unit: str) -> dict:
    if unit in TORCH_SNIPPETS:
        return _torch_unit(config, key, unit)
    return _family_unit(config, key, unit)


def summarize(config: GradientEquivalence, unit_results: dict) -> dict:
    grad_rows, est_rows, torch_rows = [], [], []
    claims = []
    for unit, r in unit_results.items():
        if unit in TORCH_SNIPPETS:
            torch_rows.append({k: v for k, v in r.items() if k not in ("warnings",)})
            claims.append(
                f"PyTorch `torch.nn.Linear` trained with `{r['torch_loss']}` (float64, "
                f"L-BFGS) landed on the mlejax {r['family']} MLE: max |diff| "
                f"{r['max_abs_diff']:.2e}."
            )
            continue
        grad_rows += r["rows"]
        est_rows.append(
            {
                "family": r["family"],
                "loss": r["loss"],
                "a": r["a"],
                "b_theory": r["b_theory"],
                "b_fitted": r["b_fitted_mean"],
                "b_spread": r["b_spread"],
                "estimate_max_abs_diff": r["estimate_max_abs_diff"],
                "mle_converged": r["mle_converged"],
            }
        )
        worst = max(x["max_rel_grad_dev"] for x in r["rows"])
        impls = sorted({x["implementation"] for x in r["rows"]})
        same = r["estimate_max_abs_diff"] <= SAME_ESTIMATES_ATOL
        verdict = "gave the same" if same else "did NOT give the same"
        claims.append(
            f"{r['family']}: the MLE and the minimiser of `{r['loss']}` {verdict} "
            f"estimates (max |diff| {r['estimate_max_abs_diff']:.2e}, MLE "
            f"converged={r['mle_converged']}); "
            f"grad NLL = a n grad loss with a = {r['a']:.6g} for "
            f"{', '.join(impls)} (max relative gradient deviation {worst:.2e} at "
            f"random points and along a fit)."
        )
    skipped = {}
    torch_note = _torch_skipped(config, unit_results, torch_rows)
    if torch_note:
        skipped["torch"] = torch_note
        claims.append(f"PyTorch comparison skipped: {torch_note}")
    summary = {
        "max_rel_grad_dev": max(
            (x["max_rel_grad_dev"] for x in grad_rows), default=None
        ),
        "max_estimate_diff": max(
            (x["estimate_max_abs_diff"] for x in est_rows), default=None
        ),
        "max_torch_diff": max((x["max_abs_diff"] for x in torch_rows), default=None),
    }
    return {
        "summary": summary,
        "tables": {"gradients": grad_rows, "estimates": est_rows, "torch": torch_rows},
        "skipped": skipped,
        "claims": claims,
    }


def _torch_skipped(config, unit_results, torch_rows) -> str | None:
    """Why the torch comparisons are missing, or None when they ran."""
    families = [r for u, r in unit_results.items() if u not in TORCH_SNIPPETS]
    if not config.torch:
        return "`torch = false` in the config."
    if not any(r.get("torch_compared") for r in families):
        return (
            "PyTorch is not installed, so the `torch.nn` losses and the "
            "`torch.nn.Linear` snippets were not run "
            '(`pip install -e ".[compare]"` installs it).'
        )
    if not torch_rows:
        return (
            "the `torch.nn.Linear` snippets need Gaussian or Bernoulli among the "
            "families."
        )
    return None


def eps_units(values, eps: float = EPS) -> np.ndarray:
    """Relative deviations in units of ``eps``, floored at 1.

    Everything at or below one ulp of round-off reads as 1, so machine-epsilon
    noise (1e-16 vs 3e-16) never looks like a 3x difference on a log axis.
    """
    return np.maximum(np.asarray(values, float) / eps, 1.0)


def figure(results: dict):
    """Bars of the worst relative gradient deviation, in units of float64 eps."""
    from experiments.writers import pyplot

    plt = pyplot()
    rows = results["tables"]["gradients"]
    fams = list(dict.fromkeys(r["family"] for r in rows))
    impls = list(dict.fromkeys(r["implementation"] for r in rows))
    fig, ax = plt.subplots(figsize=(7, 4.2))
    width = 0.8 / max(1, len(impls))
    top = 1.0
    for j, impl in enumerate(impls):
        vals = []
        for f in fams:
            v = [
                r["max_rel_grad_dev"]
                for r in rows
                if r["family"] == f and r["implementation"] == impl
            ]
            vals.append(max(v) if v else np.nan)
        heights = eps_units(vals)
        top = max(top, float(np.nanmax(heights, initial=1.0)))
        xs = np.arange(len(fams)) + j * width
        # bars start at the 1-eps floor, so their length is the excess over it
        bars = ax.bar(xs, heights - 1.0, width, bottom=1.0, label=impl)
        ax.bar_label(bars, labels=[f"{h:.3g}" for h in heights], fontsize=7)
    ax.set_yscale("log")
    ax.set_ylim(1.0, max(1e3, 10 * top))
    ax.axhline(1.0, color="grey", lw=0.8)
    ax.set_xticks(np.arange(len(fams)) + width * (len(impls) - 1) / 2, fams)
    ax.set_ylabel(
        "max |g_nll - a n g_loss| / max |g_nll|\n"
        f"in units of float64 eps ({EPS:.2g}), floor 1"
    )
    ax.set_xlabel("family (classic loss)")
    ax.set_title("NLL gradient vs classic-loss gradient (1 = round-off level)")
    ax.legend(title="loss implementation")
    return fig


def plot(results: dict, folder) -> list:
    from experiments.writers import save_figure

    path = folder / f"{NAME}_gradients.png"
    save_figure(figure(results), path)
    return [path]
