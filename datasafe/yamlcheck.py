"""Reading YAML config files safely and validating them with errors that name the file and key.

Shared by the simulator and the language generator: a config is read as UTF-8 text of bounded
size, parsed with a SafeLoader that also refuses aliases (no YAML bombs, no code), and checked by
small typed accessors that raise the caller's error type with `file: key.path: problem`.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Callable, Mapping

import yaml

ErrorFactory = Callable[[str, str, str], Exception]  # (source, key, problem) -> exception to raise


def read_yaml(path: Path, source: str, error: ErrorFactory, max_bytes: int) -> Any:
    """The parsed YAML document at `path`; every problem raises error(source, "", problem)."""
    try:
        raw_bytes = path.read_bytes()
    except FileNotFoundError:
        raise error(source, "", "file not found") from None
    except IsADirectoryError:
        raise error(source, "", "is a directory, not a YAML file") from None
    except OSError as exc:
        raise error(source, "", f"cannot read: {exc.strerror}") from None
    if len(raw_bytes) > max_bytes:
        raise error(source, "", f"{len(raw_bytes)} bytes; a config is at most {max_bytes}")
    try:
        text = raw_bytes.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise error(source, "", f"not UTF-8 text (byte {exc.start})") from None
    try:
        data = yaml.load(text, Loader=NoAliasSafeLoader)  # safe: a SafeLoader subclass
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise error(source, "", f"malformed YAML: {where}{problem}") from None
    except RecursionError:
        raise error(source, "", "malformed YAML: nested too deeply") from None
    except (ValueError, TypeError, OverflowError) as exc:
        # PyYAML's constructors raise these for well-formed but impossible scalars:
        # a date like 2026-13-45, `!!int x`, an integer literal of more than 4300 digits.
        first = (str(exc).splitlines() or [type(exc).__name__])[0]
        raise error(source, "", f"malformed YAML: bad value: {first}") from None
    return data


class NoAliasSafeLoader(yaml.SafeLoader):
    """SafeLoader that refuses aliases: a config never needs them, and they enable YAML bombs."""

    def compose_node(self, parent, index):  # noqa: D401 - PyYAML hook
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            raise yaml.composer.ComposerError(
                None, None, "aliases (*name) are not allowed", event.start_mark
            )
        return super().compose_node(parent, index)


class Validator:
    """Small typed accessors that raise ConfigError with the file and key path."""

    def __init__(self, source: str, error: ErrorFactory):
        self.source, self.error = source, error

    def fail(self, key: str, problem: str):
        raise self.error(self.source, key, problem)

    def mapping(self, node: Any, key: str, required: tuple[str, ...] = (),
                optional: tuple[str, ...] | None = None) -> Mapping[str, Any]:
        if not isinstance(node, dict):
            self.fail(key or "(top level)", f"expected a mapping, got {_type_name(node)}")
        for k in node:
            if not isinstance(k, str):
                self.fail(_join(key, str(k)), "keys must be strings")
        for k in required:
            if k not in node:
                self.fail(_join(key, k), "missing")
        if optional is not None:
            allowed = set(required) | set(optional)
            for k in node:
                if k not in allowed:
                    self.fail(_join(key, k), "unknown key")
        return node

    def number(self, value: Any, key: str, lo: float, hi: float) -> float:
        return float(self._checked_number(value, key, lo, hi))

    def whole(self, value: Any, key: str, lo: int, hi: int) -> int:
        """A whole number (`3` or `3.0`), returned as an exact int (seeds go up to 2^63 - 1)."""
        value = self._checked_number(value, key, lo, hi, integer=True)
        return value if isinstance(value, int) else int(value)

    def _checked_number(self, value: Any, key: str, lo: float, hi: float, *, integer: bool = False):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            self.fail(key, f"expected a number, got {_type_name(value)}")
        # an int may be too large for a float (math.isfinite(10**400) raises); compare it exactly
        if isinstance(value, float) and not math.isfinite(value):
            self.fail(key, f"must be finite, got {value}")
        if integer and isinstance(value, float) and value != int(value):
            self.fail(key, f"expected a whole number, got {value}")
        if not lo <= value <= hi:
            self.fail(key, f"{_show(value)} is outside [{_fmt(lo)}, {_fmt(hi)}]")
        return value

    def value_range(self, value: Any, key: str, lo: float, hi: float) -> tuple[float, float]:
        if isinstance(value, list):
            if len(value) != 2:
                self.fail(key, f"a range is [low, high], got {len(value)} items")
            a = self.number(value[0], key, lo, hi)
            b = self.number(value[1], key, lo, hi)
            if b < a:
                self.fail(key, f"range [{_fmt(a)}, {_fmt(b)}] is reversed")
            return (a, b)
        x = self.number(value, key, lo, hi)
        return (x, x)

    def string(self, value: Any, key: str) -> str:
        if not isinstance(value, str) or not value:
            self.fail(key, f"expected a non-empty string, got {_type_name(value)}")
        return value

    def text(self, value: Any, key: str) -> str:
        """Free text such as a description: any string, possibly empty."""
        if not isinstance(value, str):
            self.fail(key, f"expected text, got {_type_name(value)}")
        return value

    def boolean(self, value: Any, key: str) -> bool:
        if not isinstance(value, bool):
            self.fail(key, f"expected true or false, got {_type_name(value)}")
        return value


def _join(key: str, sub: str) -> str:
    return f"{key}.{sub}" if key else sub


def _type_name(value: Any) -> str:
    if value is None:
        return "nothing (null)"
    return {dict: "a mapping", list: "a list", str: "text", bool: "true/false"}.get(
        type(value), type(value).__name__)


def _fmt(x: float) -> str:
    return f"{x:g}"


def _show(value: float) -> str:
    """A number for an error message; huge integers by their size, not their 400 digits."""
    if isinstance(value, int) and abs(value) >= 10**16:
        sign = "a negative" if value < 0 else "an"
        return f"{sign} integer of about {int(value.bit_length() * 0.30103) + 1} digits"
    return f"{value}"
