"""Frozen config dataclasses, overridden from the command line with type checks (``--set key=value``)."""

from __future__ import annotations

import dataclasses
import types
import typing
from typing import Any, Literal, Union, get_args, get_origin, get_type_hints

from .errors import UsageError

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def _parse(text: str, tp: Any, key: str) -> Any:
    origin = get_origin(tp)
    if origin in (Union, types.UnionType):
        args = get_args(tp)
        if type(None) in args and text.lower() in ("none", "null", ""):
            return None
        errors = []
        for a in args:
            if a is type(None):
                continue
            try:
                return _parse(text, a, key)
            except UsageError as e:
                errors.append(str(e))
        raise UsageError(errors[0] if errors else f"{key}: cannot parse {text!r}")
    if origin is Literal:
        choices = get_args(tp)
        for c in choices:
            if str(c) == text:
                return c
        raise UsageError(f"{key} must be one of {', '.join(map(str, choices))}; got {text!r}")
    if origin in (tuple, list):
        args = get_args(tp)
        inner = args[0] if args else str
        parts = [p for p in text.split(",") if p.strip() != ""]
        if not parts:
            raise UsageError(f"{key} expects a comma-separated list, e.g. {key}=1,10,100; got {text!r}")
        vals = [_parse(p.strip(), inner, key) for p in parts]
        return tuple(vals) if origin is tuple else vals
    if tp is bool:
        low = text.lower()
        if low in _TRUE:
            return True
        if low in _FALSE:
            return False
        raise UsageError(f"{key} expects true/false; got {text!r}")
    if tp is int:
        try:
            return int(text)
        except ValueError:
            raise UsageError(f"{key} expects an integer; got {text!r}") from None
    if tp is float:
        try:
            return float(text)
        except ValueError:
            raise UsageError(f"{key} expects a number; got {text!r}") from None
    if tp is str:
        return text
    raise UsageError(f"{key}: cannot set a value of type {tp} from the command line")


def split_assignment(text: str, cls, what: str = "key", usage: str = "--set expects key=value") -> tuple[str, str]:
    """``"key=value"`` -> (key, value) for a field ``key`` of the config dataclass ``cls``, else UsageError."""
    if "=" not in text:
        raise UsageError(f"{usage}, got {text!r}")
    key, value = (part.strip() for part in text.split("=", 1))
    names = [f.name for f in dataclasses.fields(cls)]
    if key not in names:
        raise UsageError(f"unknown {what} {key!r}; valid keys: {', '.join(names)}")
    return key, value


def override(config: Any, assignments: typing.Iterable[str]) -> Any:
    """A copy of the frozen dataclass ``config`` with ``key=value`` assignments applied and type-checked.

    Raises :class:`UsageError` on an unknown key, a malformed assignment or a value of the wrong type, and
    whatever the config's own validation (``__post_init__``) raises as ``ValueError``, re-raised as UsageError.
    """
    hints = get_type_hints(type(config))
    changes = {}
    for a in assignments:
        key, text = split_assignment(a, type(config))
        changes[key] = _parse(text, hints[key], key)
    try:
        return dataclasses.replace(config, **changes)
    except (ValueError, TypeError) as e:
        raise UsageError(str(e)) from None


def to_dict(config: Any) -> dict:
    """A JSON-ready dict of a config dataclass (tuples become lists)."""
    return dataclasses.asdict(config)


def to_assignments(config: Any) -> list[str]:
    """``key=value`` strings that rebuild ``config`` exactly with :func:`override` from any instance of its class
    (tuples as comma lists, None as ``none``, floats in their shortest exact ``repr``)."""

    def fmt(v) -> str:
        if v is None:
            return "none"
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, (tuple, list)):
            return ",".join(fmt(x) for x in v)
        return repr(v) if isinstance(v, float) else str(v)

    return [f"{f.name}={fmt(getattr(config, f.name))}" for f in dataclasses.fields(config)]
