"""Frozen config dataclasses, overridden from the command line with type checks (``--set key=value``), and
validated before anything runs (:func:`validate`).

Conventions every experiment config follows, checked here once for all of them:

* numbers are finite, below 2^31 (integers) or 1e12 (floats) in size, and > 0, except the fields in
  :data:`ZERO_OK` (seeds, class indices, momentum, GPU counts), which may be 0;
* strings are not empty; the lists that name runs or levels (:data:`DISTINCT`) hold distinct values;
* where it runs (:func:`check_machine`; a sweep submitted from a login node may name GPUs or paths that only the
  compute nodes have): ``device`` is a device of the machine, fields named ``*_root`` are existing folders,
  ``*_file`` and ``pretrained`` existing files;
* ``seed`` is the (first) initialisation seed; a ``seeds`` count runs seeds ``seed .. seed + seeds - 1``.
"""

from __future__ import annotations

import dataclasses
import math
import os
import types
import typing
from pathlib import Path
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
        parts = text.split(",")
        if not text.strip() or any(not p.strip() for p in parts):
            raise UsageError(f"{key} expects a comma-separated list, e.g. {key}=1,10,100; got {text!r}")
        vals = [_parse(p.strip(), inner, key) for p in parts]
        return tuple(vals) if origin is tuple else vals
    if tp is bool:
        if text.lower() not in _TRUE | _FALSE:
            raise UsageError(f"{key} expects true/false; got {text!r}")
        return text.lower() in _TRUE
    if tp in (int, float):
        try:
            return tp(text)
        except ValueError:
            raise UsageError(f"{key} expects {'an integer' if tp is int else 'a number'}; got {text!r}") from None
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
        config = dataclasses.replace(config, **changes)
    except (ValueError, TypeError) as e:
        raise UsageError(str(e)) from None
    validate(config)
    return config


ZERO_OK = frozenset({"seed", "data_seed", "momentum", "gpus_per_run", "positive", "negative"})
MAX_INT, MAX_FLOAT = 2**31 - 1, 1e12


def _check_number(key: str, v) -> None:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return
    low = 0 if key in ZERO_OK else None
    if not math.isfinite(v):
        raise UsageError(f"{key} must be a finite number, got {v}")
    if abs(v) > (MAX_INT if isinstance(v, int) else MAX_FLOAT):
        raise UsageError(f"{key} = {v:g} is out of range (at most {MAX_INT if isinstance(v, int) else MAX_FLOAT:g})")
    if (low is None and not v > 0) or (low is not None and v < low):
        raise UsageError(f"{key} must be {'>= 0' if low is not None else '> 0'}, got {v:g}")


def check_device(device: str, key: str = "device") -> None:
    """A device string torch understands and this machine has (else :class:`UsageError`)."""
    import torch

    try:
        dev = torch.device(device)
    except (RuntimeError, ValueError):
        raise UsageError(f"{key}: {device!r} is not a device (cpu, cuda, cuda:1, mps, ...)") from None
    if dev.type == "cuda":
        n = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if (dev.index or 0) >= n:
            raise UsageError(f"{key}={device} but this machine has {n} CUDA device(s) visible to torch; "
                             "use device=cpu")
    elif dev.type == "mps" and not torch.backends.mps.is_available():
        raise UsageError(f"{key}={device} but MPS is not available here; use device=cpu")
    elif dev.type not in ("cpu", "cuda", "mps"):
        raise UsageError(f"{key}={device}: lazyhasty runs on cpu, cuda or mps")


DISTINCT = frozenset({"alphas", "sqrt_h_alphas", "thresholds", "ratios"})  # values that name runs or levels


def validate(config: Any) -> None:
    """Every field of a config dataclass by the conventions above; raises :class:`UsageError` naming the field
    and the value. The lists in :data:`DISTINCT` name runs or levels: their values must differ as they print (6
    significant digits), or two runs would claim one folder."""
    for f in dataclasses.fields(config):
        key, v = f.name, getattr(config, f.name)
        if key in DISTINCT and isinstance(v, (tuple, list)) and len({f"{x:g}" for x in v}) != len(v):
            raise UsageError(f"{key} must list distinct values (as printed, 6 significant digits), got "
                             f"{', '.join(f'{x:g}' for x in v)}")
        for x in v if isinstance(v, (tuple, list)) else (v,):
            _check_number(key, x)
        if isinstance(v, str):
            if not v.strip():
                raise UsageError(f"{key} must not be empty")


def check_machine(config: dict) -> None:
    """What depends on the machine that runs a config (a dict of its fields), checked there before anything runs:
    its ``device`` exists, its ``*_root`` folders and ``*_file`` / ``pretrained`` files exist and are readable."""
    for key, v in config.items():
        if not isinstance(v, str):
            continue
        if key == "device":
            check_device(v)
        elif key.endswith("_root") and not Path(v).is_dir():
            raise UsageError(f"{key}={v}: no such folder")
        elif (key.endswith("_file") or key == "pretrained") and not Path(v).is_file():
            raise UsageError(f"{key}={v}: no such file")
        if (key.endswith(("_root", "_file")) or key == "pretrained") and not os.access(v, os.R_OK):
            raise UsageError(f"{key}={v}: not readable")


def changed_fields(config: Any) -> dict:
    """The fields of a config dataclass that differ from its class defaults, JSON-ready (what identifies a job:
    adding a field with a default changes nothing here)."""
    out = {}
    for f in dataclasses.fields(config):
        default = f.default if f.default is not dataclasses.MISSING else (
            f.default_factory() if f.default_factory is not dataclasses.MISSING else dataclasses.MISSING)
        v = getattr(config, f.name)
        if default is dataclasses.MISSING or v != default:
            out[f.name] = list(v) if isinstance(v, tuple) else v
    return out


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
