"""Typed run configs: TOML -> frozen dataclasses, unknown keys are errors.

A config file has an optional ``[run]`` table and one table per experiment::

    [run]
    name = "linear"        # run directory prefix
    seed = 0               # master PRNG seed (the CLI's --seed overrides it)

    [linear_vs_ols]
    n = 400
    solvers = ["sgd", "adam", "lbfgs", "newton"]

Every key is checked against the experiment's dataclass (glum's
``extra="forbid"``): an unknown key or a value of the wrong type raises
:class:`ConfigError` naming the file, the dotted key and the expected type.
Keys left out take the dataclass default. Ints are accepted where a float is
expected; bools are never accepted as numbers.
"""

from __future__ import annotations

import dataclasses
import tomllib
import typing
from pathlib import Path

__all__ = [
    "ConfigError",
    "RunSection",
    "SuiteConfig",
    "EXPERIMENT_CONFIGS",
    "parse",
    "load",
    "load_many",
    "bundled",
    "bundled_path",
    "CONFIGS_DIR",
    "to_toml",
]


class ConfigError(ValueError):
    """A config file that does not match the typed schema."""


@dataclasses.dataclass(frozen=True)
class RunSection:
    """The ``[run]`` table."""

    name: str = "run"
    seed: int = 0


@dataclasses.dataclass(frozen=True)
class LinearVsOLS:
    """``[linear_vs_ols]``: Gaussian NLL by Optax/L-BFGS/Newton vs closed-form OLS."""

    n: int = 400
    p: int = 5
    noise: float = 1.0
    correlation: float = 0.8  # pairwise correlation of the non-constant columns
    solvers: list[str] = dataclasses.field(
        default_factory=lambda: ["sgd", "adam", "lbfgs", "newton"]
    )
    steps: int = 600  # iterations recorded per solver (distance curves)
    sgd_lr: float = 0.5  # on the mean NLL
    adam_lr: float = 0.02
    thresholds: list[float] = dataclasses.field(default_factory=lambda: [1e-6, 1e-10])


@dataclasses.dataclass(frozen=True)
class GradientEquivalence:
    """``[gradient_equivalence]``: NLL gradient vs classic-loss gradient per family."""

    n: int = 300
    p: int = 3
    n_classes: int = 3
    families: list[str] = dataclasses.field(
        default_factory=lambda: [
            "Gaussian",
            "Bernoulli",
            "Categorical",
            "Poisson",
            "Laplace",
        ]
    )
    n_points: int = 20  # random coefficient vectors where gradients are compared
    fit_steps: int = 30  # iterates along a fit where gradients are compared
    torch: bool = True  # also compare torch.nn losses and train torch.nn.Linear
    torch_max_iter: int = 500


@dataclasses.dataclass(frozen=True)
class LogisticFit:
    """``[logistic_fit]``: logistic regression by Newton, L-BFGS, Adam, SGD."""

    n: int = 1000
    p: int = 4
    solvers: list[str] = dataclasses.field(
        default_factory=lambda: ["newton", "lbfgs", "adam", "sgd"]
    )
    adam_lr: float = 0.05
    adam_steps: int = 3000
    adam_cosine_decay: bool = True  # cosine-decay the Adam step to 0 over adam_steps
    sgd_lr: float = 4.0  # on the mean NLL
    sgd_steps: int = 3000
    repeats: int = 3  # timed calls after compilation (the median is reported)


@dataclasses.dataclass(frozen=True)
class SamplingDistribution:
    """``[sampling_distribution]``: Monte Carlo of the MLE with ``jax.vmap``."""

    families: list[str] = dataclasses.field(
        default_factory=lambda: ["Gaussian", "Bernoulli", "Poisson"]
    )
    ns: list[int] = dataclasses.field(default_factory=lambda: [50, 200, 1000])
    p: int = 3
    replications: int = 2000
    chunk: int = 500  # replications per unit (one line of chunks.jsonl)
    level: float = 0.95


@dataclasses.dataclass(frozen=True)
class RobustRegression:
    """``[robust_regression]``: Laplace vs Gaussian vs Student-t under outliers."""

    n: int = 200
    p: int = 3
    replications: int = 200
    scenarios: list[str] = dataclasses.field(
        default_factory=lambda: ["gaussian", "student_t", "outliers"]
    )
    families: list[str] = dataclasses.field(
        default_factory=lambda: ["Gaussian", "Laplace", "StudentT"]
    )
    noise_df: float = 2.0  # Student-t noise in the "student_t" scenario
    outlier_fraction: float = 0.1
    outlier_shift: float = 15.0
    student_df: float = 3.0  # df of the StudentT fit; 0 = estimate df too
    max_iter: int = 1000  # exact LAD (Laplace) can need several hundred iterations


#: experiment name -> its config dataclass (the table name in TOML).
EXPERIMENT_CONFIGS: dict[str, type] = {
    "linear_vs_ols": LinearVsOLS,
    "gradient_equivalence": GradientEquivalence,
    "logistic_fit": LogisticFit,
    "sampling_distribution": SamplingDistribution,
    "robust_regression": RobustRegression,
}


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
    return cls(**kwargs)


def parse(data: dict, source: str = "<string>") -> SuiteConfig:
    """Parse a TOML document (already a dict) into a :class:`SuiteConfig`.

    Raises:
      ConfigError: unknown table or key, or a value of the wrong type; the
        message names ``source``, the dotted key and the expected type.
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
                f"{source}: unknown table or key '{section}'; allowed: {allowed}."
            )
    if not experiments:
        raise ConfigError(
            f"{source}: names no experiment; add one of the tables "
            f"{', '.join(EXPERIMENT_CONFIGS)}."
        )
    return SuiteConfig(run=run, experiments=experiments, source=source)


def load(path) -> SuiteConfig:
    """Read and parse one TOML file (a path, or a bundled config's name)."""
    path = Path(path)
    if not path.exists() and path.suffix == "" and bundled_path(path.name).exists():
        path = bundled_path(path.name)
    try:
        with open(path, "rb") as fh:
            data = tomllib.load(fh)
    except FileNotFoundError:
        names = ", ".join(bundled())
        raise ConfigError(
            f"{path}: no such config file (bundled configs: {names})."
        ) from None
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"{path}: invalid TOML: {err}.") from None
    return parse(data, str(path))


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


def _toml_value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, str):
        return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(v, float):
        return repr(v)
    if isinstance(v, list):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    return str(v)


def to_toml(cfg: SuiteConfig) -> str:
    """The fully resolved config (every default written out) as TOML text."""
    lines = [f"# resolved from {cfg.source}", "[run]"]
    for f in dataclasses.fields(cfg.run):
        lines.append(f"{f.name} = {_toml_value(getattr(cfg.run, f.name))}")
    for name, exp in cfg.experiments.items():
        lines += ["", f"[{name}]"]
        for f in dataclasses.fields(exp):
            lines.append(f"{f.name} = {_toml_value(getattr(exp, f.name))}")
    return "\n".join(lines) + "\n"


def with_overrides(cfg, **kw):
    """``dataclasses.replace`` for a config (kept for symmetry with tests)."""
    return dataclasses.replace(cfg, **kw)
