"""The errors both command lines turn into a one-line message and exit status 2.

A `UserError` is a problem the user can fix (bad input, a bad config, an unusable output path); the
simulator and the language generator each raise their own subclass, and a `ConfigError` names the
file and the key it is about, whichever package read the file.
"""

from __future__ import annotations

import logging
import sys


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


class _Stderr(logging.StreamHandler):
    """A handler that writes to whatever sys.stderr is when a record is emitted."""

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, _value):
        pass


class _OneLine(logging.Formatter):
    def __init__(self, prog: str):
        super().__init__()
        self.prog = prog

    def format(self, record: logging.LogRecord) -> str:
        return one_line(f"{self.prog}: {record.levelname.lower()}: {record.getMessage()}")


def configure_logging(prog: str, package: str) -> None:
    """Warnings of `package` go to stderr as one line each, "prog: warning: ..." (a command line's
    set-up; the library only logs)."""
    logger = logging.getLogger(package)
    logger.handlers = [h for h in logger.handlers if not isinstance(h, _Stderr)]
    handler = _Stderr()
    handler.setFormatter(_OneLine(prog))
    logger.addHandler(handler)
    logger.setLevel(logging.WARNING)


__all__ = ["UserError", "ConfigError", "configure_logging", "one_line"]
