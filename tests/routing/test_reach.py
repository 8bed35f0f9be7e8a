"""Time to a human from the call's start, as `ivr validate` prints it, held to the runtime.

For each small flow and plan, three figures per queue or line (to the
transfer, to the first ring, to the national backup dialled) must be:
- what the table says, worked out by hand from the prompts and tiers;
- what `ivr validate` prints;
- what the runtimes give: every way through the flow that `flow.runtime.step`
  allows, timed by the prompts it says and the menus it waits on, then every
  caller state and scenario of the tiers driven through `routing.progression.advance`
  (test_bounds.drive).
"""

from __future__ import annotations

import re
import shutil
import textwrap
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path

import pytest

from ivr.cli import EXIT_INVALID, main
from ivr.content import InvalidContent, check, load_content
from ivr.flow.model import Flow, PromptCatalog
from ivr.flow.runtime import Action, Answer, Ask, Speak, Start, TransferTo, Turn, new_call, step
from ivr.routing.model import RoutingPlan
from ivr.routing.rules import BACKUP_PROMPT, CLAIM_SLACK, MIN_RING
from ivr.routing.states import STATES
from ivr.routing.steps import Step, transfer_steps
from tests.conftest import ROOT
from tests.routing.test_bounds import drive, scenarios

T0 = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)

# Prompt seconds by the documented estimate (words / 2.5 + 0.3 s).
STAFF = """
    whisper: A caller in {language}, {need}, from {region}, waiting {wait}. Press one.
    whisper_declined: Goodbye.
    whisper_gone: Goodbye.
    hold_reassurance: Please stay on the line.
    """
EN = STAFF + """
    hello: Hello there.
    menu: Press one for a counselor.
    sorry: Sorry.
    connecting: Connecting you now.
    veterans: One two three four five six seven eight nine ten.
    long: >-
      This prompt takes a long while to say, one word after another, so that the
      tiers of the plan can start while it is still playing to the caller here and now.
    backup_connecting: Please hold for the national line.
    """
HELLO, MENU, SORRY, CONNECTING, VETERANS, LONG, BACKUP = 1.1, 2.3, 0.7, 1.5, 4.3, 13.1, 2.7
ES = """
    hold_reassurance: Por favor no cuelgue.
    hello: Hola a todos.
    menu: Uno dos tres cuatro cinco seis.
    sorry: Perdón.
    connecting: Le conectamos ahora mismo.
    veterans: Veteranos ahora.
    long: Uno dos tres cuatro cinco.
    backup_connecting: Uno dos tres cuatro cinco seis siete ocho.
    """
HELLO_ES, MENU_ES, SORRY_ES, CONNECTING_ES, VETERANS_ES, LONG_ES, BACKUP_ES = (
    1.5, 2.7, 0.7, 1.9, 1.1, 2.3, 3.5)

OTHERS = ", ".join(code for code in STATES if code != "TX")


def plan(tiers: str, tx_counselor_languages: str = "[en, es]") -> str:
    """TX has one counselor; every state is backed up by an external center."""
    indented = textwrap.indent(textwrap.dedent(tiers).strip(), " " * 6)
    return textwrap.dedent(f"""
        georoute_header: X-Georoute-State
        default_region: national
        national_backup: {{name: National backup, number: "+18005550100"}}
        lines:
          veterans: {{name: Veterans line, number: "+18005550111", languages: [en, es]}}
        regions:
          south: [TX]
          rest: [{OTHERS}]
        centers:
          tx:
            name: Texas
            serves: [TX]
            languages: [en, es]
            counselors:
              - {{id: tx-1, name: Ana, phone: "+15125550101",
                  languages: {tx_counselor_languages}}}
          backup:
            name: Backup
            backup_for: [south, rest]
            languages: [en, es]
            number: "+16175550109"
        queues:
          crisis:
            tiers:
        """) + indented + "\n"


# A TX caller: the local counselor's tier (20 s, skipped when nobody is free),
# then the external backup center (25 s), then the national backup after its
# prompt; any other caller goes straight to the backup center.
WARM = plan("""
    - {tier: local, ring_timeout: 20s, skip_when_unavailable: true}
    - {tier: backup, ring_timeout: 25s, skip_when_unavailable: true}
    - {tier: national}
    """)
# A TX caller in English waits 30 s for the local counselor, rung or not; the
# counselor speaks no Spanish, so a Spanish caller goes straight to the national
# backup, as does anyone outside TX (the queue has no backup tier).
WAITING = plan("""
    - {tier: local, ring_timeout: 30s, skip_when_unavailable: false}
    - {tier: national}
    """, tx_counselor_languages="[en]")
# A local tier as short as it may be: it lasts one full ring (10 s).
SHORT = plan("""
    - {tier: local, ring_timeout: 5s, skip_when_unavailable: false}
    - {tier: national}
    """, tx_counselor_languages="[en]")

SAY_THEN_TRANSFER = """
    id: t
    languages: [en]
    start: hello
    max_time_to_human: 60s
    nodes:
      hello: {say: hello, next: connect}
      connect: {transfer: {queue: crisis, prompt: connecting}}
    """
MENU_FLOW = """
    id: t
    languages: [en, es]
    start: hello
    max_time_to_human: 60s
    nodes:
      hello: {say: hello, next: menu}
      menu:
        menu:
          prompt: menu
          timeout: 5s
          options:
            - {keys: "1", set: {need: veteran}, next: vets}
            - {keys: "2", set: {language: es}, next: connect}
          no_input: connect
          no_match: {retries: 1, then: connect, prompt: sorry}
      vets: {transfer: {line: veterans, prompt: veterans}}
      connect: {transfer: {queue: crisis, prompt: connecting}}
    """
LONG_PROMPT = """
    id: t
    languages: [en, es]
    start: hello
    max_time_to_human: 60s
    nodes:
      hello: {say: hello, next: connect}
      connect: {transfer: {queue: crisis, prompt: long}}
    """
# Through the menu (wrong key, then key 2) in Spanish, the slowest way in.
SLOW_ES = HELLO_ES + (MENU_ES + 5 + SORRY_ES) + (MENU_ES + 5)
SLOW_EN = HELLO + (MENU + 5 + SORRY) + (MENU + 5)

Figures = tuple[float, float, float]  # to the transfer, first ring, national backup dialled


@dataclass(frozen=True)
class Case:
    name: str
    flow: str
    plan: str
    expected: dict[str, Figures]  # by "queue 'crisis'" or "line 'veterans'"


CASES = [
    Case("a prompt, then the queue's tiers", SAY_THEN_TRANSFER, WARM, {
        # The backup center is dialled after the transfer's prompt (the first
        # ring); the slowest backup: the local tier rings out, then the center.
        # The tiers count from the call's answer: the server begins the transfer
        # as it answers the first webhook, while 'hello' plays.
        "queue 'crisis'": (HELLO + CONNECTING, HELLO + CONNECTING, 20 + 25 + BACKUP),
    }),
    Case("a menu: the language and need a caller arrives with", MENU_FLOW, WARM, {
        # Spanish prompts are longer on the way in and before the backup.
        "queue 'crisis'": (SLOW_ES + CONNECTING_ES, SLOW_ES + CONNECTING_ES,
                           SLOW_ES + 20 + 25 + BACKUP_ES),
        # The English veterans prompt is the longer one: the line rings after it.
        "line 'veterans'": (SLOW_EN + VETERANS, SLOW_EN + VETERANS,
                            SLOW_EN + VETERANS + 60 + BACKUP),
    }),
    Case("a tier that waits for its counselor without a ring", LONG_PROMPT, WAITING, {
        # The English TX caller: 30 s of tier from the call's answer (the turn
        # that reaches the transfer), with nobody free nothing rings before the
        # national backup.
        "queue 'crisis'": (HELLO + LONG, 30 + BACKUP, 30 + BACKUP),
    }),
    Case("a transfer prompt longer than the tier", LONG_PROMPT, SHORT, {
        # The tier lasts one full ring and a claim (12 s) however short it is
        # configured: its end and the backup prompt (14.7 s) outlast the whole
        # turn's prompts (14.2 s), so that dial is the latest first ring.
        "queue 'crisis'": (HELLO + LONG, MIN_RING + CLAIM_SLACK + BACKUP,
                           MIN_RING + CLAIM_SLACK + BACKUP),
    }),
]

LINE = re.compile(
    r"^  ((?:queue|line) '[^']+'): ([\d.]+) s to the transfer, first counselor ring "
    r"([\d.]+) s, national backup dialled ([\d.]+) s"
)


def write_project(root: Path, flow: str, plan_text: str) -> Path:
    def put(relative: str, text: str) -> None:
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")

    put("flows/f.yaml", flow)
    put("flows/routing.yaml", plan_text)
    put("prompts/en/catalog.yaml", EN)
    put("prompts/es/catalog.yaml", ES)
    return root


def printed(root: Path, capsys: pytest.CaptureFixture[str]) -> dict[str, tuple[str, ...]]:
    """`ivr validate`'s figures for each queue and line, as printed."""
    assert main(["validate", str(root)]) == 0, capsys.readouterr().out
    out = capsys.readouterr().out
    return {m[1]: m.groups()[1:] for line in out.splitlines() if (m := LINE.match(line))}


def shown(figures: Figures) -> tuple[str, ...]:
    return tuple(f"{seconds:.1f}" for seconds in figures)


# -- the runtimes -------------------------------------------------------------------


def said(catalog: PromptCatalog, actions: tuple[Action, ...]) -> float:
    """Seconds the caller spends on a turn's actions: prompts, and menus to their timeout."""
    seconds = 0.0
    for action in actions:
        if isinstance(action, Speak | Ask):
            prompt = catalog.get(action.language, action.prompt)
            assert prompt is not None
            seconds += prompt.seconds + (action.timeout if isinstance(action, Ask) else 0.0)
    return seconds


def answers(flow: Flow, ask: Ask) -> list[Answer]:
    """Every answer the runtime could get, each at the end of the menu's timeout."""
    wrong = next(k for k in "0123456789*#" if k not in ask.keys)
    out = [Answer(T0), Answer(T0, digits=wrong)]
    out += [Answer(T0, digits=key) for key in ask.keys]
    if ask.speech:
        out += [Answer(T0, word=word, word_language=language)
                for word in ask.words for language in flow.languages]
    return out


def runtime_arrivals(flow: Flow, catalog: PromptCatalog) -> dict[TransferTo, float]:
    """The latest second each transfer (node, language, need) is reached by the flow
    runtime, its prompt played, over every start language and every answer."""
    latest: dict[TransferTo, float] = {}
    for transfer, _, at in runtime_paths(flow, catalog):
        latest[transfer] = max(latest.get(transfer, 0.0), at)
    return latest


def runtime_paths(flow: Flow, catalog: PromptCatalog) -> list[tuple[TransferTo, float, float]]:
    """Every way the flow runtime reaches a transfer: (the transfer, when the turn
    that reaches it starts, when its prompts have played). The server begins the
    transfer as it answers that turn's webhook (telephony/callflow.py), so its
    tiers count from the turn's start, while the turn's prompts play."""
    found: list[tuple[TransferTo, float, float]] = []
    pending: list[tuple[Turn, float]] = [
        (step(flow, replace(new_call(flow), language=lang), Start(T0)), 0.0)
        for lang in flow.languages
    ]
    while pending:
        turn, before = pending.pop()
        now = before + said(catalog, turn.actions)
        wait = turn.wait
        if isinstance(wait, TransferTo):
            found.append((wait, before, now))
            continue
        assert isinstance(wait, Ask), wait
        pending += [(step(flow, turn.state, answer), now) for answer in answers(flow, wait)]
    return found


def runtime_figures(
    flow: Flow, catalog: PromptCatalog, plan: RoutingPlan
) -> dict[str, Figures]:
    found: dict[str, Figures] = {}
    for transfer, begun, at in runtime_paths(flow, catalog):
        backup = catalog.get(transfer.language, BACKUP_PROMPT)
        assert backup is not None
        prompts = {BACKUP_PROMPT: backup.seconds}
        states = (None, *sorted(STATES)) if transfer.queue else (None,)
        ways: set[tuple[Step, ...]] = {
            tuple(transfer_steps(plan, transfer, state, plan.national_backup.number))
            for state in states
        }
        # What the turn says before the transfer's conference or <Dial>.
        lead_in = at - begun
        runs = [drive(steps, scenario, lead_in, prompts)
                for steps in ways for scenario in scenarios(steps)]
        label = f"queue '{transfer.queue}'" if transfer.queue else f"line '{transfer.line}'"
        mine = (at, begun + max(r[0] for r in runs), begun + max(r[1] for r in runs))
        old = found.get(label, mine)
        found[label] = (max(old[0], mine[0]), max(old[1], mine[1]), max(old[2], mine[2]))
    return found


# -- the tests -----------------------------------------------------------------------


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_validate_prints_the_flow_and_the_tiers(
    case: Case, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = write_project(tmp_path, case.flow, case.plan)
    assert printed(root, capsys) == {k: shown(v) for k, v in case.expected.items()}
    content, problems = check(root / "flows", root / "prompts")
    assert content is not None, problems.sorted()
    runtime = runtime_figures(content.flows.flows["t"], content.flows.prompts, content.plan)
    assert {k: shown(v) for k, v in runtime.items()} == {
        k: shown(v) for k, v in case.expected.items()}
    # The analysis arrives at the same transfers, with the same language and
    # need, as late as the runtime does; its worst case is the slowest of them.
    analysis = content.analyses["t"]
    flow = content.flows.flows["t"]
    arrivals = {(a.node, a.language, a.need): f"{a.to_transfer:.1f}" for a in analysis.arrivals}
    assert arrivals == {(t.node, t.language, t.need): f"{at:.1f}"
                        for t, at in runtime_arrivals(flow, content.flows.prompts).items()}
    assert max(a.to_transfer for a in analysis.arrivals) == pytest.approx(analysis.worst_seconds)


def test_the_shipped_flow_is_held_to_the_runtimes(capsys: pytest.CaptureFixture[str]) -> None:
    content, problems = check(ROOT / "flows", ROOT / "prompts")
    assert content is not None, problems.sorted()
    runtime = runtime_figures(content.flows.flows["lifeline"], content.flows.prompts,
                              content.plan)
    assert set(runtime) == {"queue 'crisis'", "line 'veterans'"}
    assert printed(ROOT, capsys) == {k: shown(v) for k, v in runtime.items()}


@pytest.fixture
def project(tmp_path: Path) -> Path:
    shutil.copytree(ROOT / "flows", tmp_path / "flows")
    shutil.copytree(ROOT / "prompts", tmp_path / "prompts")
    return tmp_path


def set_limit(project: Path, value: str) -> tuple[Path, int]:
    """Write `max_time_to_backup: value` into the shipped flow; the flow file and its line."""
    flow = project / "flows" / "988.yaml"
    lines = flow.read_text().splitlines()
    at = next(i for i, line in enumerate(lines) if line.startswith("max_time_to_backup:"))
    lines[at] = f"max_time_to_backup: {value}"
    flow.write_text("\n".join(lines) + "\n")
    return flow, at + 1


def test_the_shipped_flow_declares_a_limit_it_meets(
    capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["validate", str(ROOT)]) == 0
    out = capsys.readouterr().out
    assert "queue 'crisis': " in out and "line 'veterans': " in out
    assert out.count("(limit 150 s)") == 2, out


def test_a_path_over_max_time_to_backup_fails(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    seconds = printed(project, capsys)["line 'veterans'"][2]
    flow, line = set_limit(project, "100s")  # the veterans line takes longer, the queue not
    assert main(["validate", str(project)]) == EXIT_INVALID
    out = capsys.readouterr().out.splitlines()
    over = [o for o in out if "max_time_to_backup" in o]
    assert len(over) == 1, out
    assert over[0].startswith(f"{flow}:{line}:21: flow 'lifeline': a caller transferred to "
                              f"line 'veterans' can wait {seconds} s before "
                              "the national backup is dialled, over max_time_to_backup (100 s): ")
    # The way there: the flow's path, then the tiers, down to the backup.
    assert "to_veterans (says 'connecting_veterans', transfers to line veterans)" in over[0]
    assert "line veterans: dials for 60 s, no answer; dials the national backup" in over[0]
    # `ivr serve` loads content through the same check and refuses it.
    with pytest.raises(InvalidContent, match="over max_time_to_backup"):
        load_content(project / "flows", project / "prompts")


@pytest.mark.parametrize(("value", "message"), [
    ("soon", "max_time_to_backup 'soon' is not a duration: write e.g. 6s"),
    ("0s", "max_time_to_backup must be longer than zero"),
])
def test_a_bad_max_time_to_backup_is_reported_where_it_is(
    project: Path, capsys: pytest.CaptureFixture[str], value: str, message: str
) -> None:
    flow, line = set_limit(project, value)
    assert main(["validate", str(project)]) == EXIT_INVALID
    out = capsys.readouterr().out
    assert f"{flow}:{line}:21: {message}" in out, out

