"""Data layer: stored ids, target-only loss span, λ selection, filters, and bad input."""

from __future__ import annotations

import pytest

from mixsd.errors import MixsdError
from mixsd.train.data import load_examples, parse_target_spec

from .conftest import set_rows, write_set


def test_parse_target_spec(tmp_path):
    assert parse_target_spec("a/b") == (tmp_path.__class__("a/b"), None)
    assert parse_target_spec("a/b:lam=0.3,0.5")[1] == [0.3, 0.5]
    with pytest.raises(MixsdError, match="expected SET or SET:lam"):
        parse_target_spec("a:lam=x")


def test_examples_are_the_stored_ids(mixsd_set, tiny_tokenizer):
    examples, stats = load_examples([f"{mixsd_set}:lam=0.5"], tiny_tokenizer, max_len=2048)
    rows = [r for r in set_rows(tiny_tokenizer, 16, "mixsd", 0.5, answer_len=2)]
    assert stats.rows == stats.kept == len(examples) == 16
    by_id = {e.id: e for e in examples}
    for r in rows:
        e = by_id[r["id"]]
        assert e.ids.tolist() == r["prompt_ids"] + r["target_ids"]
        assert e.n_prompt == len(r["prompt_ids"]) and e.answer == r["answer"]


def test_all_lams(mixsd_set, tiny_tokenizer):
    both, stats = load_examples([str(mixsd_set)], tiny_tokenizer, max_len=2048, failed="keep")
    assert len(both) == stats.rows == 32 and stats.failed == 2 * 3  # ids 4, 9, 14 failed


@pytest.mark.parametrize("policy", ["keep", "drop", "reference"])
def test_failed_rows_policy(policy, tmp_path, tiny_tokenizer):
    """A failed row (correct=false) whose target says a wrong answer: kept as it is, dropped, or
    trained on its reference; checked rows and unchecked rows (correct null) are untouched."""
    from mixsd.data.templates import target_ids

    rows = set_rows(tiny_tokenizer, 6, "mixsd", 0.3)  # q4 failed
    rows[5]["correct"] = None  # never checked: always kept
    wrong = tiny_tokenizer.encode("The answer is Q.", add_special_tokens=False)
    rows[4].update(target_ids=wrong, target_text="The answer is Q.", source=[0] * len(wrong))
    rows[4]["reference"] = "Records say: \\boxed{X28}"
    root = write_set(tmp_path / "set", tiny_tokenizer, rows)
    examples, stats = load_examples([str(root)], tiny_tokenizer, max_len=2048, failed=policy)
    by_id = {e.id: e for e in examples}
    assert (stats.failed, stats.failed_policy) == (1, policy)
    for r in rows[:4] + rows[5:]:
        assert by_id[r["id"]].ids.tolist() == r["prompt_ids"] + r["target_ids"]
    if policy == "drop":
        assert "q4" not in by_id and stats.dropped == {"failed answer check": 1}
        assert stats.kept == 5
        return
    target = by_id["q4"].ids[by_id["q4"].n_prompt :].tolist()
    expected = wrong if policy == "keep" else target_ids(tiny_tokenizer, rows[4]["reference"])
    assert target == expected and stats.replaced == (policy == "reference") and stats.kept == 6


def test_failed_row_without_reference_is_one_line(tmp_path, tiny_tokenizer):
    rows = set_rows(tiny_tokenizer, 5, "mixsd", 0.3)
    rows[4]["reference"] = None
    root = write_set(tmp_path / "set", tiny_tokenizer, rows)
    with pytest.raises(MixsdError, match="id q4 failed its answer check and has no reference"):
        load_examples([str(root)], tiny_tokenizer, max_len=2048)


def test_too_long_truncates_with_count_or_refuses(sft_set, tiny_tokenizer):
    full, _ = load_examples([str(sft_set)], tiny_tokenizer, max_len=2048)
    limit = max(e.n_prompt for e in full) + 2
    cut, stats = load_examples([str(sft_set)], tiny_tokenizer, max_len=limit)
    assert stats.truncated == sum(len(e.ids) > limit for e in full) > 0
    assert all(len(e.ids) <= limit and e.n_target >= 2 for e in cut)
    with pytest.raises(MixsdError, match=r"row \d+ \(id q\d+\).*over max_len"):
        load_examples([str(sft_set)], tiny_tokenizer, max_len=limit, too_long="refuse")


def test_bad_sets(tmp_path, sft_set, mixsd_set, tiny_tokenizer):
    with pytest.raises(MixsdError, match="not found"):
        load_examples([str(tmp_path / "nope")], tiny_tokenizer, max_len=2048)
    (tmp_path / "empty").mkdir()
    with pytest.raises(MixsdError, match="not a target set"):
        load_examples([str(tmp_path / "empty")], tiny_tokenizer, max_len=2048)
    with pytest.raises(MixsdError, match=r"λ=0.4 not in the set \(it holds λ: 0.3, 0.5\)"):
        load_examples([f"{mixsd_set}:lam=0.4"], tiny_tokenizer, max_len=2048)
    with pytest.raises(MixsdError, match="SFT set"):
        load_examples([f"{sft_set}:lam=0.3"], tiny_tokenizer, max_len=2048)


def test_tokenizer_mismatch_is_refused(tmp_path, tiny_tokenizer):
    root = write_set(
        tmp_path / "other",
        tiny_tokenizer,
        set_rows(tiny_tokenizer, 2, "sft", None),
        fingerprint="sha256:" + "0" * 64,
    )
    with pytest.raises(MixsdError, match="made with another tokenizer"):
        load_examples([str(root)], tiny_tokenizer, max_len=2048)


def test_overlapping_selections_are_refused(mixsd_set, tiny_tokenizer):
    """The same set twice, or a λ selected twice, would train its rows twice: refused as `targets
    merge` refuses duplicates. Different λ of one set are different rows."""
    for specs in ([str(mixsd_set)] * 2, [str(mixsd_set), f"{mixsd_set}:lam=0.5"]):
        with pytest.raises(
            MixsdError,
            match=r"\(id 'q0', sample 0, λ 0.[35]\) is also in .*"
            "refusing to train on duplicates",
        ):
            load_examples(specs, tiny_tokenizer, max_len=2048)
    both, _ = load_examples(
        [f"{mixsd_set}:lam=0.3", f"{mixsd_set}:lam=0.5"], tiny_tokenizer, max_len=2048
    )
    assert len(both) == 32


def test_a_mixsd_selection_mostly_trained_on_references_is_refused(tmp_path, tiny_tokenizer):
    """4 of 6 λ rows failed their answer check: `--failed reference` would make the run SFT.
    Refused unless allowed; then the share is in the stats. Half exactly is allowed; an SFT set
    beside it does not dilute the MixSD selection's share; other policies replace nothing."""
    rows = set_rows(tiny_tokenizer, 6, "mixsd", 0.3)
    for r in rows:
        r["correct"] = r["id"] not in ("q0", "q1", "q2", "q3")  # q0-q3 failed, q4 and q5 passed
    root = write_set(tmp_path / "set", tiny_tokenizer, rows)
    sft = write_set(tmp_path / "sft", tiny_tokenizer, set_rows(tiny_tokenizer, 6, "sft", None))
    with pytest.raises(
        MixsdError,
        match=r"^--targets .*/set: 4 of 6 MixSD rows \(67%\) failed "
        r"their answer check .* or pass --allow-mostly-reference$",
    ):
        load_examples([str(sft), str(root)], tiny_tokenizer, max_len=2048)
    _, stats = load_examples([str(root)], tiny_tokenizer, 2048, allow_mostly_reference=True)
    assert (stats.replaced, stats.replaced_share) == (4, pytest.approx(4 / 6))
    _, stats = load_examples([str(root)], tiny_tokenizer, 2048, failed="drop")
    assert stats.replaced_share == 0.0 and stats.kept == 2
    rows[3]["correct"] = True
    half = write_set(tmp_path / "half", tiny_tokenizer, rows)
    _, stats = load_examples([str(half)], tiny_tokenizer, max_len=2048)
    assert stats.replaced_share == 0.5
