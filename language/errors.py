"""The language generator's errors, subclasses of the shared ones in `datasafe.errors`."""

from __future__ import annotations

from datasafe import errors
from datasafe.errors import UserError, one_line


class LanguageError(UserError):
    """A problem with the generator's input or outputs that the user can fix."""


class ConfigError(errors.ConfigError, LanguageError):
    """A config file that cannot be used; the message names the file and the key."""


__all__ = ["LanguageError", "ConfigError", "UserError", "one_line"]
