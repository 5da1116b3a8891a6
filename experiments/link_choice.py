"""Link choice as model choice: logit, probit and cloglog on the same binary data.

``replications`` data sets ``y ~ Bernoulli(F(X b))`` share one design
(an intercept and two N(0, 1) covariates, ``b = (-0.5, 1, -0.7)``) and one
true inverse link ``F`` (``true_link``). Each candidate link is fitted to
every data set in one ``jax.vmap``-ed ``mj.fit(X, y, Bernoulli(link=...))``.
The links have the same number of parameters, so AIC ranks them exactly as
the log-likelihood does; the table gives the first data set's
log-likelihood, AIC and fitted-probability errors, and how often each link
has the best AIC over the replications (the true link should win most often,
by a margin that grows with n). Only the logit link is the classic loss
(``bce_with_logits``): probit and cloglog negative log-likelihoods are not
any classic loss (``family.loss_name is None``). The plot shows the fitted
probabilities along the first covariate (second at 0): the links agree in
the middle and part in the tails, where cloglog is asymmetric.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

import mlejax as mj
from experiments import common
from experiments.config import LinkChoice
from experiments.core import fold

NAME = "link_choice"
Config = LinkChoice

TRUE_COEF = (-0.5, 1.0, -0.7)
#: the first covariate's grid for the fitted-probability curves
GRID = np.linspace(-3.0, 3.0, 61)


def data(config: LinkChoice, key: jax.Array):
    """``(X (n, 3), Y (replications, n), p_true (n,))``: one design, many y."""
    kx, ky = jax.random.split(fold(key, "data"))
    X = common.design(kx, config.n, 3)
    true = mj.families.Bernoulli(link=config.true_link)
    p = true.mean(X @ jnp.asarray(TRUE_COEF))
    U = jax.random.uniform(ky, (config.replications, config.n), dtype=jnp.float64)
    return X, (U < p[None, :]).astype(jnp.float64), p


def units(config: LinkChoice) -> list[str]:
    return list(config.links)


def run_unit(config: LinkChoice, key: jax.Array, unit: str) -> dict:
    X, Y, p_true = data(config, key)
    fam = mj.families.Bernoulli(link=unit)
    fit = jax.jit(jax.vmap(lambda y: mj.fit(X, y, fam)))
    with common.collect_warnings() as caught:
        res = jax.block_until_ready(fit(Y))
    b0 = res.params[0]
    p_hat = fam.mean(X @ b0)
    grid = jnp.stack([jnp.ones_like(GRID), GRID, jnp.zeros_like(GRID)], axis=1)
    return {
        "link": unit,
        "loss_name": fam.loss_name,
        "loglik": np.asarray(res.loglik).tolist(),
        "converged": np.asarray(res.converged).tolist(),
        "params0": np.asarray(b0).tolist(),
        "stderr0": np.asarray(res.stderr[0]).tolist(),
        "p_hat0": np.asarray(p_hat).tolist(),
        "p_true": np.asarray(p_true).tolist(),
        "curve": np.asarray(fam.mean(grid @ b0)).tolist(),
        "warnings": caught.messages,
    }


def summarize(config: LinkChoice, unit_results: dict) -> dict:
    links = list(unit_results)
    k = len(TRUE_COEF)
    ll = np.array([unit_results[lk]["loglik"] for lk in links])  # (links, reps)
    ok = np.all(np.array([unit_results[lk]["converged"] for lk in links]), axis=0)
    aic = -2.0 * ll + 2 * k
    best = np.argmin(np.where(ok[None, :], aic, np.inf), axis=0)
    wins = [int(np.sum(ok & (best == i))) for i in range(len(links))]
    aic0 = aic[:, 0]
    weights = np.exp(-0.5 * (aic0 - aic0.min()))
    weights = weights / weights.sum()
    p_ref = np.asarray(unit_results[links[0]]["p_hat0"])
    rows, claims = [], []
    for i, lk in enumerate(links):
        r = unit_results[lk]
        p_hat, p_true = np.asarray(r["p_hat0"]), np.asarray(r["p_true"])
        rows.append(
            {
                "link": lk,
                "classic_loss": r["loss_name"] or "none",
                "loglik": float(ll[i, 0]),
                "aic": float(aic0[i]),
                "delta_aic": float(aic0[i] - aic0.min()),
                "akaike_weight": float(weights[i]),
                "rmse_p_vs_true": float(np.sqrt(np.mean((p_hat - p_true) ** 2))),
                "max_abs_p_vs_true": float(np.max(np.abs(p_hat - p_true))),
                f"max_abs_p_vs_{links[0]}": float(np.max(np.abs(p_hat - p_ref))),
                "best_aic_share": wins[i] / max(int(ok.sum()), 1),
                "converged": int(np.sum(r["converged"])),
            }
        )
    top = links[int(np.argmax(wins))]
    claims.append(
        f"True link {config.true_link}: over {int(ok.sum())} data sets (n = "
        f"{config.n}) the best AIC picks {top} most often "
        f"({max(wins)}/{int(ok.sum())}); "
        + ", ".join(f"{lk} {w}" for lk, w in zip(links, wins, strict=True))
        + "."
    )
    claims.append(
        "Only logit is a classic loss (bce_with_logits); "
        + ", ".join(lk for lk in links if lk != "logit")
        + " have loss_name None."
    )
    gap = max(r[f"max_abs_p_vs_{links[0]}"] for r in rows)
    claims.append(
        f"Fitted probabilities of the links differ by at most {gap:.3f} from the "
        f"{links[0]} fit on the first data set (same data, {k} parameters each)."
    )
    curves = {lk: unit_results[lk]["curve"] for lk in links}
    true_fam = mj.families.Bernoulli(link=config.true_link)
    b = np.asarray(TRUE_COEF)
    curves["true"] = np.asarray(true_fam.mean(jnp.asarray(b[0] + b[1] * GRID))).tolist()
    return {
        "summary": {"best_link": top, "true_link": config.true_link},
        "tables": {"links": rows},
        "curves": curves,
        "claims": claims,
    }


def plot(results: dict, folder) -> list:
    from experiments.writers import pyplot, save_figure

    plt = pyplot()
    fig, (ax, bx) = plt.subplots(1, 2, figsize=(9.6, 4.0))
    curves = results["curves"]
    for name, c in curves.items():
        style = {"color": "black", "linestyle": "--"} if name == "true" else {}
        ax.plot(GRID, c, label=name, **style)
    ax.set_xlabel("first covariate (second at 0)")
    ax.set_ylabel("fitted P(y = 1)")
    ax.set_title("Fitted probabilities, first data set")
    ax.legend()
    rows = results["tables"]["links"]
    bx.bar([r["link"] for r in rows], [r["best_aic_share"] for r in rows])
    bx.set_ylabel("share of data sets with the best AIC")
    bx.set_title(f"Link chosen by AIC (true: {results['summary']['true_link']})")
    path = folder / f"{NAME}.png"
    save_figure(fig, path)
    return [path]
