from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, settings

from simulator.config import DEFAULT_CONFIG_PATH, load_config

ROOT = Path(__file__).resolve().parent.parent
REFERENCE = ROOT.parent / "shared" / "reference"

settings.register_profile("default", deadline=None, max_examples=12,
                          suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("default")


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
