"""Errors the language command line turns into a one-line message (exit status 2 for bad input)."""

from __future__ import annotations

from simulator.errors import one_line


class LanguageError(Exception):
    """A problem the user can fix: bad input, a bad config, an unusable output path."""


class ConfigError(LanguageError):
    """A config file that cannot be used; the message names the file and the key."""

    def __init__(self, source: str, key: str, problem: str):
        self.source, self.key, self.problem = source, key, problem
        where = f"{source}: {key}" if key else source
        super().__init__(one_line(f"{where}: {problem}"))


__all__ = ["LanguageError", "ConfigError", "one_line"]
