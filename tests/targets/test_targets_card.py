"""The dataset card: written with every manifest, and `datasets.load_dataset(SET, "lam=0.3")`
reads exactly that λ's rows from the folder."""

from __future__ import annotations

import yaml
from targets_rows import make_rows

from mixsd.outputs import check_output
from mixsd.targets.card import render
from mixsd.targets.manifest import read_manifest
from mixsd.targets.validate import validate
from mixsd.targets.writer import TargetSetWriter


def test_card_loads_by_lam_with_datasets(tmp_path, small_set, provenance):
    from datasets import load_dataset

    root, rows = small_set
    with TargetSetWriter(root, provenance, rows_per_part=10, shard="1-of-2") as w:
        w.write(make_rows(6, None, start=200))  # SFT rows (λ null) beside the two λ
    text = (root / "README.md").read_text(encoding="utf-8")
    assert text == render(read_manifest(root))  # rewritten with the last manifest write
    head = yaml.safe_load(text.split("---\n")[1])
    assert head["license"] == "unknown"
    assert [c["config_name"] for c in head["configs"]] == ["default", "lam=0.3", "lam=1", "sft"]
    assert "mixsd targets validate" in text and "| `lam=0.3` | 0.3 | 25 |" in text
    assert validate(root)[0] == [] and check_output(root, "target set") == root
    cache = str(tmp_path / "hf-cache")
    for config, want in (("lam=0.3", 25), ("lam=1", 10), ("sft", 6), ("default", 41)):
        ds = load_dataset(str(root), config, split="train", cache_dir=cache)
        assert len(ds) == want, config
    ds = load_dataset(str(root), "lam=0.3", split="train", cache_dir=cache)
    assert set(ds["lam"]) == {0.3}
    assert sorted(ds["id"]) == sorted(r["id"] for r in rows if r["lam"] == 0.3)
    assert ds.sort("id")[0]["target_ids"] == next(r for r in rows if r["id"] == "ex0")["target_ids"]


def test_stats_summary_sums_the_shards():
    from mixsd.targets.card import stats_summary

    stats = {
        "0-of-2": {"attempts": 6, "accepted": 4, "tokens": 40, "naive_tokens": 10, "seconds": 2},
        "1-of-2": {"attempts": 4, "accepted": 4, "tokens": 10, "naive_tokens": 5, "seconds": 1.4},
    }
    assert stats_summary(stats) == (
        "8 of 10 attempts passed the answer check (80.0%); naive-token share 30.0%; "
        "prompts too long: 0; 3 s of decoding over 2 shard(s)"
    )
    assert stats_summary({"merged_from": {}}).startswith("no generation counts")
