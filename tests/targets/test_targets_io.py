"""Writer and reader: round trip, layout, ecosystem loading, bad rows, resume, crash leftovers."""

from __future__ import annotations

import json

import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest
from targets_rows import make_rows

from mixsd.errors import MixsdError
from mixsd.targets.reader import iter_batches, iter_rows, lams, read_manifest
from mixsd.targets.schema import IGNORE_PREFIXES, SCHEMA, format_lam, partitioning
from mixsd.targets.validate import validate
from mixsd.targets.writer import TargetSetWriter, existing_keys, parse_shard


def test_round_trip_equal_including_nulls_and_lists(small_set):
    root, rows = small_set
    assert list(iter_rows(root)) == rows  # ordered by λ then part; rows were written in order
    assert lams(root) == [0.3, 1.0]
    manifest = read_manifest(root)
    assert manifest["rows"] == 35
    assert sorted(p["rows"] for p in manifest["parts"]) == [5, 10, 10, 10]
    assert {p["path"].split("/")[0] for p in manifest["parts"]} == {"lam=0.3", "lam=1"}
    batch = next(iter_batches(root))
    assert batch.schema.equals(SCHEMA)


def test_file_metadata_holds_version_and_provenance(small_set, provenance):
    root, _ = small_set
    part = read_manifest(root)["parts"][0]
    meta = pq.read_schema(root / part["path"]).metadata
    assert meta[b"mixsd.schema_version"] == b"1"
    prov = json.loads(meta[b"mixsd.provenance"])
    assert prov["tokenizer"] == provenance["tokenizer"] and prov["lam"] == part["lam"]
    assert prov["mixsd_version"] and prov["created"]


def test_row_groups_are_streaming_sized(small_set):
    root, _ = small_set
    part = read_manifest(root)["parts"][0]
    meta = pq.read_metadata(root / part["path"])
    assert meta.num_row_groups == 3  # 10 rows, groups of 4


def test_column_selection_lam_and_correct_filters(small_set):
    root, rows = small_set
    got = list(iter_rows(root, lams=[1.0], columns=["sample", "id"]))
    assert got == [{"sample": r["sample"], "id": r["id"]} for r in rows if r["lam"] == 1.0]
    got = [r["id"] for r in iter_rows(root, columns=["id"], filter_correct=True)]
    assert got == [r["id"] for r in rows if r["correct"] is True]
    with pytest.raises(MixsdError, match="unknown columns"):
        next(iter_batches(root, columns=["nope"]))


def test_lam_formatting_is_canonical():
    assert [format_lam(x) for x in (0.3, 0, 1, 1.0, 0.25)] == ["0.3", "0", "1", "1", "0.25"]
    assert format_lam(None) == "__HIVE_DEFAULT_PARTITION__"
    assert parse_shard("1/4") == parse_shard("1-of-4") == "1-of-4"
    with pytest.raises(MixsdError):
        parse_shard("4-of-4")


def test_datasets_and_pyarrow_see_lam_as_a_column(tmp_path, small_set, provenance):
    import datasets

    root, rows = small_set
    cache = str(tmp_path / "hf-cache")
    loaded = datasets.load_dataset("parquet", data_dir=str(root), split="train", cache_dir=cache)
    assert sorted(loaded["lam"]) == sorted(r["lam"] for r in rows)
    assert loaded.features["lam"].dtype == "float64"
    table = ds.dataset(root, partitioning=partitioning(), ignore_prefixes=IGNORE_PREFIXES).to_table(
        filter=ds.field("lam") == 1.0
    )
    assert table.num_rows == 10 and table.schema.field("lam").type == pa.float64()
    assert (
        ds.dataset(root, ignore_prefixes=IGNORE_PREFIXES).to_table().num_rows == 35
    )  # λ from files
    with pytest.raises(pa.ArrowTypeError, match="lam"):  # hive infers a string λ: the documented
        ds.dataset(
            root, partitioning="hive", ignore_prefixes=IGNORE_PREFIXES
        )  # conflict with the float column in the files

    sft = tmp_path / "sft"
    with TargetSetWriter(sft, {**provenance, "kind": "sft"}) as w:
        w.write(make_rows(4, lam=None))
    assert (sft / "lam=__HIVE_DEFAULT_PARTITION__").is_dir()
    assert (
        ds.dataset(sft, partitioning=partitioning(), ignore_prefixes=IGNORE_PREFIXES)
        .to_table()["lam"]
        .null_count
        == 4
    )
    loaded = datasets.load_dataset("parquet", data_dir=str(sft), split="train", cache_dir=cache)
    assert loaded["lam"] == [None] * 4
    assert lams(sft) == [None] and validate(sft) == ([], 4)


@pytest.mark.parametrize(
    "change, message",
    [
        ({"lam": 1.5}, "outside \\[0, 1\\]"),
        ({"lam": None}, "lam is null on a 'mixsd' row"),
        ({"kind": "sft"}, "on an 'sft' row"),
        ({"source": [1]}, "len\\(source\\)=1"),
        ({"expert_logprob": [0.0] * 30}, "len\\(expert_logprob\\)=30"),
        ({"finish_reason": "eos"}, "finish_reason 'eos'"),
        ({"id": None}, "id is null"),
        ({"colour": 1}, "unknown columns \\['colour'\\]"),
        ({"sample": "zero"}, "do not fit schema v1"),
    ],
)
def test_writer_refuses_bad_rows(tmp_path, provenance, change, message):
    row = {**make_rows(2)[1], **change}
    with pytest.raises(MixsdError, match=message):
        with TargetSetWriter(tmp_path / "s", provenance) as w:
            w.write([row])


def test_resume_keys_and_provenance_check(small_set, provenance):
    root, rows = small_set
    assert existing_keys(root) == {(r["id"], r["sample"], r["lam"]) for r in rows}
    assert existing_keys(root.parent / "absent") == set()
    # Reopening with the same provenance (later creation time, other λ list) appends.
    with TargetSetWriter(root, {**provenance, "lams": [0.5], "created": "later"}) as w:
        w.write(make_rows(3, 0.5, start=500))
    assert len(existing_keys(root)) == 38 and lams(root) == [0.3, 0.5, 1.0]
    other = {**provenance, "sampling": {**provenance["sampling"], "top_p": 0.9}}
    with pytest.raises(MixsdError, match="'sampling.top_p' is 1.0 vs 0.9"):
        TargetSetWriter(root, other)
    with pytest.raises(MixsdError, match="'tokenizer'"):
        TargetSetWriter(root, {**provenance, "tokenizer": "sha256:other"})


def test_provenance_is_compared_as_json(tmp_path, provenance):
    root = tmp_path / "s"
    TargetSetWriter(root, {**provenance, "stop": ("<|im_end|>",), "out": tmp_path}).close()
    TargetSetWriter(root, {**provenance, "stop": ["<|im_end|>"], "out": str(tmp_path)}).close()
    assert read_manifest(root)["provenance"]["out"] == str(tmp_path)


def test_stats_are_kept_per_shard(tmp_path, provenance):
    root = tmp_path / "s"
    for shard in ("0/2", "1/2"):
        with TargetSetWriter(root, provenance, shard=shard) as w:
            w.write(make_rows(2, start=10 * int(shard[0])))
            w.add_stats({"retries": int(shard[0])})
            w.add_stats({"seconds": 1.5})
    assert read_manifest(root)["stats"] == {
        "0-of-2": {"retries": 0, "seconds": 1.5},
        "1-of-2": {"retries": 1, "seconds": 1.5},
    }


def test_crash_leftovers_ignored_by_readers_and_recovered_by_the_shard(small_set, provenance):
    root, rows = small_set
    listed = read_manifest(root)["parts"][0]["path"]
    # A crash after the rename, before the manifest update: a complete part nobody lists ...
    orphan = root / "lam=0.3" / "part-0-of-1-00009.parquet"
    orphan.write_bytes((root / listed).read_bytes())
    # ... and a crash mid-write: a half-written temporary.
    half = root / "lam=0.3" / ".part-0-of-1-00010.parquet.tmp"
    half.write_bytes(b"PAR1 half")
    assert len(list(iter_rows(root))) == 35
    problems, _ = validate(root)
    assert any("not in the manifest" in p and orphan.name in p for p in problems)
    assert any("half-written" in p for p in problems)
    # The same shard reopening cleans up after itself: temp deleted, complete part adopted.
    TargetSetWriter(root, provenance).close()
    assert not half.exists()
    assert f"lam=0.3/{orphan.name}" in {p["path"] for p in read_manifest(root)["parts"]}
    problems, n = validate(root)
    assert n == 45 and len(problems) == 1 and "appears 2 times" in problems[0]  # copied rows


def test_writer_exception_keeps_buffer_out(tmp_path, provenance):
    root = tmp_path / "s"
    with pytest.raises(RuntimeError):
        with TargetSetWriter(root, provenance) as w:
            w.write(make_rows(3))
            raise RuntimeError("engine died")
    assert read_manifest(root)["parts"] == [] and existing_keys(root) == set()
