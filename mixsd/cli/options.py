"""Commands whose options are a config dataclass's fields: each option is declared once, in the
config (`mixsd.config.option`: default and help), and the flags are derived from it here.

Every flag defaults to None, meaning "not given", so the YAML (`--config`) keeps what the user did
not override; the help ends with the dataclass default. Fields of a nested config
(`TrainConfig.opsd`) are flags at the top level, named as their fields (`load_config` nests them).
Flag types: bool fields are `--x/--no-x` switches, `list[str]` fields are repeatable, lists of
numbers are one comma-separated value (`--lam 0,0.3,0.5`).
"""

from __future__ import annotations

import dataclasses
import inspect
import types
import typing
from collections.abc import Callable
from pathlib import Path
from typing import Any

import typer

CONFIG = inspect.Parameter(
    "config",
    inspect.Parameter.KEYWORD_ONLY,
    default=typer.Option(None, help="YAML file of options (flags override it)."),
    annotation=Path | None,
)


def config_command(
    cls: type, run: Callable[..., None], doc: str, extra: tuple[inspect.Parameter, ...] = ()
) -> Callable[..., None]:
    """A typer command: `--config` and one flag per field of `cls`, then `extra` parameters;
    it calls `run(cfg, **extra values)` with the config `load_config` builds. `doc`: its help."""
    names = [p.name for p in extra]

    def command(**flags: Any) -> None:
        from mixsd.config import load_config

        extras = {name: flags.pop(name) for name in names}
        run(load_config(cls, flags.pop("config"), **flags), **extras)

    command.__doc__ = doc
    command.__signature__ = inspect.Signature([CONFIG, *flag_parameters(cls), *extra])
    return command


def flag_parameters(cls: type) -> list[inspect.Parameter]:
    """One keyword parameter (a typer option, default None) per field of `cls`, nested configs'
    fields in their place."""
    from mixsd.config import nested_configs

    hints = typing.get_type_hints(cls)
    nested = nested_configs(cls)
    params = []
    for f in dataclasses.fields(cls):
        if f.name in nested:
            params += flag_parameters(nested[f.name])
            continue
        kind = _flag_type(hints[f.name])
        names = f.metadata.get("flag") or "--" + f.name.replace("_", "-")
        if kind is bool and "/" not in names:
            names = f"{names}/--no-{names[2:]}"
        shown = _shown(f)
        text = f.metadata.get("help", "") + (f" (default: {shown})" if shown else "")
        option = typer.Option(None, names, help=text, show_default=False)
        params.append(
            inspect.Parameter(
                f.name, inspect.Parameter.KEYWORD_ONLY, default=option, annotation=kind | None
            )
        )
    return params


def _flag_type(hint: Any) -> Any:
    """The flag's type for a field's type: Optional dropped, lists of numbers as a string."""
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        hint = next(a for a in typing.get_args(hint) if a is not type(None))
    if typing.get_origin(hint) is list:
        return list[str] if typing.get_args(hint)[0] is str else str
    return hint


def _shown(f: dataclasses.Field) -> str:
    """The dataclass default as the help shows it; "" when there is none (required, or None
    with its meaning in the help)."""
    from mixsd.config import field_default

    value = field_default(f)
    if value is dataclasses.MISSING or value is None:
        return ""
    if isinstance(value, bool):
        return "on" if value else "off"
    return ",".join(map(str, value)) if isinstance(value, list) else str(value)
