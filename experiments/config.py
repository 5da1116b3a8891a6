"""Typed run configs: TOML -> frozen dataclasses, every value type- and range-checked.

A config file has an optional ``[run]`` table and one table per experiment::

    [run]
    name = "linear"        # run directory prefix
    seed = 0               # master PRNG seed (the CLI's --seed overrides it)

    [linear_vs_ols]
    n = 400
    solvers = ["sgd", "adam", "lbfgs", "newton"]

Every key is checked against the experiment's dataclass (glum's
``extra="forbid"``): an unknown key, a value of the wrong type or a value out
of its allowed range raises :class:`ConfigError` naming the file, the dotted
key, the value and what is allowed, e.g.::

    c.toml: key sampling_distribution.chunk = 0: out of range; allowed: integer >= 1.

Keys left out take the dataclass default. Ints are accepted where a float is
expected; bools are never accepted as numbers; floats must be finite.

The allowed values are data, not code: each field carries a :class:`Rule`
(bounds, choices, list length, uniqueness, a name pattern) in its dataclass
metadata, and :data:`CROSS_CHECKS` holds the few rules that tie two keys
together (``n > p``). :func:`validate` applies both to a whole suite, so
configs built in Python are checked exactly like loaded ones.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import re
import tomllib
import typing
from collections.abc import Callable
from pathlib import Path

__all__ = [
    "ConfigError",
    "Rule",
    "RunSection",
    "SuiteConfig",
    "EXPERIMENT_CONFIGS",
    "CROSS_CHECKS",
    "RUN_NAME_PATTERN",
    "SEED_MAX",
    "parse",
    "load",
    "load_many",
    "validate",
    "check_section",
    "with_seed",
    "fingerprint",
    "bundled",
    "bundled_path",
    "CONFIGS_DIR",
    "to_toml",
]


class ConfigError(ValueError):
    """A config that does not match the typed schema (one line, names file and key)."""


@dataclasses.dataclass(frozen=True)
class Rule:
    """What a config value may be, beyond its type.

    Numbers (or, for a list, each item): ``ge``/``gt``/``le``/``lt`` bounds.
    Strings (or each item): ``choices`` or a regular expression ``pattern``
    (``pattern_text`` says it in words). Lists: ``min_len`` items at least,
    ``max_len`` at most, and ``unique`` items.
    """

    ge: float | None = None
    gt: float | None = None
    le: float | None = None
    lt: float | None = None
    choices: tuple[str, ...] | None = None
    pattern: str | None = None
    pattern_text: str = ""
    min_len: int | None = None
    max_len: int | None = None
    unique: bool = False

    def item_ok(self, v) -> bool:
        if isinstance(v, int | float) and not isinstance(v, bool):
            if isinstance(v, float) and not math.isfinite(v):
                return False
            return (
                (self.ge is None or v >= self.ge)
                and (self.gt is None or v > self.gt)
                and (self.le is None or v <= self.le)
                and (self.lt is None or v < self.lt)
            )
        if isinstance(v, str):
            if self.choices is not None and v not in self.choices:
                return False
            return self.pattern is None or re.fullmatch(self.pattern, v) is not None
        return True

    def describe_item(self, tp) -> str:
        """Allowed values in words: ``integer in [1, 1_000_000]``, ``one of ...``."""
        if self.choices is not None:
            return "one of " + ", ".join(repr(c) for c in self.choices)
        if self.pattern is not None:
            return self.pattern_text or f"a string matching {self.pattern}"
        kind = _type_name(tp)
        finite = " (finite)" if tp is float else ""
        lo = self.ge if self.ge is not None else self.gt
        hi = self.le if self.le is not None else self.lt
        if lo is not None and hi is not None:
            left = "[" if self.ge is not None else "("
            right = "]" if self.le is not None else ")"
            return f"{kind} in {left}{_num(lo)}, {_num(hi)}{right}{finite}"
        if lo is not None:
            return f"{kind} {'>=' if self.ge is not None else '>'} {_num(lo)}{finite}"
        if hi is not None:
            return f"{kind} {'<=' if self.le is not None else '<'} {_num(hi)}{finite}"
        return f"any {kind}{finite}"

    def describe_list(self, inner) -> str:
        parts = []
        if self.min_len is not None and self.max_len is not None:
            parts.append(f"{self.min_len} to {self.max_len} items")
        elif self.min_len is not None:
            parts.append(f"at least {self.min_len} item{'s' * (self.min_len != 1)}")
        elif self.max_len is not None:
            parts.append(f"at most {self.max_len} items")
        if self.unique:
            parts.append("no repeats")
        parts.append(f"each {self.describe_item(inner)}")
        return "a list of " + _type_name(inner) + "s (" + "; ".join(parts) + ")"


def _num(x) -> str:
    """A bound as TOML would write it (``1_000_000``, ``0.5``)."""
    if isinstance(x, float) and x.is_integer() and abs(x) < 1e16:
        x = int(x)
    return f"{x:_}" if isinstance(x, int) else repr(x)


def _f(default, rule: Rule | None = None, **kw):
    """A dataclass field with a default (a list default is copied) and its rule."""
    rule = rule or Rule(**kw)
    if isinstance(default, list):
        return dataclasses.field(
            default_factory=lambda: list(default), metadata={"rule": rule}
        )
    return dataclasses.field(default=default, metadata={"rule": rule})


# -- shared limits ------------------------------------------------------------------
#: a seed must fit JAX's int64 key (``jax.random.key``)
SEED_MAX = 2**63 - 1
#: run names: a single safe path component, so run directories stay inside --out
RUN_NAME_PATTERN = r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}"
_NAME_TEXT = (
    "1 to 64 letters, digits, '_', '.' or '-', starting with a letter or digit "
    "(it names the run directory)"
)
_N = Rule(ge=2, le=1_000_000)  # observations
_P = Rule(ge=1, le=1_000)  # coefficients (intercept included)
_STEPS = Rule(ge=1, le=1_000_000)  # iterations
_LR = Rule(gt=0.0, le=1e6)  # learning rates
_REPS = Rule(ge=2, le=1_000_000)  # Monte Carlo replications
SOLVERS = ("sgd", "adam", "lbfgs", "newton")


def _names(choices) -> Rule:
    """A non-empty list of distinct names from ``choices``."""
    return Rule(choices=tuple(choices), min_len=1, max_len=len(choices), unique=True)


@dataclasses.dataclass(frozen=True)
class RunSection:
    """The ``[run]`` table."""

    name: str = _f("run", pattern=RUN_NAME_PATTERN, pattern_text=_NAME_TEXT)
    seed: int = _f(0, ge=0, le=SEED_MAX)


@dataclasses.dataclass(frozen=True)
class LinearVsOLS:
    """``[linear_vs_ols]``: Gaussian NLL by Optax/L-BFGS/Newton vs closed-form OLS."""

    n: int = _f(400, _N)
    p: int = _f(5, _P)
    noise: float = _f(1.0, gt=0.0, le=1e6)
    # pairwise correlation of the non-constant columns (1 would make them collinear)
    correlation: float = _f(0.8, ge=0.0, lt=1.0)
    solvers: list[str] = _f(["sgd", "adam", "lbfgs", "newton"], _names(SOLVERS))
    steps: int = _f(600, _STEPS)  # iterations recorded per solver (distance curves)
    sgd_lr: float = _f(0.5, _LR)  # on the mean NLL
    adam_lr: float = _f(0.02, _LR)
    thresholds: list[float] = _f([1e-6, 1e-10], gt=0.0, lt=1.0, min_len=1, max_len=20)


@dataclasses.dataclass(frozen=True)
class GradientEquivalence:
    """``[gradient_equivalence]``: NLL gradient vs classic-loss gradient per family."""

    n: int = _f(300, _N)
    p: int = _f(3, _P)
    n_classes: int = _f(3, ge=2, le=100)
    families: list[str] = _f(
        ["Gaussian", "Bernoulli", "Categorical", "Poisson", "Laplace"],
        _names(("Gaussian", "Bernoulli", "Categorical", "Poisson", "Laplace")),
    )
    # random coefficient vectors where gradients are compared
    n_points: int = _f(20, ge=1, le=10_000)
    # iterates along a fit where gradients are compared
    fit_steps: int = _f(30, ge=1, le=100_000)
    torch: bool = _f(True)  # also compare torch.nn losses and train torch.nn.Linear
    torch_max_iter: int = _f(500, _STEPS)


@dataclasses.dataclass(frozen=True)
class LogisticFit:
    """``[logistic_fit]``: logistic regression by Newton, L-BFGS, Adam, SGD."""

    n: int = _f(1000, _N)
    p: int = _f(4, _P)
    solvers: list[str] = _f(["newton", "lbfgs", "adam", "sgd"], _names(SOLVERS))
    adam_lr: float = _f(0.05, _LR)
    adam_steps: int = _f(3000, _STEPS)
    # cosine-decay the Adam step to 0 over adam_steps
    adam_cosine_decay: bool = _f(True)
    sgd_lr: float = _f(4.0, _LR)  # on the mean NLL
    sgd_steps: int = _f(3000, _STEPS)
    # timed calls after compilation (the median is reported)
    repeats: int = _f(3, ge=1, le=100)


@dataclasses.dataclass(frozen=True)
class SamplingDistribution:
    """``[sampling_distribution]``: Monte Carlo of the MLE with ``jax.vmap``."""

    families: list[str] = _f(
        ["Gaussian", "Bernoulli", "Poisson"],
        _names(("Gaussian", "Bernoulli", "Poisson")),
    )
    ns: list[int] = _f(
        [50, 200, 1000], ge=2, le=1_000_000, min_len=1, max_len=20, unique=True
    )
    p: int = _f(3, _P)
    replications: int = _f(2000, _REPS)
    # replications per unit (one line of chunks.jsonl)
    chunk: int = _f(500, ge=1, le=100_000)
    level: float = _f(0.95, gt=0.0, lt=1.0)


@dataclasses.dataclass(frozen=True)
class RobustRegression:
    """``[robust_regression]``: Laplace vs Gaussian vs Student-t under outliers."""

    n: int = _f(200, _N)
    p: int = _f(3, ge=2, le=1_000)  # an intercept and at least one slope
    replications: int = _f(200, _REPS)
    scenarios: list[str] = _f(
        ["gaussian", "student_t", "outliers"],
        _names(("gaussian", "student_t", "outliers")),
    )
    families: list[str] = _f(
        ["Gaussian", "Laplace", "StudentT"],
        _names(("Gaussian", "Laplace", "StudentT")),
    )
    # Student-t noise in the "student_t" scenario
    noise_df: float = _f(2.0, gt=0.0, le=1e6)
    outlier_fraction: float = _f(0.1, ge=0.0, le=1.0)
    outlier_shift: float = _f(15.0, ge=-1e6, le=1e6)
    # df of the StudentT fit; 0 = estimate df too (capped at mj.STUDENT_T_DF_MAX)
    student_df: float = _f(3.0, ge=0.0, le=1000.0)
    # exact LAD (Laplace) can need several hundred iterations
    max_iter: int = _f(1000, _STEPS)


@dataclasses.dataclass(frozen=True)
class RegulariserPrior:
    """``[regulariser_prior]``: Ridge/Lasso fits = Gaussian/Laplace-prior MAP."""

    n: int = _f(200, _N)
    p: int = _f(5, ge=2, le=1_000)  # an intercept and at least one slope
    families: list[str] = _f(
        ["Gaussian", "Bernoulli"], _names(("Gaussian", "Bernoulli"))
    )
    # penalty strengths on the total NLL (prior precision / Laplace rate)
    ridge_alpha: float = _f(5.0, gt=0.0, le=1e6)
    lasso_alpha: float = _f(10.0, gt=0.0, le=1e6)
    # Optax L-BFGS steps for the direct MAP
    optax_steps: int = _f(200, _STEPS)


@dataclasses.dataclass(frozen=True)
class Coverage:
    """``[coverage]``: coverage of 95% intervals under misspecification."""

    settings: list[str] = _f(
        ["overdispersed_poisson", "clustered_logistic", "small_logistic"],
        _names(("overdispersed_poisson", "clustered_logistic", "small_logistic")),
    )
    # data sets per setting, all in one vmapped call
    replications: int = _f(2000, ge=20, le=1_000_000)
    # also the profile-likelihood intervals (batched with the fits)
    profile: bool = _f(True)
    level: float = _f(0.95, gt=0.0, lt=1.0)
    n_poisson: int = _f(200, ge=10, le=1_000_000)
    # negative-binomial overdispersion: variance mu + nb_alpha mu^2
    nb_alpha: float = _f(1.0, gt=0.0, le=100.0)
    clusters: int = _f(30, ge=2, le=100_000)
    cluster_size: int = _f(10, ge=1, le=10_000)
    # standard deviation of the random cluster intercept (logit scale)
    cluster_sd: float = _f(1.0, ge=0.0, le=10.0)
    n_small: int = _f(20, ge=10, le=1_000_000)


BINARY_LINKS = ("logit", "probit", "cloglog", "cauchit", "log")


@dataclasses.dataclass(frozen=True)
class LinkChoice:
    """``[link_choice]``: logit vs probit vs cloglog on the same binary data."""

    n: int = _f(500, _N)
    replications: int = _f(200, _REPS)
    links: list[str] = _f(["logit", "probit", "cloglog"], _names(BINARY_LINKS))
    # the link that generates y (b = (-0.5, 1, -0.7))
    true_link: str = _f("cloglog", choices=BINARY_LINKS[:4])


@dataclasses.dataclass(frozen=True)
class HyperGradient:
    """``[hyper_gradient]``: Ridge alpha chosen by gradient descent through the fit."""

    n_train: int = _f(200, _N)
    n_valid: int = _f(400, _N)
    # coefficients: an intercept, `informative` real slopes, the rest noise
    p: int = _f(21, ge=2, le=1_000)
    informative: int = _f(5, ge=0, le=1_000)
    signal: float = _f(0.7, ge=0.0, le=100.0)  # size of the real slopes
    alpha_start: float = _f(1e-3, gt=0.0, le=1e8)  # the (poor) starting alpha
    steps: int = _f(40, ge=1, le=10_000)  # Adam steps on log(alpha), cosine-decayed
    lr: float = _f(1.0, _LR)  # initial Adam step size on log(alpha)
    # Adam's momentum (optax's 0.9 overshoots the minimum of this 1-D problem)
    b1: float = _f(0.5, ge=0.0, lt=1.0)
    tol: float = _f(1e-12, gt=0.0, le=1e-3)  # the fits' tolerance
    # the log grid of alphas (ground truth) and LogisticRegressionCV's Cs = 1/alpha
    grid_min: float = _f(1e-3, gt=0.0, le=1e8)
    grid_max: float = _f(1e4, gt=0.0, le=1e8)
    grid_size: int = _f(81, ge=3, le=10_000)
    # the grid as one vmapped fit (false: a loop of the compiled gradient step,
    # the same numbers without a second compilation)
    grid_vmap: bool = _f(True)
    n_Cs: int = _f(20, ge=2, le=1_000)
    cv_folds: int = _f(5, ge=2, le=100)
    # largest accepted validation-loss gap of the gradient choice to the grid minimum
    tolerance: float = _f(1e-4, gt=0.0, le=1.0)
    # alpha where the implicit hypergradient is checked against sklearn refits
    check_alpha: float = _f(1.0, gt=0.0, le=1e8)


#: experiment name -> its config dataclass (the table name in TOML).
EXPERIMENT_CONFIGS: dict[str, type] = {
    "linear_vs_ols": LinearVsOLS,
    "gradient_equivalence": GradientEquivalence,
    "logistic_fit": LogisticFit,
    "sampling_distribution": SamplingDistribution,
    "robust_regression": RobustRegression,
    "regulariser_prior": RegulariserPrior,
    "coverage": Coverage,
    "link_choice": LinkChoice,
    "hyper_gradient": HyperGradient,
}


def _more_rows_than_columns(c) -> bool:
    ns = c.ns if hasattr(c, "ns") else [c.n]
    return min(ns) > c.p


#: Rules tying keys together: config class -> [(keys, holds(config), allowed)].
CROSS_CHECKS: dict[type, list[tuple[tuple[str, ...], Callable, str]]] = {
    cls: [(("n", "p"), _more_rows_than_columns, "n > p (more rows than coefficients)")]
    for cls in (
        LinearVsOLS,
        GradientEquivalence,
        LogisticFit,
        RobustRegression,
        RegulariserPrior,
    )
}
CROSS_CHECKS[LinkChoice] = [
    (("n",), lambda c: c.n > 3, "n > 3 (more rows than the 3 coefficients)")
]
CROSS_CHECKS[HyperGradient] = [
    (
        ("n_train", "p"),
        lambda c: c.n_train > c.p,
        "n_train > p (more training rows than coefficients)",
    ),
    (
        ("informative", "p"),
        lambda c: c.informative <= c.p - 1,
        "informative <= p - 1 (the real slopes are among the p - 1 slopes)",
    ),
    (
        ("grid_min", "grid_max"),
        lambda c: c.grid_min < c.grid_max,
        "grid_min < grid_max",
    ),
]
CROSS_CHECKS[SamplingDistribution] = [
    (
        ("ns", "p"),
        _more_rows_than_columns,
        "every n in ns > p (more rows than coefficients)",
    )
]


@dataclasses.dataclass(frozen=True)
class SuiteConfig:
    """A parsed config: the run table plus the experiments it names, in file order."""

    run: RunSection
    experiments: dict[str, object]
    source: str = "<default>"


def _type_name(tp) -> str:
    if typing.get_origin(tp) is list:
        return f"list of {_type_name(typing.get_args(tp)[0])}"
    return {int: "integer", float: "float", str: "string", bool: "boolean"}.get(
        tp, str(tp)
    )


def _coerce(value, tp, where: str):
    """Check ``value`` against ``tp``; return it converted (int -> float)."""

    def bad():
        got = type(value).__name__
        return ConfigError(f"{where}: expected {_type_name(tp)}, got {got} {value!r}.")

    if typing.get_origin(tp) is list:
        if not isinstance(value, list):
            raise bad()
        (inner,) = typing.get_args(tp)
        return [_coerce(v, inner, f"{where}[{i}]") for i, v in enumerate(value)]
    if tp is bool:
        if not isinstance(value, bool):
            raise bad()
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise bad()
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise bad()
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise bad()
        return value
    raise TypeError(f"unsupported config type {tp!r} at {where}")  # schema bug


def _check_value(value, tp, rule: Rule, where: str) -> None:
    """Raise :class:`ConfigError` when ``value`` (of type ``tp``) breaks ``rule``."""
    if typing.get_origin(tp) is list:
        (inner,) = typing.get_args(tp)
        allowed = rule.describe_list(inner)
        n = len(value)
        if (rule.min_len is not None and n < rule.min_len) or (
            rule.max_len is not None and n > rule.max_len
        ):
            raise ConfigError(f"{where} = {value!r}: {n} items; allowed: {allowed}.")
        if rule.unique and len(set(value)) != n:
            raise ConfigError(
                f"{where} = {value!r}: repeated items; allowed: {allowed}."
            )
        for i, v in enumerate(value):
            if not rule.item_ok(v):
                what = "not allowed" if isinstance(v, str) else "out of range"
                raise ConfigError(f"{where}[{i}] = {v!r}: {what}; allowed: {allowed}.")
        return
    if not rule.item_ok(value):
        what = "not allowed" if isinstance(value, str) else "out of range"
        raise ConfigError(
            f"{where} = {value!r}: {what}; allowed: {rule.describe_item(tp)}."
        )


def check_section(obj, source: str, section: str) -> None:
    """Type- and range-check every field of a config dataclass, then cross-checks."""
    hints = typing.get_type_hints(type(obj))
    for f in dataclasses.fields(obj):
        where = f"{source}: key {section}.{f.name}"
        value = getattr(obj, f.name)
        _coerce(value, hints[f.name], where)
        rule = f.metadata.get("rule")
        if rule is not None:
            _check_value(value, hints[f.name], rule, where)
    for keys, holds, allowed in CROSS_CHECKS.get(type(obj), []):
        if not holds(obj):
            got = ", ".join(f"{section}.{k} = {getattr(obj, k)!r}" for k in keys)
            raise ConfigError(f"{source}: keys {got}: not allowed; allowed: {allowed}.")


def _build(cls, table, source: str, section: str):
    if not isinstance(table, dict):
        raise ConfigError(f"{source}: [{section}] must be a table.")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    kwargs = {}
    for key, value in table.items():
        where = f"{source}: key {section}.{key}"
        if key not in names:
            allowed = ", ".join(sorted(names))
            raise ConfigError(f"{where} is unknown; allowed keys: {allowed}.")
        kwargs[key] = _coerce(value, hints[key], where)
    obj = cls(**kwargs)
    check_section(obj, source, section)
    return obj


def validate(cfg: SuiteConfig) -> SuiteConfig:
    """Check every value of ``cfg`` (types, ranges, cross-checks); return it.

    Configs read by :func:`load` are already checked; this covers configs built
    in Python. :func:`experiments.suite.run_suite` calls it before it creates a
    run directory, so a bad value never leaves a stale one behind.

    Raises:
      ConfigError: naming ``cfg.source``, the key, the value and what is allowed.
    """
    if not isinstance(cfg.run, RunSection):
        raise ConfigError(f"{cfg.source}: [run] must be a RunSection.")
    check_section(cfg.run, cfg.source, "run")
    if not cfg.experiments:
        raise ConfigError(f"{cfg.source}: names no experiment.")
    for name, exp in cfg.experiments.items():
        cls = EXPERIMENT_CONFIGS.get(name)
        if cls is None:
            allowed = ", ".join(EXPERIMENT_CONFIGS)
            raise ConfigError(
                f"{cfg.source}: unknown experiment {name!r}; allowed: {allowed}."
            )
        if not isinstance(exp, cls):
            raise ConfigError(
                f"{cfg.source}: [{name}] must be a {cls.__name__}, "
                f"got {type(exp).__name__}."
            )
        check_section(exp, cfg.source, name)
    return cfg


def with_seed(cfg: SuiteConfig, seed: int | None) -> SuiteConfig:
    """``cfg`` with ``[run].seed`` replaced (unchanged when ``seed`` is None).

    Raises:
      ConfigError: a seed out of range (``--seed: ...``).
    """
    if seed is None:
        return cfg
    run = dataclasses.replace(cfg.run, seed=seed)
    check_section(run, "--seed", "run")
    return dataclasses.replace(cfg, run=run)


def parse(data: dict, source: str = "<string>") -> SuiteConfig:
    """Parse a TOML document (already a dict) into a :class:`SuiteConfig`.

    Raises:
      ConfigError: unknown table or key, a value of the wrong type or out of
        range; the message names ``source``, the dotted key, the value and
        what is allowed.
    """
    run = RunSection()
    experiments = {}
    for section, table in data.items():
        if section == "run":
            run = _build(RunSection, table, source, "run")
        elif section in EXPERIMENT_CONFIGS:
            cfg = _build(EXPERIMENT_CONFIGS[section], table, source, section)
            experiments[section] = cfg
        else:
            allowed = ", ".join(["run", *EXPERIMENT_CONFIGS])
            raise ConfigError(
                f"{source}: unknown table or key {section!r}; allowed: {allowed}."
            )
    if not experiments:
        raise ConfigError(
            f"{source}: names no experiment; add one of the tables "
            f"{', '.join(EXPERIMENT_CONFIGS)}."
        )
    return SuiteConfig(run=run, experiments=experiments, source=source)


def load(path) -> SuiteConfig:
    """Read and parse one TOML file (a path, or a bundled config's name).

    Raises:
      ConfigError: a missing, unreadable, non-UTF-8 or invalid file (or a
        directory), or a config that fails :func:`parse`.
    """
    path = Path(path)
    if not path.exists() and path.suffix == "" and bundled_path(path.name).exists():
        path = bundled_path(path.name)
    shown = _one_line(str(path))
    try:
        with open(path, "rb") as fh:
            data = tomllib.load(fh)
    except FileNotFoundError:
        names = ", ".join(bundled())
        raise ConfigError(
            f"{shown}: no such config file (bundled configs: {names})."
        ) from None
    except IsADirectoryError:
        raise ConfigError(f"{shown}: is a directory, not a TOML config file.") from None
    except OSError as err:
        raise ConfigError(
            f"{shown}: cannot read the config file: {err.strerror or err}."
        ) from None
    except UnicodeDecodeError as err:
        raise ConfigError(
            f"{shown}: not a UTF-8 text file (byte {err.start}); TOML files are UTF-8."
        ) from None
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"{shown}: invalid TOML: {err}.") from None
    return parse(data, shown)


def load_many(paths) -> SuiteConfig:
    """Merge config files into one suite: the first file's [run], later tables win."""
    configs = [load(p) for p in paths]
    merged = {}
    for cfg in configs:
        merged.update(cfg.experiments)
    return SuiteConfig(
        run=configs[0].run,
        experiments=merged,
        source=", ".join(c.source for c in configs),
    )


#: The bundled configs: plain TOML files in the checkout's ``configs/`` folder,
#: next to the ``experiments`` package (not a Python package, not in the wheel).
CONFIGS_DIR = Path(__file__).resolve().parent.parent / "configs"


def bundled() -> list[str]:
    """Names of the TOML configs in the checkout's ``configs/`` folder."""
    if not CONFIGS_DIR.is_dir():
        return []
    return sorted(p.stem for p in CONFIGS_DIR.glob("*.toml"))


def bundled_path(name: str) -> Path:
    """Path of the bundled config ``name`` (without ``.toml``)."""
    return CONFIGS_DIR / f"{name}.toml"


_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def _one_line(text: str) -> str:
    """``text`` with control characters (newlines...) escaped: one line."""
    return _CONTROL.sub(lambda m: repr(m.group())[1:-1], text)


def _toml_value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, str):  # a TOML basic string: escape \\, " and control characters
        body = v.replace("\\", "\\\\").replace('"', '\\"')
        return '"' + _CONTROL.sub(lambda m: f"\\u{ord(m.group()):04x}", body) + '"'
    if isinstance(v, float):
        return repr(v)
    if isinstance(v, list):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    return str(v)


def to_toml(cfg: SuiteConfig) -> str:
    """The fully resolved config (every default written out) as TOML text."""
    lines = [f"# resolved from {_one_line(cfg.source)}", "[run]"]
    for f in dataclasses.fields(cfg.run):
        lines.append(f"{f.name} = {_toml_value(getattr(cfg.run, f.name))}")
    for name, exp in cfg.experiments.items():
        lines += ["", f"[{name}]"]
        for f in dataclasses.fields(exp):
            lines.append(f"{f.name} = {_toml_value(getattr(exp, f.name))}")
    return "\n".join(lines) + "\n"


def fingerprint(cfg: SuiteConfig) -> str:
    """``sha256:<hex>`` of the canonical resolved config (every value, not the source).

    Two configs have the same fingerprint exactly when they run the same
    experiments with the same values and seed; a run directory stores its
    own (``config.fingerprint``) so ``--resume`` can tell an edited
    ``config.toml`` from the one its units were computed with.
    """
    canon = {
        "run": dataclasses.asdict(cfg.run),
        "experiments": {n: dataclasses.asdict(e) for n, e in cfg.experiments.items()},
    }
    text = json.dumps(canon, sort_keys=True, separators=(",", ":"), allow_nan=False)
    return "sha256:" + hashlib.sha256(text.encode("utf-8")).hexdigest()


def with_overrides(cfg, **kw):
    """``dataclasses.replace`` for a config (kept for symmetry with tests)."""
    return dataclasses.replace(cfg, **kw)
