"""Everything an administrator edits, loaded and cross-checked as one unit.

`check` is the one judge of content: `ivr validate` prints its problems and
`ivr serve` (`create_app` -> `load_content`) refuses to start on the same
ones. It covers flows, prompts, recordings (by the rule the server loads
them with), the prompts the server says on its own, time-to-human
analysis (to each transfer, and through the tiers to the national backup
under a flow's `max_time_to_backup`), the routing plan, the references between them (a transfer to a
queue or line the plan does not have would be a dead end) and menu words
against the configured speech models.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ivr.errors import ContentError
from ivr.flow.analysis import FlowAnalysis
from ivr.flow.model import Flow, FlowSet, Menu, Targets
from ivr.flow.system_prompts import check_catalog
from ivr.flow.validate import load_and_analyse
from ivr.routing.loader import load_plan
from ivr.routing.model import RoutingPlan
from ivr.routing.reach import Reach, check_backup_limit, reaches
from ivr.speech.asr import ENV_PREFIX, check_model_dir
from ivr.speech.errors import SpeechConfigError
from ivr.speech.vocabulary import Vocabulary, read_vocabulary
from ivr.yamlsrc import Pos, Problems

ROUTING_FILE = "routing.yaml"


@dataclass(frozen=True)
class Content:
    flows: FlowSet
    plan: RoutingPlan
    analyses: dict[str, FlowAnalysis]
    # Each flow's worst case to each queue and line it transfers to, by flow id.
    reaches: Mapping[str, tuple[Reach, ...]] = field(default_factory=dict)
    # The folders it was loaded from: what a publish of this content stores.
    flows_dir: Path | None = None
    prompts_dir: Path | None = None


class InvalidContent(ContentError):
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
    loaded = load_and_analyse(flows_dir, prompts_dir, targets, problems)
    languages = {lang for flow in loaded.flows.values() for lang in flow.languages}
    check_catalog(loaded.catalog, languages, prompts_dir, problems)
    check_words(loaded.flows, _vocabularies(models or {}, problems), problems)
    found: dict[str, tuple[Reach, ...]] = {}
    if plan is not None:
        for flow_id, flow in loaded.flows.items():
            analysis = loaded.analyses[flow_id]
            if analysis.bounded:
                found[flow_id] = reaches(analysis, plan, loaded.catalog)
                check_backup_limit(flow, found[flow_id], problems)
    flowset = loaded.flow_set(problems)
    if problems.errors or flowset is None or plan is None:
        return None, problems
    return Content(flowset, plan, loaded.analyses, found, flows_dir, prompts_dir), problems


def load_content(
    flows_dir: Path, prompts_dir: Path, models: Mapping[str, Path] | None = None
) -> Content:
    content, problems = check(flows_dir, prompts_dir, models)
    if content is None:
        raise InvalidContent(problems)
    return content


def _vocabularies(models: Mapping[str, Path], problems: Problems) -> dict[str, Vocabulary]:
    """The word list of each configured model, which must look like a Vosk model
    the way the server checks one before loading it (loading it takes seconds
    and much memory: `ivr validate` reads the word list only)."""
    found: dict[str, Vocabulary] = {}
    for language, path in sorted(models.items()):
        origin = f"{ENV_PREFIX}{language.upper()}"
        try:
            check_model_dir(path.expanduser(), origin)
        except SpeechConfigError as exc:
            problems.add(Pos(str(path), 1, 1), str(exc))
            continue
        try:
            found[language] = read_vocabulary(path)
        except SpeechConfigError as exc:
            problems.add(Pos(str(path), 1, 1), f"{origin}: {exc}")
    return found


def check_words(
    flows: Mapping[str, Flow], vocabularies: Mapping[str, Vocabulary], problems: Problems
) -> None:
    """Every word a listening menu waits for must be one its language's model can hear.

    A word the model lacks would never be recognised: with the model present
    that is an error; without it, a warning (speech is off for that
    language, keys still work).
    """
    for flow in flows.values():
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
