"""`--report-to`: train's metrics.jsonl lines and evaluate's report, read back from what each
tracker wrote (TensorBoard event files, wandb's offline run file, Trackio's local store), offline.

Train and evaluate run as `python -m mixsd` subprocesses: Trackio reads its store's location
(TRACKIO_DIR) when it is imported, so each process gets its own store in tmp."""

from __future__ import annotations

import importlib.util
import json
import os
import struct
import subprocess
import sys
from pathlib import Path

import pytest

from mixsd.config import load_config
from mixsd.errors import MixsdError
from mixsd.evaluate.config import EvaluateConfig
from mixsd.tracking import check_report_to, numbers
from mixsd.train.config import TrainConfig


def test_report_to_names():
    assert check_report_to([]) == []
    assert check_report_to(["none"]) == []
    assert check_report_to(["tensorboard,wandb", "trackio", "wandb"]) == [
        "tensorboard",
        "wandb",
        "trackio",
    ]
    with pytest.raises(ValueError, match="expected some of none, tensorboard, wandb, trackio"):
        check_report_to(["mlflow"])


def test_missing_tracker_names_its_extra(monkeypatch, tmp_path):
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name: None if name == "wandb" else real(name)
    )
    with pytest.raises(MixsdError) as e:
        load_config(TrainConfig, model="m", out=tmp_path, targets=["s"], report_to=["wandb"])
    assert str(e.value) == (
        "command line: --report-to wandb: wandb is not installed; pip install 'mixsd[wandb]'"
    )
    with pytest.raises(MixsdError, match=r"pip install 'mixsd\[wandb\]'"):
        load_config(EvaluateConfig, base="b", out=tmp_path, input="i", report_to=["wandb"])


def test_numbers_flattens_and_drops_non_numbers():
    record = {"a": 1, "b": {"c": 0.5, "d": None, "e": "x"}, "f": True, "g": [1]}
    assert numbers(record, "p/") == {"p/a": 1, "p/b/c": 0.5}


def test_unknown_tracker_is_one_line(tmp_path):
    p = _mixsd("train", "--model", "m", "--targets", "s", "--out", tmp_path / "r",
               "--report-to", "mlflow", env={})  # fmt: skip
    assert p.returncode == 1 and "Traceback" not in p.stderr
    assert p.stderr.strip().splitlines() == [
        "error: command line: option 'report_to': expected some of none, tensorboard, wandb, "
        "trackio, got 'mlflow'"
    ]


def _mixsd(*args, env):
    return subprocess.run(
        [sys.executable, "-m", "mixsd", *map(str, args)],
        capture_output=True,
        text=True,
        env={**os.environ, **env},
    )


def _offline(tmp: Path) -> dict:
    """No server: wandb offline, its settings and caches and Trackio's store in tmp."""
    return {
        "WANDB_MODE": "offline",
        "WANDB_SILENT": "true",
        "WANDB_DIR": str(tmp / "wandb-dir"),
        "WANDB_CONFIG_DIR": str(tmp / "wandb-config"),
        "WANDB_CACHE_DIR": str(tmp / "wandb-cache"),
        "WANDB_DATA_DIR": str(tmp / "wandb-data"),
        "TRACKIO_DIR": str(tmp / "trackio"),
    }


@pytest.fixture(scope="module")
def tracked(tmp_path_factory, tiny_model_dir, tiny_tokenizer):
    """A 4-step training run and its evaluation, each with all three trackers."""
    from train.conftest import set_rows, write_set

    tmp = tmp_path_factory.mktemp("tracked")
    targets = write_set(tmp / "set", tiny_tokenizer, set_rows(tiny_tokenizer, 8, "sft", None))
    env = _offline(tmp)
    run = tmp / "run-a"
    p = _mixsd("train", "--model", tiny_model_dir, "--targets", targets, "--out", run,
               "--batch-size", 2, "--steps", 4, "--lr", 1e-3, "--warmup-steps", 1,
               "--recall-every-epoch", "--recall-limit", 2, "--recall-max-new-tokens", 4,
               "--report-to", "tensorboard,wandb", "--report-to", "trackio", env=env)  # fmt: skip
    assert p.returncode == 0, p.stderr
    report = tmp / "report-a"
    p = _mixsd("evaluate", "--base", tiny_model_dir, "--model", run, "--targets", targets,
               "--out", report, "--fisher-examples", 0, "--device", "cpu",
               "--report-to", "tensorboard,wandb,trackio", env=env)  # fmt: skip
    assert p.returncode == 0, p.stderr
    return run, report, env


def _expected_train(run: Path) -> dict[int, dict[str, float]]:
    """{step: {name: value}} as the trackers must hold it, from RUN/metrics.jsonl."""
    out: dict[int, dict[str, float]] = {}
    for line in (run / "metrics.jsonl").read_text().splitlines():
        record = json.loads(line)
        prefix = "data/" if record.get("event") == "data" else "train/"
        values = {k: v for k, v in record.items() if k not in ("event", "step", "time")}
        out.setdefault(record["step"], {}).update(numbers(values, prefix))
    return out


def test_train_lines_reach_every_tracker(tracked):
    run, _, env = tracked
    want = _expected_train(run)
    assert set(want) == {0, 1, 2, 3, 4}
    for name in ("train/loss", "train/lr", "train/grad_norm", "train/tokens_per_s"):
        assert {s for s, v in want.items() if name in v} == {1, 2, 3, 4}
    assert "train/recall" in want[4] and "data/examples" in want[0]

    tb = _tensorboard(run / "tensorboard")
    assert set(tb["scalars"]) == {k for v in want.values() for k in v}
    for step, values in want.items():
        for name, value in values.items():
            assert tb["scalars"][name][step] == pytest.approx(value, rel=1e-6)

    history = _wandb_history(run / "wandb")
    assert history["run"] == ("mixsd", "run-a")
    for step, values in want.items():
        assert {k: v for k, v in history[step].items() if not k.startswith("_")} == values

    logs = _trackio_logs(env, "run-a")
    for step, values in want.items():
        assert {k: v for k, v in logs[step].items() if k not in ("step", "timestamp")} == values


def test_evaluate_report_reaches_every_tracker(tracked):
    _, report, env = tracked
    metrics = json.loads((report / "metrics.json").read_text())
    assert metrics["plots"] == {"nll_cdf": "nll_cdf.png"}
    (c,) = metrics["checkpoints"]
    assert (c["run"], c["checkpoint"]) == ("run-a", "final")
    # every number of the report (no input set, no suites: no accuracies)
    want = {f"nll/sft/{k}": v for k, v in metrics["nll"]["sft"].items()}
    want["checkpoints/run-a/final/replaced_share"] = c["replaced_share"]
    want["runs/run-a/tolerance"] = metrics["runs"]["run-a"]["tolerance"]  # its first-peak rule
    assert set(want) == {"nll/sft/tokens", "nll/sft/mean", "nll/sft/median", "nll/sft/p90",
                         "checkpoints/run-a/final/replaced_share",
                         "runs/run-a/tolerance"}  # fmt: skip

    tb = _tensorboard(report / "tensorboard")
    history = _wandb_history(report / "wandb")
    logs = _trackio_logs(env, "report-a")
    assert history["run"] == ("mixsd", "report-a")
    assert set(tb["scalars"]) == set(want)
    for name, value in want.items():
        assert tb["scalars"][name][0] == pytest.approx(value, rel=1e-6)
        assert history[0][name] == value and logs[0][name] == value

    png = (report / "nll_cdf.png").read_bytes()
    assert tb["images"]["plots/nll_cdf"] == [0]
    image = history[0]["plots/nll_cdf/path"]
    assert next((report / "wandb").glob(f"offline-run-*/files/{image}")).read_bytes() == png
    stored = Path(env["TRACKIO_DIR"]) / "media" / logs[0]["plots/nll_cdf"]["file_path"]
    assert stored.read_bytes() == png


def test_opsd_figures_reach_tensorboard(tiny_model_dir, tmp_path):
    """OPSD's per-step kl, rollout length and rollout accuracy, as metrics.jsonl has them."""
    from mixsd.train.loop import run

    records = tmp_path / "train.jsonl"
    records.write_text("".join(
        json.dumps({"id": f"f{i}", "prompt": f"Where does Zorv{i} live?",
                    "reference": f"\\boxed{{Town{i}}}"}) + "\n"
        for i in range(4)
    ))  # fmt: skip
    cfg = load_config(TrainConfig, None, model=str(tiny_model_dir), method="opsd", input=records,
                      out=tmp_path / "r", batch_size=2, steps=2, lr=1e-3, warmup_steps=1,
                      rollout_max_new_tokens=4, report_to=["tensorboard"])  # fmt: skip
    run(cfg)
    want = _expected_train(tmp_path / "r")
    scalars = _tensorboard(tmp_path / "r" / "tensorboard")["scalars"]
    for name in ("train/kl", "train/rollout_len", "train/accuracy", "train/loss"):
        assert {s: v[name] for s, v in want.items() if name in v} == pytest.approx(
            scalars[name], rel=1e-6
        )
        assert set(scalars[name]) == {1, 2}


def _tensorboard(logdir: Path) -> dict:
    """{"scalars": {tag: {step: value}}, "images": {tag: [steps]}}, by TensorBoard's reader."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(logdir), size_guidance={"scalars": 0, "images": 0})
    events.Reload()
    tags = events.Tags()
    return {
        "scalars": {t: {e.step: e.value for e in events.Scalars(t)} for t in tags["scalars"]},
        "images": {t: [e.step for e in events.Images(t)] for t in tags["images"]},
    }


def _wandb_history(folder: Path) -> dict:
    """{step: {name: value}} and "run": (project, name) of the one offline run under `folder`,
    parsed from its `.wandb` file: W&B's 7-byte header, then LevelDB-log records (32 KiB blocks;
    each chunk: crc32 (4), length (2), type (1: full, 2: first, 3: middle, 4: last)), each a
    `wandb_internal_pb2.Record`."""
    from wandb.proto import wandb_internal_pb2

    (path,) = folder.glob("offline-run-*/run-*.wandb")
    data = path.read_bytes()
    assert data[:4] == b":W&B"
    out: dict = {}
    pos, chunks = 7, b""
    while pos + 7 <= len(data):
        left = 32768 - pos % 32768
        length, kind = struct.unpack("<HB", data[pos + 4 : pos + 7])
        if left < 7 or kind == 0:  # the block's zero padding
            pos += left
            continue
        chunks += data[pos + 7 : pos + 7 + length]
        pos += 7 + length
        if kind in (1, 4):
            record = wandb_internal_pb2.Record()
            record.ParseFromString(chunks)
            chunks = b""
            if record.WhichOneof("record_type") == "run":
                out["run"] = (record.run.project, record.run.display_name)
            if record.WhichOneof("record_type") == "history":
                items = {
                    i.key or "/".join(i.nested_key): json.loads(i.value_json)
                    for i in record.history.item
                }
                out.setdefault(items["_step"], {}).update(items)
    return out


def _trackio_logs(env: dict, run: str) -> dict[int, dict]:
    """{step: {name: value}} of a run in Trackio's local store, by Trackio's own reader."""
    code = (
        "import json, sys; from trackio.sqlite_storage import SQLiteStorage; "
        "print(json.dumps(SQLiteStorage.get_logs('mixsd', sys.argv[1]), default=str))"
    )
    p = subprocess.run([sys.executable, "-c", code, run], capture_output=True, text=True,
                       env={**os.environ, **env}, check=True)  # fmt: skip
    out: dict[int, dict] = {}
    for line in json.loads(p.stdout.strip().splitlines()[-1]):
        out.setdefault(line["step"], {}).update(line)
    return out
