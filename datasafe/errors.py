"""The errors both command lines turn into a one-line message and exit status 2.

A `UserError` is a problem the user can fix (bad input, a bad config, an unusable output path); the
simulator and the language generator each raise their own subclass, and a `ConfigError` names the
file and the key it is about, whichever package read the file.
"""

from __future__ import annotations


def one_line(text: str) -> str:
    """`text` with line breaks and other control characters escaped (`\\n`), so it prints as one line."""
    if text.isprintable():
        return text
    return "".join(ch if ch.isprintable() else repr(ch)[1:-1] for ch in text)


class UserError(Exception):
    """A problem the user can fix: bad input, a bad config, an unusable output path."""


class ConfigError(UserError):
    """A config file that cannot be used; the message names the file and the key."""

    def __init__(self, source: str, key: str, problem: str):
        self.source, self.key, self.problem = source, key, problem
        where = f"{source}: {key}" if key else source
        super().__init__(one_line(f"{where}: {problem}"))


__all__ = ["UserError", "ConfigError", "one_line"]
