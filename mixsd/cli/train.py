"""`mixsd train`."""

from __future__ import annotations

import inspect
import sys

import typer

from mixsd.cli.options import config_command
from mixsd.errors import MixsdError
from mixsd.train.config import TrainConfig

STOP_AFTER = inspect.Parameter(
    "stop_after",
    inspect.Parameter.KEYWORD_ONLY,
    default=typer.Option(None, help="Stop (checkpointed) after N steps of this call."),
    annotation=int | None,
)


def _train(cfg: TrainConfig, stop_after: int | None) -> None:
    """`stop_after` belongs to this call only, not to the run's config."""
    from mixsd.train.launch import relaunch, under_launcher

    if not under_launcher():
        _precheck(cfg)  # user errors as one line here, before a model loads or N processes start
    if cfg.nproc > 1 and not under_launcher():
        code = relaunch(cfg.nproc, sys.argv[1:])
        if code:
            raise MixsdError(
                f"training failed in one of the {cfg.nproc} processes (exit code {code}, see above)"
            )
        return
    from mixsd.train import run

    run(cfg, stop_after=stop_after)


train = config_command(
    TrainConfig,
    _train,
    "Fine-tune on target sets (--method nll) or by on-policy self-distillation from an input "
    "set (--method opsd); writes RUN/{config.yaml,metrics.jsonl,checkpoints,model}.",
    extra=(STOP_AFTER,),
)


def _precheck(cfg) -> None:
    from mixsd.data.models import load_tokenizer
    from mixsd.outputs import check_output
    from mixsd.safe_load import safetensors_only
    from mixsd.targets.completeness import require_complete
    from mixsd.targets.provenance import tokenizer_fingerprint
    from mixsd.targets.reader import read_manifest
    from mixsd.train.data import check_selections, parse_target_spec, reference_share

    roots = [parse_target_spec(spec)[0] for spec in cfg.targets]
    opsd = [cfg.opsd.input, cfg.opsd.templates] if cfg.opsd else []
    check_output(cfg.out, "run", [cfg.model, *roots, *opsd, cfg.deepspeed_config])
    tokenizer = load_tokenizer(cfg.model)
    safetensors_only(cfg.model, cfg.allow_pickle)  # a pickled model refused before N processes
    if cfg.method == "opsd":
        from mixsd.data.io import load_records
        from mixsd.data.templates import load_templates

        load_records(cfg.opsd.input)
        load_templates(cfg.opsd.templates)
    check_selections(cfg.targets, tokenizer_fingerprint(tokenizer))
    for root in roots:
        require_complete(root, read_manifest(root), cfg.allow_incomplete)
    reference_share(cfg.targets, cfg.failed, cfg.allow_mostly_reference)
    cfg.micro_and_accumulation(cfg.nproc)
