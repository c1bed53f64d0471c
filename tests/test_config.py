"""The stage-config loader: YAML, flag overrides, type coercion, one-line errors."""

import typing
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from mixsd.config import load_config, to_dict
from mixsd.errors import MixsdError


@dataclass
class Demo:
    model: str
    lams: list[float] = field(default_factory=lambda: [0.0])
    batch_size: int = 8
    out: Path = Path("out")
    fast: bool = False
    shard: str | None = None

    def __post_init__(self):
        if any(not 0 <= x <= 1 for x in self.lams):
            raise ValueError(f"lam must be in [0, 1], got {self.lams}")


def test_yaml_then_flags_override(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("model: m1\nlams: [0, 0.5]\nbatch_size: 4\n")
    cfg = load_config(Demo, path, batch_size="16", lams="0.3,0.7", fast="true", shard=None)
    assert cfg == Demo(model="m1", lams=[0.3, 0.7], batch_size=16, fast=True)
    assert to_dict(cfg)["out"] == "out"


def test_flags_alone():
    cfg = load_config(Demo, None, model="m", out="x/y")
    assert cfg.out == Path("x/y") and cfg.lams == [0.0]


@pytest.mark.parametrize(
    ("yaml_text", "overrides", "message"),
    [
        ("model: m\nbogus: 1\n", {}, "unknown option 'bogus'"),
        ("model: m\n", {"batch_size": "many"}, "option 'batch_size': expected int"),
        ("model: m\nbatch_size: 1.5\n", {}, "option 'batch_size': expected int, got 1.5"),
        ("model: m\n", {"lams": "0.3,2"}, "lam must be in [0, 1]"),
        ("model: m\n", {"fast": "perhaps"}, "option 'fast': expected true or false"),
        ("lams: [0.1]\n", {}, "missing 1 required positional argument: 'model'"),
        ("model: [unclosed\n", {}, "invalid YAML"),
        ("- a\n- b\n", {}, "expected a mapping"),
    ],
)
def test_errors_are_one_line_and_name_the_file(tmp_path, yaml_text, overrides, message):
    path = tmp_path / "c.yaml"
    path.write_text(yaml_text)
    with pytest.raises(MixsdError) as info:
        load_config(Demo, path, **overrides)
    text = str(info.value)
    assert message in text and str(path) in text and "\n" not in text


def test_missing_file():
    with pytest.raises(MixsdError, match="file not found"):
        load_config(Demo, "/nonexistent/c.yaml")


@dataclass
class Paths:
    targets: list[str] = field(default_factory=list)


def test_string_lists_are_not_split_on_commas(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("targets: SET:lam=0.3,0.5\n")
    assert load_config(Paths, path).targets == ["SET:lam=0.3,0.5"]
    assert load_config(Paths, None, targets=["a", "b"]).targets == ["a", "b"]


def test_every_cli_flag_is_a_config_field():
    """The commands pass their flags to `load_config` by name (`**locals()`): each parameter of a
    command must be a field of its stage's config, or every run would fail as an unknown option."""
    import dataclasses
    import inspect

    from mixsd.cli import data, evaluate, generate, model, train
    from mixsd.data.config import KGFactConfig, KGFuncConfig, TinyModelConfig
    from mixsd.evaluate.config import EvaluateConfig
    from mixsd.generate.config import GenerateConfig
    from mixsd.recipes.toy import ToyConfig
    from mixsd.train.config import TrainConfig

    pairs = [(train.train, TrainConfig), (generate.generate, GenerateConfig),
             (evaluate.evaluate, EvaluateConfig), (data.kgfact, KGFactConfig), (data.kgfunc, KGFuncConfig),
             (model.tiny, TinyModelConfig), (model.toy, ToyConfig)]  # fmt: skip
    from mixsd.config import nested_configs

    for command, cls in pairs:
        fields = {f.name for f in dataclasses.fields(cls)}
        fields |= {f.name for sub in nested_configs(cls).values() for f in dataclasses.fields(sub)}
        params = set(inspect.signature(command).parameters) - {"config", "stop_after"}
        assert params <= fields, (command.__name__, params - fields)


def _invoke(monkeypatch, module, name, args):
    """Run `mixsd ARGS` with the stage's entry function `module.name` replaced: the config (and
    extra keywords) it was given."""
    from typer.testing import CliRunner

    from mixsd.cli import app

    seen = {}
    # train's precheck opens the model and the sets before any work: here they are only names
    monkeypatch.setattr("mixsd.cli.train._precheck", lambda cfg: None)
    monkeypatch.setattr(module, name, lambda cfg, *a, **kw: seen.update(cfg=cfg, kw=kw) or {})
    result = CliRunner().invoke(app, [str(a) for a in args])
    assert "cfg" in seen, result.output
    return seen


def test_flags_not_given_leave_the_dataclass_defaults(monkeypatch, tmp_path):
    """The flags are derived from the config fields and default to "not given": a command with
    only the required options builds exactly the dataclass's defaults; the help shows them."""
    import mixsd.data.kgfact
    import mixsd.evaluate.run
    import mixsd.train
    from mixsd.data.config import KGFactConfig
    from mixsd.evaluate.config import EvaluateConfig
    from mixsd.train.config import TrainConfig

    seen = _invoke(monkeypatch, mixsd.train, "run", ["train", "--model", "m", "--out", tmp_path,
                                                      "--targets", "s"])  # fmt: skip
    assert seen["cfg"] == TrainConfig(model="m", out=tmp_path, targets=["s"])
    assert seen["kw"] == {"stop_after": None}
    seen = _invoke(monkeypatch, mixsd.evaluate.run, "evaluate",
                   ["evaluate", "--base", "b", "--out", "o", "--suite", "world"])  # fmt: skip
    assert seen["cfg"] == EvaluateConfig(base="b", out="o", suites=["world"])
    seen = _invoke(monkeypatch, mixsd.data.kgfact, "build", ["data", "kgfact"])
    assert seen["cfg"] == KGFactConfig()

    from typer.testing import CliRunner

    from mixsd.cli import app

    text = " ".join(
        CliRunner().invoke(app, ["generate", "--help"], env={"COLUMNS": "300"}).output.split()
    )
    for shown in ("greedy. (default: 0.6)", "(default: 0.0,0.3,0.5)", "else boxed,number)",
                  "conditional. (default: on)"):  # fmt: skip
        assert shown in text, shown


def test_flags_override_the_yaml_and_reach_nested_options(monkeypatch, tmp_path):
    """`--rollouts` lands in the YAML's `opsd:` mapping over its value; a repeatable flag, a
    comma list, a switch and the call-only `--stop-after` arrive as typed values."""
    import mixsd.train

    path = tmp_path / "c.yaml"
    path.write_text("method: opsd\nopsd:\n  rollouts: 2\n  divergence: jsd\n")
    seen = _invoke(monkeypatch, mixsd.train, "run",
                   ["train", "--config", path, "--model", "m", "--out", tmp_path, "--input", "x",
                    "--rollouts", "3", "--answer-methods", "boxed,contains", "--adam-betas",
                    "0.8,0.9", "--export-every-epoch", "--stop-after", "2"])  # fmt: skip
    cfg = seen["cfg"]
    assert (cfg.opsd.rollouts, cfg.opsd.divergence, str(cfg.opsd.input)) == (3, "jsd", "x")
    assert cfg.answer_methods == ["boxed", "contains"] and cfg.adam_betas == [0.8, 0.9]
    assert cfg.export_every_epoch is True and seen["kw"] == {"stop_after": 2}


def test_comma_separated_answer_methods_from_a_flag():
    from mixsd.generate.config import GenerateConfig

    cfg = load_config(
        GenerateConfig, model="m", input="i", out="o", answer_methods="boxed,contains"
    )
    assert cfg.answer_methods == ["boxed", "contains"]


def _float_fields():
    """(config class, field) for every float option of every command (lists of floats too)."""
    import dataclasses
    import typing

    from mixsd.data.config import KGFactConfig, KGFuncConfig
    from mixsd.evaluate.config import EvaluateConfig
    from mixsd.generate.config import GenerateConfig
    from mixsd.train.config import TrainConfig

    classes = [GenerateConfig, TrainConfig, EvaluateConfig, KGFactConfig, KGFuncConfig]
    out = []
    for cls in classes:
        hints = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            if "float" in str(hints[f.name]):
                out.append((cls, f.name))
    return out


@pytest.mark.parametrize(("cls", "name"), _float_fields())
@pytest.mark.parametrize("value", ["nan", "inf", "-inf", float("nan"), "0.5,nan"])
def test_every_float_option_must_be_finite(cls, name, value):
    is_list = "list" in str(typing.get_type_hints(cls)[name])
    if isinstance(value, float) and is_list:
        value = [value]  # a list option takes a list from YAML
    if value == "0.5,nan" and not is_list:
        value = "+nan"
    with pytest.raises(MixsdError) as info:
        load_config(cls, None, **{name: value})
    text = str(info.value)
    assert f"option '{name}'" in text and "finite" in text and "\n" not in text


def test_float_fields_found():
    names = {n for _, n in _float_fields()}
    assert {"temperature", "top_p", "lam", "lr"} <= names


def test_nan_in_yaml_is_refused(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("model: m\nlams: [0.1, .nan]\n")
    with pytest.raises(MixsdError, match=r"option 'lams': expected a finite number, got nan"):
        load_config(Demo, path)
