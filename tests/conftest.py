from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, settings

from simulator.config import DEFAULT_CONFIG_PATH, load_config

ROOT = Path(__file__).resolve().parent.parent
REFERENCE = ROOT.parent / "shared" / "reference"

# derandomize: every run (and CI) tries the same examples, so a red run is reproducible; a
# counterexample found by exploring (HYPOTHESIS_PROFILE=explore) becomes a named test
settings.register_profile("default", deadline=None, max_examples=12, derandomize=True,
                          suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("explore", deadline=None, max_examples=200,
                          suppress_health_check=[HealthCheck.too_slow])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))


@pytest.fixture(scope="session")
def config():
    return load_config()


@pytest.fixture
def config_dict():
    """The shipped config as a dict, to edit and write for error tests."""
    return yaml.safe_load(DEFAULT_CONFIG_PATH.read_text())


@pytest.fixture
def write_config(tmp_path):
    def write(data, name="metrics.yaml") -> Path:
        path = tmp_path / name
        path.write_text(data if isinstance(data, str) else yaml.safe_dump(data))
        return path
    return write


@pytest.fixture(autouse=True)
def _lexical_relevance_unless_asked(request, monkeypatch):
    """Runs in the tests (and their subprocesses) pick the lexical relevance gate whether or not the
    relevance extra is installed, so they behave the same on every machine; tests of the embedding gate
    build it themselves (and tests marked `embedding_gate` let "auto" find it)."""
    if request.node.get_closest_marker("embedding_gate") is None:
        from language.relevance import NO_EMBEDDING_ENV

        monkeypatch.setenv(NO_EMBEDDING_ENV, "1")


def language_config(tmp_path: Path, *, requests: dict, rotation: dict | None = None) -> Path:
    """A copy of the shipped data_config whose models.yaml takes `requests` (timeouts, retries) and
    `rotation` settings for tests; returns the folder."""
    d = tmp_path / "config"
    shutil.copytree(ROOT / "data_config", d)
    models = yaml.safe_load((d / "models.yaml").read_text())
    models["requests"].update(requests)
    models["rotation"].update(rotation or {})
    (d / "models.yaml").write_text(yaml.safe_dump(models))
    return d


FAST_RETRIES = {"backoff_base_s": 0.01, "backoff_max_s": 0.05}
