"""Stage configs: one dataclass per stage, loaded from YAML and overridden by command-line flags.

Every stage defines a `@dataclass` whose fields are its options (each declared once, with its
help, by `option`) and whose `__post_init__` holds all of its checks (the one place they live).
`load_config` builds it from a YAML file plus the flags the user actually passed (`None` means
"not given"), coercing strings such as `--lam 0,0.3,0.5` to the field's declared type, and turns
every mistake into a one-line `MixsdError`. Every float option must be finite (checked here, once
for all stages); ranges are each stage's `__post_init__`.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from dataclasses import MISSING, field
from pathlib import Path
from typing import Any, TypeVar

import yaml

from mixsd.errors import MixsdError

T = TypeVar("T")


def option(default: Any = MISSING, help: str = "", *, flag: str | None = None) -> Any:
    """A config field and its command-line help: the one place an option is declared (the CLI
    derives its flags from these, `mixsd.cli.options`). `flag` replaces the default `--field-name`
    (e.g. "--model" for a repeatable `models`, "--x/--no-x" names for a bool). A list default is
    copied for each config. No default: the option is required (flag or YAML)."""
    metadata = {"help": help, "flag": flag}
    if isinstance(default, list):
        return field(default_factory=lambda: list(default), metadata=metadata)
    return field(default=default, metadata=metadata)


def field_default(f: dataclasses.Field) -> Any:
    """The default a config field takes when no one sets it (MISSING for a required one)."""
    return f.default if f.default_factory is MISSING else f.default_factory()


def at_least(config: Any, low: float, *names: str) -> None:
    """The one bound check of the configs: each option in `names` is >= `low` (None: not set)."""
    for name in names:
        value = getattr(config, name)
        if value is not None and value < low:
            raise ValueError(f"option '{name}': expected >= {low}, got {value}")


def load_config(cls: type[T], path: str | Path | None = None, **overrides: Any) -> T:
    """Build `cls` from the YAML mapping at `path` (optional), then the non-None `overrides`.

    A field whose type is itself a config dataclass (`TrainConfig.opsd`) is a mapping in the
    YAML (`opsd: {rollouts: 2}`), while its options come flat from the command line
    (`rollouts=2`, i.e. `--rollouts 2`): they are put into that mapping here.
    """
    values: dict[str, Any] = {}
    source = "command line"
    if path is not None:
        source = str(path)
        values = read_yaml_mapping(Path(path))
    flags = {k: v for k, v in overrides.items() if v is not None}
    for name, sub in nested_configs(cls).items():
        given = {f.name: flags.pop(f.name) for f in dataclasses.fields(sub) if f.name in flags}
        if given:
            section = values.get(name) or {}
            if not isinstance(section, dict):
                raise MixsdError(f"{source}: option '{name}': expected a mapping")
            values[name] = {**section, **given}
    values.update(flags)
    try:
        return build(cls, values)
    except TypeError as e:  # a required field is missing
        raise MixsdError(f"{source}: {e}") from None
    except ValueError as e:
        raise MixsdError(f"{source}: {e}") from None


def build(cls: type[T], values: dict[str, Any], prefix: str = "") -> T:
    """`cls(**values)`, each value coerced to its field's type; ValueError for an unknown key."""
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(values) - names)
    if unknown:
        raise ValueError(
            f"unknown option '{prefix}{unknown[0]}' (expected one of: {', '.join(sorted(names))})"
        )
    return cls(**{k: coerce(v, hints[k], prefix + k) for k, v in values.items()})


def nested_configs(cls: type) -> dict[str, type]:
    """`{field name: its dataclass}` for the fields of `cls` that are configs themselves."""
    hints = typing.get_type_hints(cls)
    out = {}
    for f in dataclasses.fields(cls):
        inner = [a for a in typing.get_args(hints[f.name]) if a is not type(None)] or [
            hints[f.name]
        ]
        if dataclasses.is_dataclass(inner[0]):
            out[f.name] = inner[0]
    return out


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
    if dataclasses.is_dataclass(hint):
        if not isinstance(value, dict):
            raise ValueError(f"option '{name}': expected a mapping, got {value!r}")
        return build(hint, value, prefix=f"{name}.")
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
    """A YAML/JSON-friendly dict of a config (Paths as strings, nested configs as mappings), for
    provenance and run records."""
    return {f.name: _plain(getattr(config, f.name)) for f in dataclasses.fields(config)}


def _plain(value: Any) -> Any:
    if dataclasses.is_dataclass(value):
        return to_dict(value)
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return str(value) if isinstance(value, Path) else value
