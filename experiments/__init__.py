"""The research workflow: one module per experiment, each ``run(config, key)``.

>>> from experiments import EXPERIMENTS
>>> sorted(EXPERIMENTS)[:2]
['gradient_equivalence', 'linear_vs_ols']

Run them through the ``mlejax`` command (``mlejax run``) or
:func:`experiments.suite.run_suite`; see ``docs/experiments.md``.
"""

from experiments import (
    coverage,
    gradient_equivalence,
    hyper_gradient,
    linear_vs_ols,
    link_choice,
    logistic_fit,
    regulariser_prior,
    robust_regression,
    sampling_distribution,
)

#: experiment name (its TOML table) -> module
EXPERIMENTS = {
    m.NAME: m
    for m in (
        linear_vs_ols,
        gradient_equivalence,
        logistic_fit,
        sampling_distribution,
        robust_regression,
        regulariser_prior,
        coverage,
        link_choice,
        hyper_gradient,
    )
}

__all__ = ["EXPERIMENTS"]
