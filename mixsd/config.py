"""Stage configs: one dataclass per stage, loaded from YAML and overridden by command-line flags.

Every stage defines a `@dataclass` whose fields are its options and whose `__post_init__` holds all
of its checks (the one place they live). `load_config` builds it from a YAML file plus the flags the
user actually passed (`None` means "not given"), coercing strings such as `--lam 0,0.3,0.5` to the
field's declared type, and turns every mistake into a one-line `MixsdError`. Every float option
must be finite (checked here, once for all stages); ranges are each stage's `__post_init__`.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

import yaml

from mixsd.errors import MixsdError

T = TypeVar("T")


def load_config(cls: type[T], path: str | Path | None = None, **overrides: Any) -> T:
    """Build `cls` from the YAML mapping at `path` (optional), then the non-None `overrides`."""
    values: dict[str, Any] = {}
    source = "command line"
    if path is not None:
        source = str(path)
        values = read_yaml_mapping(Path(path))
    values.update({k: v for k, v in overrides.items() if v is not None})
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(values) - names)
    if unknown:
        raise MixsdError(
            f"{source}: unknown option '{unknown[0]}' (expected one of: {', '.join(sorted(names))})"
        )
    try:
        coerced = {k: coerce(v, hints[k], k) for k, v in values.items()}
        return cls(**coerced)
    except TypeError as e:  # a required field is missing
        raise MixsdError(f"{source}: {e}") from None
    except ValueError as e:
        raise MixsdError(f"{source}: {e}") from None


def read_yaml_mapping(path: Path) -> dict[str, Any]:
    """The top-level mapping of a YAML file ({} when empty); one-line MixsdError otherwise."""
    if not path.is_file():
        raise MixsdError(f"{path}: file not found")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as e:
        marked = isinstance(e, yaml.MarkedYAMLError) and e.problem_mark is not None
        where = f" line {e.problem_mark.line + 1}:" if marked else ""
        raise MixsdError(f"{path}:{where} invalid YAML") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise MixsdError(f"{path}: expected a mapping at the top level")
    return data


def coerce(value: Any, hint: Any, name: str) -> Any:
    """Convert `value` to type `hint` (str, int, float, bool, Path, list/tuple of those, Optional)."""
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        return coerce(value, inner[0], name)
    if origin in (list, tuple):
        item_type = args[0] if args else str
        # "0,0.3,0.5" is a list of numbers; a string item may itself hold commas (SET:lam=0.3,0.5)
        if isinstance(value, str):
            items = value.split(",") if item_type in (int, float) else [value]
        else:
            items = value
        if not isinstance(items, (list, tuple)):
            raise ValueError(f"option '{name}': expected a list, got {value!r}")
        out = [
            coerce(v.strip() if isinstance(v, str) else v, item_type, name)
            for v in items
            if v != ""
        ]
        return tuple(out) if origin is tuple else out
    if hint is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in {"true", "1", "yes", "false", "0", "no"}:
            return value.lower() in {"true", "1", "yes"}
        raise ValueError(f"option '{name}': expected true or false, got {value!r}")
    if hint in (int, float):
        if isinstance(value, bool):
            raise ValueError(f"option '{name}': expected a number, got {value!r}")
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise ValueError(f"option '{name}': expected {hint.__name__}, got {value!r}") from None
        if hint is int:
            if not number.is_integer():  # batch_size: 1.5 must not become 1
                raise ValueError(f"option '{name}': expected int, got {value!r}")
            return int(number)
        if not math.isfinite(number):  # NaN is not JSON, and no option means infinity
            raise ValueError(f"option '{name}': expected a finite number, got {value!r}")
        return number
    if hint is Path:
        return Path(value)
    if hint is str:
        return str(value)
    return value


def to_dict(config: Any) -> dict[str, Any]:
    """A YAML/JSON-friendly dict of a config (Paths as strings), for provenance and run records."""
    out = {}
    for k, v in dataclasses.asdict(config).items():
        out[k] = str(v) if isinstance(v, Path) else list(v) if isinstance(v, tuple) else v
    return out
