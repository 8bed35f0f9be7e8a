"""Everything an administrator edits, loaded and cross-checked as one unit.

`ivr validate` and `ivr serve` run the same checks: flows, prompts,
time-to-human analysis, the routing plan, and the references between them
(a transfer to a queue or line the plan does not have would be a dead end).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from ivr.flow.analysis import FlowAnalysis
from ivr.flow.model import FlowSet, Menu, Targets
from ivr.flow.validate import validate_content
from ivr.routing.plan import RoutingPlan, load_plan
from ivr.speech.asr import ENV_PREFIX
from ivr.speech.errors import SpeechConfigError
from ivr.speech.vocabulary import Vocabulary, read_vocabulary
from ivr.yamlsrc import Pos, Problems

ROUTING_FILE = "routing.yaml"


@dataclass(frozen=True)
class Content:
    flows: FlowSet
    plan: RoutingPlan
    analyses: dict[str, FlowAnalysis]


class InvalidContent(Exception):
    def __init__(self, problems: Problems) -> None:
        self.problems = problems
        lines = [str(p) for p in problems.sorted()]
        super().__init__("\n".join(lines))


def check(
    flows_dir: Path, prompts_dir: Path, models: Mapping[str, Path] | None = None
) -> tuple[Content | None, Problems]:
    """Load and cross-check; `models` are the Vosk model dirs by language, for menu words."""
    problems = Problems()
    routing_path = flows_dir / ROUTING_FILE
    plan: RoutingPlan | None = None
    if routing_path.exists():
        plan = load_plan(routing_path, problems)
    else:
        problems.add(Pos(str(routing_path), 1, 1), "the routing plan is missing")
    # Transfers are checked against the plan's queues and lines while the
    # flows load, so a typo in a queue name is reported with the others.
    targets = (
        Targets(frozenset(plan.queues), frozenset(plan.lines)) if plan is not None else None
    )
    flowset, problems, analyses = validate_content(flows_dir, prompts_dir, targets, problems)
    if flowset is not None:
        check_words(flowset, _vocabularies(models or {}, problems), problems)
    if problems.errors or flowset is None or plan is None:
        return None, problems
    return Content(flowset, plan, analyses), problems


def load_content(
    flows_dir: Path, prompts_dir: Path, models: Mapping[str, Path] | None = None
) -> Content:
    content, problems = check(flows_dir, prompts_dir, models)
    if content is None:
        raise InvalidContent(problems)
    return content


def _vocabularies(models: Mapping[str, Path], problems: Problems) -> dict[str, Vocabulary]:
    found: dict[str, Vocabulary] = {}
    for language, path in sorted(models.items()):
        if not path.is_dir():
            problems.add(Pos(str(path), 1, 1),
                         f"{ENV_PREFIX}{language.upper()}={path}: no such model directory")
            continue
        try:
            found[language] = read_vocabulary(path)
        except SpeechConfigError as exc:
            problems.add(Pos(str(path), 1, 1), f"{ENV_PREFIX}{language.upper()}: {exc}")
    return found


def check_words(flows: FlowSet, vocabularies: Mapping[str, Vocabulary], problems: Problems) -> None:
    """Every word a listening menu waits for must be one its language's model can hear.

    A word the model lacks would never be recognised: with the model present
    that is an error; without it, a warning (speech is off for that
    language, keys still work).
    """
    for flow in flows.flows.values():
        for node in flow.nodes.values():
            menu = node.body
            if not isinstance(menu, Menu) or not menu.speech:
                continue
            for i, option in enumerate(menu.options):
                for j, word in enumerate(option.words):
                    where = node.positions.get(f"menu.options.{i}.words.{j}", node.pos)
                    languages = [lang for lang in flow.languages if word in option.words_in(lang)]
                    _check_word(word, languages, vocabularies, where, problems)


def _check_word(
    word: str,
    languages: Sequence[str],
    vocabularies: Mapping[str, Vocabulary],
    where: Pos,
    problems: Problems,
) -> None:
    with_model = [lang for lang in languages if lang in vocabularies]
    if not with_model:
        names = " or ".join(f"{ENV_PREFIX}{lang.upper()}" for lang in languages)
        problems.warn(where, f"word '{word}' cannot be checked: no speech model is configured "
                      f"({names}); callers can only use keys here")
        return
    if any(vocabularies[lang].has_phrase(word) for lang in with_model):
        return
    models = " or ".join(with_model)
    problems.add(where, f"word '{word}' is not in the {models} model")
