"""The simulator's errors, subclasses of the shared ones in `datasafe.errors`."""

from __future__ import annotations

from datasafe import errors
from datasafe.errors import UserError, one_line


class SimulatorError(UserError):
    """A problem with the simulator's input or outputs that the user can fix."""


class ConfigError(errors.ConfigError, SimulatorError):
    """A config file that cannot be used; the message names the file and the key."""


__all__ = ["SimulatorError", "ConfigError", "UserError", "one_line"]
