"""The metrics config: every bad edit is a ConfigError naming the file and the key path."""

from __future__ import annotations

import os
import copy
import dataclasses
import math
import re

import pytest
import yaml
from hypothesis import given, settings, strategies as st

import simulator
from simulator import ConfigError, SimConfig, load_config
from simulator.anomalies import ANOMALY_KINDS
from simulator.catalogue import HOST_PARAMETER_NAMES, METRICS
from simulator.config import DEFAULT_CONFIG_PATH, MAX_CONFIG_BYTES


# --------------------------------------------------------------------------- the shipped file
def test_shipped_config_loads_completely(config):
    assert isinstance(config, SimConfig)
    assert config.source == "metrics.yaml"
    assert tuple(m.name for m in config.metrics) == METRICS == simulator.METRICS
    assert {a.kind for a in config.anomalies} == set(ANOMALY_KINDS)
    assert math.isclose(sum(p.share for p in config.profiles), 1.0)
    assert math.isclose(sum(a.share for a in config.anomalies), 1.0)
    for profile in config.profiles:
        assert len(profile.ranges) == len(HOST_PARAMETER_NAMES)
        assert all(lo <= hi for lo, hi in profile.ranges)
    assert config.metric("load_average").upper == math.inf  # `max: null`
    assert config.metric("spectrum_active_jobs").integer and not config.metric("cpu_usage").integer
    sim = config.simulation
    assert (sim.interval_s, sim.samples_per_host, sim.anomaly_ratio) == (300, 50, 0.2)
    assert isinstance(sim.seed, int) and isinstance(sim.samples_per_host, int)
    assert re.fullmatch(r"[0-9a-f]{16}", config.config_hash)


def test_same_content_same_hash_and_any_change_changes_it(config_dict, write_config):
    """The hash is of the validated content: comments and layout do not count; values and order do."""
    same = load_config(write_config(yaml.safe_dump(config_dict, sort_keys=False)))
    assert same.config_hash == load_config().config_hash
    config_dict["profiles"]["web_api"]["cpu_level"] = [5, 36]
    changed = load_config(write_config(yaml.safe_dump(config_dict, sort_keys=False), "changed.yaml"))
    assert changed.config_hash != same.config_hash


def test_profile_defaults_fill_in_and_profiles_override(config, config_dict):
    web = next(p for p in config.profiles if p.name == "web_api")
    idle = next(p for p in config.profiles if p.name == "idle")
    i_cores, i_level = HOST_PARAMETER_NAMES.index("cores"), HOST_PARAMETER_NAMES.index("cpu_level")
    assert web.ranges[i_cores] == tuple(config_dict["profile_defaults"]["cores"])  # default
    assert idle.ranges[i_cores] == tuple(config_dict["profiles"]["idle"]["cores"])  # override
    assert web.ranges[i_level] == tuple(config_dict["profiles"]["web_api"]["cpu_level"])
    i_cron = HOST_PARAMETER_NAMES.index("cpu_cron_prob")
    cron = config_dict["profile_defaults"]["cpu_cron_prob"]
    assert isinstance(cron, (int, float)) and "cpu_cron_prob" not in config_dict["profiles"]["web_api"]
    assert web.ranges[i_cron] == (cron, cron)  # a scalar is the range [x, x]


def test_large_seed_is_kept_exactly(config_dict, write_config):
    config_dict["simulation"]["seed"] = 2**63 - 1  # not representable as a float
    assert load_config(write_config(config_dict)).simulation.seed == 2**63 - 1
    config_dict["simulation"]["seed"] = 12345678901234567
    assert load_config(write_config(config_dict)).simulation.seed == 12345678901234567


# -------------------------------------------------------------------------- structured errors
def _set(path: str, value):
    def edit(d):
        *parents, last = path.split(".")
        for p in parents:
            d = d[p]
        d[last] = value
    return edit


def _delete(path: str):
    def edit(d):
        *parents, last = path.split(".")
        for p in parents:
            d = d[p]
        del d[last]
    return edit


def _all_profiles_set(param: str, value):
    def edit(d):
        for profile in d["profiles"].values():
            profile[param] = copy.deepcopy(value)  # one object used twice would be dumped as an alias
        d["profile_defaults"][param] = "lots"
    return edit


# (id, edit of the parsed shipped config, key path, problem) -- the message is "<file>: <key>: <problem>"
STRUCTURED_CASES = [
    ("wrong-type-range", _set("profiles.web_api.cpu_level", "high"), "profiles.web_api.cpu_level",
     "expected a number, got text"),
    ("range-one-item", _set("profiles.web_api.cpu_level", [5]), "profiles.web_api.cpu_level", "got 1 items"),
    ("range-reversed", _set("profiles.web_api.cpu_level", [35, 5]), "profiles.web_api.cpu_level", "reversed"),
    ("range-out-of-bounds", _set("profiles.batch_compute.cores", [16, 100000]), "profiles.batch_compute.cores",
     "outside"),
    ("share-negative", _set("profiles.idle.share", -1), "profiles.idle.share", "outside"),
    ("all-shares-zero", lambda d: [p.__setitem__("share", 0) for p in d["profiles"].values()], "profiles",
     "add up to 0"),
    ("no-profiles", _set("profiles", {}), "profiles", "at least one"),
    ("profile-not-mapping", _set("profiles.database", [1, 2]), "profiles.database", "expected a mapping"),
    ("profile-unknown-param", _set("profiles.database.cpu_levle", 3), "profiles.database.cpu_levle",
     "unknown key"),
    ("profile-missing-param", _delete("profile_defaults"), "profiles.idle.cpu_shift_sigma", "missing"),
    ("default-wrong-type", _set("profile_defaults.mem_level", True), "profile_defaults.mem_level",
     "expected a number, got true/false"),
    ("default-overridden-still-checked", _all_profiles_set("cpu_level", [1, 2]), "profile_defaults.cpu_level",
     "expected a number, got text"),
    ("interval-zero", _set("simulation.interval_s", 0), "simulation.interval_s", "outside"),
    ("samples-per-host-fraction", _set("simulation.samples_per_host", 2.5), "simulation.samples_per_host",
     "whole number"),
    ("seed-negative", _set("simulation.seed", -1), "simulation.seed", "outside"),
    ("seed-too-big", _set("simulation.seed", 2**63), "simulation.seed", "outside"),
    ("seed-huge-int", _set("simulation.seed", 10**400), "simulation.seed", "outside"),
    ("trace-share-above-half", _set("simulation.trace_anomaly_share", 0.7), "simulation.trace_anomaly_share",
     "outside"),
    ("ratio-above-one", _set("simulation.anomaly_ratio", 1.5), "simulation.anomaly_ratio", "outside"),
    ("ratio-nan", _set("simulation.anomaly_ratio", float("nan")), "simulation.anomaly_ratio", "finite"),
    ("trace-days-inf", _set("simulation.trace_days", float("inf")), "simulation.trace_days", "finite"),
    ("metric-max-minus-inf", _set("metrics.cpu_usage.max", float("-inf")), "metrics.cpu_usage.max", "finite"),
    ("start-time-not-iso", _set("simulation.start_time", "yesterday"), "simulation.start_time", "ISO 8601"),
    ("start-time-number", _set("simulation.start_time", 5), "simulation.start_time", "ISO 8601"),
    ("simulation-missing-key", _delete("simulation.trace_days"), "simulation.trace_days", "missing"),
    ("simulation-unknown-key", _set("simulation.trace_weeks", 1), "simulation.trace_weeks", "unknown key"),
    ("top-level-unknown-key", _set("alerts", {}), "alerts", "unknown key"),
    ("top-level-missing-key", _delete("anomalies"), "anomalies", "missing"),
    ("unknown-metric", _set("metrics.gpu_usage", {"unit": "percent", "min": 0, "max": 100, "integer": False,
                                                   "resolution": 0.1, "semantics": "gauge"}),
     "metrics.gpu_usage", "unknown metric"),
    ("missing-metric", _delete("metrics.java_gc_time"), "metrics.java_gc_time", "missing"),
    ("metric-missing-key", _delete("metrics.disk_usage.unit"), "metrics.disk_usage.unit", "missing"),
    ("metric-bool-wrong-type", _set("metrics.cpu_usage.integer", "no"), "metrics.cpu_usage.integer",
     "true or false"),
    ("metric-bool-as-number", _set("metrics.cpu_usage.integer", 0), "metrics.cpu_usage.integer",
     "true or false"),
    ("metric-max-below-min", _set("metrics.memory_usage.max", -1), "metrics.memory_usage.max", "above min"),
    ("metric-bad-semantics", _set("metrics.cpu_usage.semantics", "avg"), "metrics.cpu_usage.semantics",
     "not one of"),
    ("metric-unit-number", _set("metrics.cpu_usage.unit", 7), "metrics.cpu_usage.unit", "non-empty string"),
    ("metric-unit-not-the-catalogue's", _set("metrics.network_latency_ms.unit", "s"), "metrics.network_latency_ms.unit",
     "in ms (simulator/catalogue.py)"),
    ("metric-description-list", _set("metrics.cpu_usage.description", ["a"]), "metrics.cpu_usage.description",
     "expected text"),
    ("metric-number-as-text", _set("metrics.disk_usage.resolution", "0.01"), "metrics.disk_usage.resolution",
     "expected a number, got text"),
    ("unknown-anomaly-kind", _set("anomalies.solar_flare", {"share": 0.1, "duration_minutes": 5,
                                                            "severity": 0.5, "min_peak_deviation": 2}),
     "anomalies.solar_flare", "unknown anomaly kind"),
    ("anomaly-unknown-param", _set("anomalies.cpu_spike.colour", 1), "anomalies.cpu_spike.colour", "unknown key"),
    ("anomaly-param-out-of-range", _set("anomalies.cpu_spike.max_extra_cpu_pct", 1e9),
     "anomalies.cpu_spike.max_extra_cpu_pct", "outside"),
    ("anomaly-zero-duration", _set("anomalies.disk_full.duration_minutes", [0, 5]),
     "anomalies.disk_full.duration_minutes", "positive"),
    ("anomaly-severity-above-one", _set("anomalies.disk_full.severity", [0.5, 2]), "anomalies.disk_full.severity",
     "outside"),
    ("anomaly-missing-key", _delete("anomalies.job_backlog.severity"), "anomalies.job_backlog.severity",
     "missing"),
    ("non-string-key", lambda d: d["profiles"]["web_api"].__setitem__(7, 2), "profiles.web_api.7", "keys must be strings"),
    ("anomaly-unknown-profile", _set("anomalies.jvm_gc_storm.profiles", ["web_api", "mainframe"]),
     "anomalies.jvm_gc_storm.profiles", "jvm_gc_storm names the unknown host profile 'mainframe'"),
    ("anomaly-profiles-not-a-list", _set("anomalies.job_backlog.profiles", "batch_compute"),
     "anomalies.job_backlog.profiles", "expected a non-empty list"),
    ("anomaly-profiles-empty", _set("anomalies.job_backlog.profiles", []),
     "anomalies.job_backlog.profiles", "expected a non-empty list"),
    ("anomaly-sample-after-too-late", _set("anomalies.memory_leak.sample_after_minutes", 720),
     "anomalies.memory_leak.sample_after_minutes", "must be below the longest duration (720)"),
    ("anomaly-description-number", _set("anomalies.job_backlog.description", 3),
     "anomalies.job_backlog.description", "expected text"),
]


@pytest.mark.parametrize("edit,key,problem", [c[1:] for c in STRUCTURED_CASES],
                         ids=[c[0] for c in STRUCTURED_CASES])
def test_bad_value_names_file_and_key(config_dict, write_config, edit, key, problem):
    edit(config_dict)
    path = write_config(yaml.safe_dump(config_dict, sort_keys=False), "bad.yaml")
    with pytest.raises(ConfigError, match=re.escape(f"{path}: {key}: ") + ".*" + re.escape(problem)) as info:
        load_config(path)
    err = info.value
    assert (err.source, err.key) == (str(path), key)
    assert "\n" not in str(err)


def test_shipped_file_is_named_by_its_name(monkeypatch, tmp_path, config_dict):
    """Errors in the default config say `metrics.yaml: <key>`, as in the README."""
    import simulator.config as cfg
    config_dict["profiles"]["web_api"]["cpu_level"] = "high"
    bad = tmp_path / "metrics.yaml"
    bad.write_text(yaml.safe_dump(config_dict))
    monkeypatch.setattr(cfg, "DEFAULT_CONFIG_PATH", bad)
    with pytest.raises(ConfigError, match=r"^metrics\.yaml: profiles\.web_api\.cpu_level: expected a number"):
        cfg.load_config()


def test_key_with_a_line_break_still_gives_a_one_line_message(config_dict, write_config):
    config_dict["sim\nulation"] = 1
    with pytest.raises(ConfigError, match=r"sim\\nulation: unknown key") as info:
        load_config(write_config(config_dict))
    assert "\n" not in str(info.value)


# ------------------------------------------------------------------------------- file-level errors
TEXT_CASES = [
    ("malformed", "simulation: [1, 2\nmetrics: {}\n", r"malformed YAML: line \d+, column \d+"),
    ("bad-indent", "simulation:\n  seed: 1\n bad: 2\n", r"malformed YAML: line 3"),
    ("tab", "simulation:\n\tseed: 1\n", r"malformed YAML: line 2"),
    ("alias", "simulation: &s {seed: 1}\nmetrics: *s\n", r"malformed YAML: line 2, column 10: aliases"),
    ("impossible-date", "simulation: {start_time: 2026-13-45}\n", r"malformed YAML: bad value: month"),
    ("bad-int-tag", "simulation: {seed: !!int x}\n", r"malformed YAML: bad value"),
    ("python-tag", "simulation: !!python/object/apply:os.system [echo hi]\n", r"malformed YAML"),
    ("deep-nesting", "a: " + "[" * 3000 + "]" * 3000 + "\n", r"malformed YAML: nested too deeply"),
    ("empty", "", r"\(top level\): expected a mapping, got nothing \(null\)"),
    ("scalar", "42\n", r"\(top level\): expected a mapping, got int"),
    ("list", "- simulation\n", r"\(top level\): expected a mapping, got a list"),
]


@pytest.mark.parametrize("text,problem", [c[1:] for c in TEXT_CASES], ids=[c[0] for c in TEXT_CASES])
def test_unusable_yaml_names_the_file(write_config, text, problem):
    path = write_config(text, "broken.yaml")
    with pytest.raises(ConfigError, match="^" + re.escape(f"{path}: ") + problem) as info:
        load_config(path)
    assert "\n" not in str(info.value)


def test_not_utf8(tmp_path):
    path = tmp_path / "latin1.yaml"
    path.write_bytes(DEFAULT_CONFIG_PATH.read_bytes().replace(b"# Metrics", "# Métrics".encode("latin-1"), 1))
    with pytest.raises(ConfigError, match=re.escape(f"{path}: not UTF-8 text (byte 3)")):
        load_config(path)


def test_missing_file_directory_and_oversized_file(tmp_path):
    with pytest.raises(ConfigError, match=re.escape(f"{tmp_path / 'nope.yaml'}: file not found")):
        load_config(tmp_path / "nope.yaml")
    with pytest.raises(ConfigError, match=re.escape(f"{tmp_path}: is a directory")):
        load_config(tmp_path)
    big = tmp_path / "big.yaml"
    big.write_bytes(b"#" * (MAX_CONFIG_BYTES + 1))
    with pytest.raises(ConfigError, match=re.escape(f"{big}: {MAX_CONFIG_BYTES + 1} bytes")):
        load_config(big)


def test_config_error_is_a_simulator_error():
    err = ConfigError("x.yaml", "a.b", "bad")
    assert isinstance(err, simulator.SimulatorError)
    assert str(err) == "x.yaml: a.b: bad"
    assert str(ConfigError("x.yaml", "", "bad")) == "x.yaml: bad"


# ------------------------------------------------------------------------- random mutations
def _leaves(node, path=()):
    """(path, value) of every scalar leaf; list items are leaves too."""
    if isinstance(node, dict):
        for k, v in node.items():
            yield from _leaves(v, (*path, k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from _leaves(v, (*path, i))
    else:
        yield path, node


SHIPPED = yaml.safe_load(DEFAULT_CONFIG_PATH.read_text())
LEAVES = [path for path, _ in _leaves(SHIPPED)]

wrong_values = st.one_of(
    st.text(max_size=12),
    st.booleans(),
    st.none(),
    st.lists(st.integers(-5, 5), max_size=3),
    st.dictionaries(st.text(max_size=4), st.integers(), max_size=2),
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.sampled_from([0, -1, 1, 10**400, -(10**400), 1e300, -1e300, 2**63, 0.5, 1e-300]),
    st.datetimes(),
)


@settings(max_examples=120)
@given(leaf=st.sampled_from(LEAVES), value=wrong_values)
def test_mutated_leaf_gives_config_error_or_a_valid_config(tmp_path_factory, leaf, value):
    data = copy.deepcopy(SHIPPED)
    node = data
    for k in leaf[:-1]:
        node = node[k]
    node[leaf[-1]] = value
    path = tmp_path_factory.mktemp("mut") / "mutated.yaml"
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    try:
        loaded = load_config(path)
    except ConfigError as err:
        message = str(err)
        assert "mutated.yaml" in message and message.startswith(f"{path}: ")
        assert "\n" not in message
        # the error is about the mutated entry: same section and same entry (a metric, profile, kind...)
        key = err.key.split(".")
        assert key[0] == leaf[0], (err.key, leaf)
        if len(leaf) > 1 and len(key) > 1:
            assert key[1] == str(leaf[1]), (err.key, leaf)
    else:
        assert isinstance(loaded, SimConfig)
        assert tuple(m.name for m in loaded.metrics) == METRICS
        for spec in (*loaded.metrics, *loaded.profiles, *loaded.anomalies):
            for f in dataclasses.fields(spec):
                v = getattr(spec, f.name)
                if isinstance(v, float) and f.name != "upper":
                    assert math.isfinite(v), (spec, f.name)


def test_both_packages_share_one_error_model():
    """One ConfigError and one UserError for both CLIs: each package's config error is also its own error."""
    import datasafe.errors
    import language.errors

    for err, own in ((ConfigError("x.yaml", "k", "bad"), simulator.SimulatorError),
                     (language.errors.ConfigError("x.yaml", "k", "bad"), language.errors.LanguageError)):
        assert isinstance(err, (datasafe.errors.ConfigError)) and isinstance(err, own)
        assert isinstance(err, datasafe.errors.UserError) and str(err) == "x.yaml: k: bad"
    assert not issubclass(language.errors.LanguageError, simulator.SimulatorError)


def test_the_command_lines_print_library_warnings_as_one_line(capsys):
    """The libraries log; a command line's set-up prints each warning as 'prog: warning: ...' on one line."""
    import logging

    from datasafe.errors import configure_logging

    for _ in range(2):                                   # set up twice (two runs in one process): one line
        configure_logging("python -m language", "language")
    logging.getLogger("language.scheduler").warning("models.yaml: backends: bad\nsecond line")
    logging.getLogger("language.scheduler").info("not shown")
    assert capsys.readouterr().err == "python -m language: warning: models.yaml: backends: bad\\nsecond line\n"


def test_atomic_writes_follow_the_umask_of_the_moment(tmp_path):
    """Files get 0666 less the process's umask when written (importing datasafe does not fix or touch it)."""
    import datasafe

    old = os.umask(0o027)
    try:
        datasafe.atomic_write_bytes(tmp_path / "a.json", b"{}")
        os.umask(0o002)
        datasafe.atomic_write_bytes(tmp_path / "b.json", b"{}")
    finally:
        os.umask(old)
    assert (tmp_path / "a.json").stat().st_mode & 0o777 == 0o640
    assert (tmp_path / "b.json").stat().st_mode & 0o777 == 0o664


def test_every_kind_module_is_registered_without_an_import_list():
    """A kind is found by its module alone: the registry holds one kind per module of the package."""
    import pathlib

    import simulator.anomalies as package

    modules = {p.stem for p in pathlib.Path(package.__file__).parent.glob("*.py")} - {"__init__", "base"}
    assert {ANOMALY_KINDS[k].build.__module__.rsplit(".", 1)[1] for k in ANOMALY_KINDS} == modules
    assert list(ANOMALY_KINDS) == sorted(ANOMALY_KINDS)  # name order: the staging's kind enum is stable


def test_each_kind_declares_the_profiles_it_can_happen_on(config, config_dict, write_config):
    names = tuple(p.name for p in config.profiles)
    assert config.anomaly("jvm_gc_storm").profiles == ("web_api", "jvm_app_server")
    assert config.anomaly("job_backlog").profiles == ("batch_compute",)
    assert "idle" not in config.anomaly("memory_leak").profiles
    del config_dict["anomalies"]["cpu_spike"]["profiles"]   # not given: every profile
    config_dict["anomalies"]["daemon_crash"]["profiles"] = ["database", "idle"]   # kept in the profiles' order
    loaded = load_config(write_config(yaml.safe_dump(config_dict, sort_keys=False)))
    assert loaded.anomaly("cpu_spike").profiles == names
    assert loaded.anomaly("daemon_crash").profiles == ("idle", "database")
