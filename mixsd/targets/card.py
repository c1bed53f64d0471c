"""The set's dataset card: `SET/README.md` with Hugging Face's YAML header, so the folder
describes itself and loads by λ with `datasets.load_dataset(SET, "lam=0.3")`, from disk or
from a hub after a plain upload of the folder.

The header declares one config per λ held (`lam=0.3`, ...; `sft` for the SFT rows, λ null) and
`default` with every row, each a `data_files` glob over the parts layout (`lam=*/part-*.parquet`:
writers' temporaries are dot-files, which the glob skips). The body summarises the provenance
and the manifest's counts. The card is a view of the manifest: `write_manifest` rewrites it,
atomically, each time it rewrites the manifest. What no glob can see is whether every planned
part is there (`completeness`): the card says to run `mixsd targets validate` first.
"""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from mixsd.io import write_atomic
from mixsd.targets.completeness import completeness
from mixsd.targets.schema import format_lam, lam_dir

CARD = "README.md"
# The rows are the model's own decodes of the input records: their terms are the model's and the
# data's, which mixsd cannot know. `unknown` is the hub's word for it; the producer edits it.
LICENSE = "unknown"


def config_name(lam: float | None) -> str:
    """The config that selects one λ: `lam=0.3`, or `sft` for the SFT rows (λ null)."""
    return "sft" if lam is None else f"lam={format_lam(lam)}"


def header(lams: list[float | None]) -> dict:
    """The YAML header: license, tags and the configs (`default` = all rows, one per λ)."""
    configs = [_config("default", "lam=*/part-*.parquet")]
    configs += [_config(config_name(lam), f"{lam_dir(lam)}/part-*.parquet") for lam in lams]
    return {"license": LICENSE, "tags": ["mixsd", "self-distillation"], "configs": configs}


def _config(name: str, glob: str) -> dict:
    return {"config_name": name, "data_files": [{"split": "train", "path": glob}]}


def render(manifest: dict) -> str:
    """The card's text for `manifest` (pure: no file is read)."""
    rows: dict[float | None, int] = {}
    for part in manifest["parts"]:
        rows[part["lam"]] = rows.get(part["lam"], 0) + part["rows"]
    lams = sorted(rows, key=lambda lam: (lam is None, lam or 0.0))
    prov = manifest["provenance"]
    problems, note = completeness(manifest)
    state = "; ".join(problems) or note or "complete: every planned row is listed"
    model = prov.get("model") or {}
    lines = [
        "---",
        yaml.safe_dump(header(lams), sort_keys=False, allow_unicode=True).rstrip(),
        "---",
        "",
        f"# mixsd target set (kind: {prov.get('kind', 'mixsd')})",
        "",
        "Targets decoded by MixSD (arXiv 2605.16865) from the base model: per token, the expert "
        "(knowledge in context) or the naive (prompt alone) distribution, naive with probability "
        "λ. Written by mixsd; this card is rewritten with the set's `.manifest.json`.",
        "",
        "**Before reading it with `datasets` or pyarrow, run `mixsd targets validate SET`**: "
        "those readers take every part the globs match and cannot see whether a run was cut "
        f"short or a part is damaged. At the last manifest write: {state}.",
        "",
        "```python",
        "from datasets import load_dataset",
        f'ds = load_dataset("SET", "{config_name(lams[0]) if lams else "default"}", '
        'split="train")  # SET: this folder, or its hub name',
        "```",
        "",
        "Upload as it is (no other step): `hf upload USER/NAME SET . --repo-type dataset` "
        "(older clients: `huggingface-cli upload USER/NAME SET . --repo-type dataset`).",
        "",
        "## Rows",
        "",
        "| config | λ | rows |",
        "|---|---|---|",
        *(
            f"| `{config_name(lam)}` | {'null (SFT)' if lam is None else format_lam(lam)} "
            f"| {rows[lam]} |"
            for lam in lams
        ),
        f"| `default` | all | {sum(rows.values())} |",
        "",
        "Columns: schema v1 (`mixsd/targets/schema.py`): `prompt_ids`, `target_ids` (token ids, "
        "the truth), `target_text`, `source` (per target token, 1 = naive), log-probs, "
        "`finish_reason`, `correct`, `reference`, `answer`.",
        "",
        "## Provenance",
        "",
        f"- model: `{model.get('name')}` (revision {model.get('revision')}, weights "
        f"`{model.get('weights_sha256')}`)",
        f"- tokenizer: `{prov.get('tokenizer')}`",
        f"- templates: {_inline(prov.get('templates'))}",
        f"- sampling: {_inline(prov.get('sampling'))}",
        f"- seed: {prov.get('seed')}; λ planned: {_inline(prov.get('lams'))}",
        f"- engine: {_inline(prov.get('engine'))}; mixsd {prov.get('mixsd_version')}, "
        f"created {prov.get('created')}",
        f"- input: `{prov.get('input')}`",
        "",
        "## Stats",
        "",
        f"- {stats_summary(manifest.get('stats') or {})}",
        f"- per shard (`.manifest.json`): {_inline(manifest.get('stats'))}",
        "",
    ]
    return "\n".join(lines)


_SUMMED = ("attempts", "accepted", "tokens", "naive_tokens", "prompt_too_long", "seconds")


def stats_summary(stats: dict) -> str:
    """One line from the shards' run stats (generate's counts, summed over shards): acceptance
    rate, naive-token share, prompts too long, decoding time."""
    total: dict[str, float] = {}
    for shard in stats.values():
        for key in _SUMMED:
            value = shard.get(key) if isinstance(shard, dict) else None
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                total[key] = total.get(key, 0) + value
    if not total.get("attempts"):
        return "no generation counts (an SFT or merged set: see the per-shard stats)"
    text = (
        f"{total.get('accepted', 0):g} of {total['attempts']:g} attempts passed the answer check "
        f"({total.get('accepted', 0) / total['attempts']:.1%})"
    )
    if total.get("tokens"):
        text += f"; naive-token share {total.get('naive_tokens', 0) / total['tokens']:.1%}"
    text += f"; prompts too long: {total.get('prompt_too_long', 0):g}"
    return text + f"; {total.get('seconds', 0):.0f} s of decoding over {len(stats)} shard(s)"


def _inline(value) -> str:
    return f"`{json.dumps(value, ensure_ascii=False, sort_keys=True)}`"


def write_card(root: Path, manifest: dict) -> None:
    """Rewrite `root/README.md` from `manifest`, atomically."""
    write_atomic(Path(root) / CARD, render(manifest))
