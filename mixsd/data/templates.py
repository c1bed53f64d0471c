"""Prompt templates: the only place that knows how a record becomes the expert and naive prompts.

naive user turn  = x
expert user turn = x + PREFIX + "\\n" + c.strip() + TRANSITION      (c = knowledge, default y*)

Both are rendered through the tokenizer's chat template (generation prompt on, thinking off) when
it has one, else through a plain-text template. The templates per record kind are those published
with MixSD (see `DEFAULT_TEMPLATES`) and can be replaced per input set with a YAML file.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from pathlib import Path

from mixsd import answers
from mixsd.config import read_yaml_mapping
from mixsd.data.records import KINDS, Record
from mixsd.errors import MixsdError
from mixsd.modeling import end_of_turn_id

PLAIN_TEMPLATE = "Question: {user}\nAnswer: "
ANSWER_METHODS = "answer_methods"  # the templates file's optional key beside the kinds


@dataclass(frozen=True)
class ExpertTemplate:
    """How the knowledge is put in the expert's user turn."""

    prefix: str
    transition: str

    def user_turn(self, prompt: str, knowledge: str) -> str:
        return prompt + self.prefix + "\n" + knowledge.strip() + self.transition


DEFAULT_TEMPLATES: dict[str, ExpertTemplate] = {
    "fact": ExpertTemplate(
        prefix="\nThis question is from a new knowledge base. Here is the answer to this question:\n",
        transition="\nNow answer the question within \\boxed{}",
    ),
    "function": ExpertTemplate(
        prefix="\nHere is a reference solution to this problem, including the correct final answer:\n",
        transition=(
            "\nAfter understanding the reference solution, please attempt to answer the question "
            "again:\nPlease reason step by step, and put your final answer within \\boxed{}"
        ),
    ),
}


@dataclass(frozen=True)
class PromptPair:
    """Token ids of the two conditionals' prompts for one record (generation prompt included)."""

    naive_ids: list[int]
    expert_ids: list[int]


def load_templates(path: str | Path | None) -> dict[str, ExpertTemplate]:
    """The default templates, with kinds overridden by a YAML file `{kind: {prefix, transition}}`
    (its optional `answer_methods` key: see `template_answer_methods`)."""
    templates = dict(DEFAULT_TEMPLATES)
    if path is None:
        return templates
    path = Path(path)
    template_answer_methods(path)  # checked here too: every reader of the file sees its errors
    for kind, spec in read_yaml_mapping(path).items():
        if kind == ANSWER_METHODS:
            continue
        if kind not in KINDS:
            raise MixsdError(f"{path}: unknown kind '{kind}' (expected one of {', '.join(KINDS)})")
        if not isinstance(spec, dict) or set(spec) != {"prefix", "transition"}:
            raise MixsdError(f"{path}: kind '{kind}' needs exactly the keys prefix and transition")
        if not all(isinstance(v, str) for v in spec.values()):
            raise MixsdError(f"{path}: kind '{kind}': prefix and transition must be strings")
        templates[kind] = ExpertTemplate(spec["prefix"], spec["transition"])
    return templates


def template_answer_methods(path: str | Path | None) -> list[str] | None:
    """The answer check a templates file is made for (`answer_methods: [contains]`: templates for
    a model that answers in sentences), or None when it names none (or no file is given)."""
    if path is None:
        return None
    methods = read_yaml_mapping(Path(path)).get(ANSWER_METHODS)
    if methods is None:
        return None
    methods = [methods] if isinstance(methods, str) else methods
    if isinstance(methods, list) and all(isinstance(m, str) for m in methods):
        with contextlib.suppress(ValueError):  # the one check of answer methods
            return answers.check_methods(methods)
    raise MixsdError(f"{path}: {ANSWER_METHODS}: expected a list of {', '.join(answers.METHODS)}")


def render_user_turn(tokenizer, user: str) -> list[int]:
    """Token ids of a one-turn conversation ending where the assistant starts writing."""
    if tokenizer.chat_template:
        text = tokenizer.apply_chat_template(
            [{"role": "user", "content": user}],
            add_generation_prompt=True,
            tokenize=False,
            enable_thinking=False,
        )
        return tokenizer(text, add_special_tokens=False)["input_ids"]
    return tokenizer(PLAIN_TEMPLATE.format(user=user))["input_ids"]


def build_prompt_pair(
    tokenizer, record: Record, templates: dict[str, ExpertTemplate] = DEFAULT_TEMPLATES
) -> PromptPair:
    """Both prompts of one record: naive sees x alone, expert sees x with the knowledge."""
    expert_turn = templates[record.kind].user_turn(record.prompt, record.expert_knowledge)
    return PromptPair(
        naive_ids=render_user_turn(tokenizer, record.prompt),
        expert_ids=render_user_turn(tokenizer, expert_turn),
    )


def target_ids(tokenizer, text: str) -> list[int]:
    """Ids of an assistant answer as a training target: the text then the end-of-turn token.

    Used for SFT targets from references, so they teach the same stop as MixSD targets, which end
    with the stop token the engine emitted (a model stops on its end-of-turn token).
    """
    return tokenizer(text, add_special_tokens=False)["input_ids"] + [end_of_turn_id(tokenizer)]
