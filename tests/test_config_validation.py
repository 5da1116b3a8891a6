"""The research workflow's config schema: every value type- and range-checked at load.

No experiment runs here: configs are parsed and validated, and the CLI is
called only with configs it must reject before any run directory exists.
"""

from __future__ import annotations

import dataclasses
import tomllib

import pytest

from experiments import EXPERIMENTS, cli, common, config, suite, writers


def _write(tmp_path, text, name="c.toml"):
    path = tmp_path / name
    path.write_text(text)
    return path


# (TOML text, the dotted key, the value as the message shows it, part of "allowed")
BAD = [
    (
        "[sampling_distribution]\nchunk = 0",
        "sampling_distribution.chunk",
        "0",
        "integer in [1, 100_000]",
    ),
    (
        "[sampling_distribution]\nchunk = -3",
        "sampling_distribution.chunk",
        "-3",
        "integer in [1, ",
    ),
    (
        '[run]\nname = "../../x"\n[logistic_fit]',
        "run.name",
        "'../../x'",
        "letters, digits",
    ),
    (
        '[run]\nname = "/tmp/abs"\n[logistic_fit]',
        "run.name",
        "'/tmp/abs'",
        "letters, digits",
    ),
    ('[run]\nname = "a\\nb"\n[logistic_fit]', "run.name", "'a\\nb'", "letters, digits"),
    ('[run]\nname = ""\n[logistic_fit]', "run.name", "''", "1 to 64"),
    (
        '[run]\nname = ".hidden"\n[logistic_fit]',
        "run.name",
        "'.hidden'",
        "starting with",
    ),
    ("[logistic_fit]\nn = -5", "logistic_fit.n", "-5", "integer in [2, 1_000_000]"),
    ("[linear_vs_ols]\np = 0", "linear_vs_ols.p", "0", "integer in [1, 1_000]"),
    ("[logistic_fit]\nsolvers = []", "logistic_fit.solvers", "[]", "1 to 4 items"),
    (
        '[logistic_fit]\nsolvers = ["newton", "bfgs"]',
        "logistic_fit.solvers[1]",
        "'bfgs'",
        "'lbfgs'",
    ),
    (
        "[linear_vs_ols]\ncorrelation = 1.5",
        "linear_vs_ols.correlation",
        "1.5",
        "float in [0, 1)",
    ),
    (
        "[linear_vs_ols]\ncorrelation = -0.1",
        "linear_vs_ols.correlation",
        "-0.1",
        "float in [0, 1)",
    ),
    ("[logistic_fit]\nadam_lr = nan", "logistic_fit.adam_lr", "nan", "(finite)"),
    ("[linear_vs_ols]\nsgd_lr = inf", "linear_vs_ols.sgd_lr", "inf", "(finite)"),
    ("[logistic_fit]\nsgd_lr = 0", "logistic_fit.sgd_lr", "0.0", "float in (0, "),
    (
        "[run]\nseed = 9223372036854775808\n[logistic_fit]",
        "run.seed",
        "9223372036854775808",
        "9_223_372_036_854_775_807]",
    ),
    ("[run]\nseed = -1\n[logistic_fit]", "run.seed", "-1", "integer in [0, "),
    (
        '[sampling_distribution]\nfamilies = ["__class__"]',
        "sampling_distribution.families[0]",
        "'__class__'",
        "one of 'Gaussian'",
    ),
    (
        '[gradient_equivalence]\nfamilies = ["Binomial"]',
        "gradient_equivalence.families[0]",
        "'Binomial'",
        "'Categorical'",
    ),
    (
        '[robust_regression]\nscenarios = ["gaussian", "gaussian"]',
        "robust_regression.scenarios",
        "['gaussian', 'gaussian']",
        "no repeats",
    ),
    (
        "[robust_regression]\noutlier_fraction = -0.1",
        "robust_regression.outlier_fraction",
        "-0.1",
        "float in [0, 1]",
    ),
    ("[robust_regression]\np = 1", "robust_regression.p", "1", "integer in [2, "),
    (
        "[robust_regression]\nstudent_df = -1",
        "robust_regression.student_df",
        "-1.0",
        "float in [0, 1_000]",
    ),
    (
        "[sampling_distribution]\nlevel = 1.0",
        "sampling_distribution.level",
        "1.0",
        "float in (0, 1)",
    ),
    (
        "[sampling_distribution]\nreplications = 1",
        "sampling_distribution.replications",
        "1",
        "integer in [2, ",
    ),
    (
        "[sampling_distribution]\nns = [50, 1]",
        "sampling_distribution.ns[1]",
        "1",
        "each integer in [2, ",
    ),
    (
        "[gradient_equivalence]\nn_classes = 1",
        "gradient_equivalence.n_classes",
        "1",
        "integer in [2, 100]",
    ),
    (
        "[linear_vs_ols]\nthresholds = [0.0]",
        "linear_vs_ols.thresholds[0]",
        "0.0",
        "each float in (0, 1)",
    ),
    ("[logistic_fit]\nrepeats = 0", "logistic_fit.repeats", "0", "integer in [1, 100]"),
    (
        "[logistic_fit]\nn = 4\np = 4",
        "logistic_fit.n = 4, logistic_fit.p = 4",
        "",
        "n > p",
    ),
    (
        "[sampling_distribution]\nns = [3, 50]\np = 3",
        "sampling_distribution.ns = [3, 50]",
        "",
        "every n in ns > p",
    ),
]


@pytest.mark.parametrize(("text", "key", "value", "allowed"), BAD)
def test_out_of_range_values_are_rejected_at_load(tmp_path, text, key, value, allowed):
    with pytest.raises(config.ConfigError) as exc:
        config.load(_write(tmp_path, text))
    msg = str(exc.value)
    assert "\n" not in msg
    assert msg.startswith(f"{tmp_path / 'c.toml'}: key")
    assert key in msg and f"= {value}" in msg
    assert "allowed: " in msg and allowed in msg.split("allowed: ", 1)[1]


def test_every_field_has_a_rule_and_every_default_passes():
    for cls in (config.RunSection, *config.EXPERIMENT_CONFIGS.values()):
        for f in dataclasses.fields(cls):
            assert isinstance(f.metadata.get("rule"), config.Rule), (cls, f.name)
    defaults = config.SuiteConfig(
        run=config.RunSection(),
        experiments={n: cls() for n, cls in config.EXPERIMENT_CONFIGS.items()},
    )
    assert config.validate(defaults) is defaults
    for name in config.bundled():  # the shipped configs are valid too
        config.validate(config.load(config.bundled_path(name)))


def test_configs_built_in_python_are_validated_before_a_directory_exists(
    tmp_path, monkeypatch
):
    ran = []
    monkeypatch.setattr(
        EXPERIMENTS["linear_vs_ols"], "run_unit", lambda *a: ran.append(a) or {}
    )
    bad = config.SuiteConfig(
        run=config.RunSection(name="py"),
        experiments={"linear_vs_ols": config.LinearVsOLS(correlation=1.5)},
        source="<python>",
    )
    with pytest.raises(config.ConfigError, match=r"<python>: key linear_vs_ols\.corr"):
        suite.run_suite(bad, out=tmp_path / "out")
    assert not (tmp_path / "out").exists() and ran == []
    wrong_type = dataclasses.replace(bad, experiments={"linear_vs_ols": 3})
    with pytest.raises(config.ConfigError, match="must be a LinearVsOLS"):
        config.validate(wrong_type)
    ok = dataclasses.replace(bad, experiments={"linear_vs_ols": config.LinearVsOLS()})
    with pytest.raises(config.ConfigError, match=r"--seed: key run\.seed = -2"):
        suite.run_suite(ok, out=tmp_path / "out", seed=-2)
    assert not (tmp_path / "out").exists() and ran == []


def test_run_directories_stay_inside_out(tmp_path):
    out = tmp_path / "out"
    for name in ("../x", "/tmp/abs", "..", ".", "", "a/b"):
        with pytest.raises(writers.RunDirError):
            writers.new_run_dir(out, name)
    assert sorted(p.name for p in tmp_path.iterdir()) in ([], ["out"])
    assert not any(out.iterdir()) if out.exists() else True
    with pytest.raises(config.ConfigError, match="run.name"):
        config.with_seed(
            config.SuiteConfig(run=config.RunSection(name="a/b"), experiments={}), 1
        )


@pytest.mark.parametrize(
    "text", ['a"b', "back\\slash", "new\nline", "tab\there", "del\x7f", "é🙂", "\x00"]
)
def test_resolved_toml_escapes_every_string(text):
    assert tomllib.loads(f"x = {config._toml_value(text)}")["x"] == text
    cfg = config.load(config.bundled_path("smoke"))
    resolved = config.to_toml(dataclasses.replace(cfg, source=text))
    assert config.parse(tomllib.loads(resolved)).experiments == cfg.experiments


def test_unreadable_config_files_are_config_errors(tmp_path, monkeypatch):
    (tmp_path / "dir.toml").mkdir()
    with pytest.raises(config.ConfigError, match="is a directory"):
        config.load(tmp_path / "dir.toml")
    (tmp_path / "latin1.toml").write_bytes(b'[run]\nname = "caf\xe9"\n')
    with pytest.raises(config.ConfigError, match="not a UTF-8 text file"):
        config.load(tmp_path / "latin1.toml")
    locked = _write(tmp_path, "[logistic_fit]\n", "locked.toml")

    def denied(*args, **kwargs):
        raise PermissionError(13, "Permission denied", str(locked))

    monkeypatch.setattr(config, "open", denied, raising=False)
    with pytest.raises(config.ConfigError, match="cannot read.*Permission denied"):
        config.load(locked)


def test_families_come_from_an_allow_list():
    assert type(common.family_by_name("Gaussian")).__name__ == "Gaussian"
    assert common.family_by_name("Categorical", n_classes=4).n_classes == 4
    for name in ("__class__", "Family", "STUDENT_T_DF_MAX", "builtin", 3):
        with pytest.raises(ValueError, match="unknown family"):
            common.family_by_name(name)
    # every family a config may name is constructible
    for cls in config.EXPERIMENT_CONFIGS.values():
        for f in dataclasses.fields(cls):
            for fam in (
                (f.metadata["rule"].choices or ()) if f.name == "families" else ()
            ):
                assert fam in common.FAMILIES


BAD_CLI = [
    ("chunk0.toml", b"[sampling_distribution]\nchunk = 0\n"),
    ("escape.toml", b'[run]\nname = "../../escaped"\n[logistic_fit]\n'),
    ("absolute.toml", b'[run]\nname = "/tmp/absolute"\n[logistic_fit]\n'),
    ("nan.toml", b"[logistic_fit]\nadam_lr = nan\n"),
    ("empty.toml", b"[logistic_fit]\nsolvers = []\n"),
    ("binary.toml", b"\xff\xfe\x00[run]\n"),
    ("newline.toml", b'[run]\nname = "two\\nlines"\n[logistic_fit]\n'),
]


@pytest.mark.parametrize(("name", "data"), BAD_CLI, ids=[n for n, _ in BAD_CLI])
def test_cli_reports_bad_configs_in_one_line_and_creates_nothing(
    tmp_path, capsys, name, data
):
    cfg_dir = tmp_path / "cfg"
    cfg_dir.mkdir()
    (cfg_dir / name).write_bytes(data)
    out = tmp_path / "deep" / "runs"
    assert cli.main(["run", str(cfg_dir / name), "--out", str(out), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1, err
    assert err.startswith("mlejax: config error: ") and name in err
    assert "Traceback" not in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cfg"]  # nothing written
    assert sorted(p.name for p in cfg_dir.iterdir()) == [name]


def test_cli_reports_a_directory_and_a_bad_seed_in_one_line(tmp_path, capsys):
    (tmp_path / "adir").mkdir()
    out = tmp_path / "runs"
    assert cli.main(["run", str(tmp_path / "adir"), "--out", str(out)]) == 2
    assert "is a directory" in capsys.readouterr().err
    for seed in ("-1", str(2**64)):
        assert cli.main(["run", "smoke", "--seed", seed, "--out", str(out)]) == 2
        err = capsys.readouterr().err
        assert err.startswith("mlejax: config error: --seed: key run.seed")
        assert len(err.strip().splitlines()) == 1
    assert not out.exists()
