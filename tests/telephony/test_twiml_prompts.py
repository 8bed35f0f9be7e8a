"""The renderer never leaves a prompt out: a gap is an error, not a silent nothing.

Validation makes these gaps impossible with the content `ivr serve` loads;
these catalogs are built by hand to stand for "somehow missing anyway".
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Sequence
from urllib.parse import quote_plus

import pytest

from ivr.flow.model import Prompt, PromptCatalog
from ivr.flow.prompts import estimate_seconds
from ivr.flow.runtime import Action, Speak, TransferTo
from ivr.routing.steps import DialStep, Step, WarmStep
from ivr.telephony.twiml import MissingPrompt, Renderer

PUBLIC = "https://ivr.example"


def catalog(entries: dict[str, dict[str, str]]) -> PromptCatalog:
    return PromptCatalog({
        lang: {pid: Prompt(pid, lang, text, estimate_seconds(text)) for pid, text in texts.items()}
        for lang, texts in entries.items()
    })


EN = {
    "welcome": "Hello.",
    "hold_reassurance": "Please hold. If you are in immediate danger, call 911.",
    "backup_connecting": "Connecting you to our national network.",
    "whisper": "Language {language}, need {need}, from {region}, waiting {wait} seconds.",
    "whisper_declined": "Not accepted. Goodbye.",
    "whisper_gone": "The caller left. Goodbye.",
}


def said(twiml: str) -> list[str]:
    return [(e.text or "").strip() for e in ET.fromstring(twiml).iter("Say")]


def test_hold_in_a_language_without_its_reassurance_is_an_error() -> None:
    renderer = Renderer(PUBLIC, catalog({"en": EN, "es": {"welcome": "Hola."}}), "+15005550006")
    assert said(renderer.hold("en", "CA1", 0)) == [EN["hold_reassurance"]]
    with pytest.raises(MissingPrompt, match="'hold_reassurance' is not in the es catalog"):
        renderer.hold("es", "CA1", 0)


def test_a_flow_prompt_missing_at_render_time_is_an_error() -> None:
    renderer = Renderer(PUBLIC, catalog({"en": EN}), "+15005550006")
    assert said(renderer.flow_turn([Speak("welcome", "en")], 1)) == ["Hello."]
    with pytest.raises(MissingPrompt):
        renderer.flow_turn([Speak("welcome", "es")], 1)


def test_the_whisper_fills_every_placeholder_or_fails() -> None:
    values = {"language": "Spanish", "need": "general", "region": "TX", "wait": 12}
    renderer = Renderer(PUBLIC, catalog({"en": EN}), "+15005550006")
    assert said(renderer.whisper(7, values)) == [
        "Language Spanish, need general, from TX, waiting 12 seconds."
    ]
    # A placeholder nobody fills (validation refuses it) is not said as a blank.
    typo = {**EN, "whisper": "Language {language}, need {nam}."}
    renderer = Renderer(PUBLIC, catalog({"en": typo}), "+15005550006")
    with pytest.raises(ValueError, match=r"no value for \{nam\}"):
        renderer.whisper(7, values)


def test_a_counselor_goodbye_must_be_declared() -> None:
    renderer = Renderer(PUBLIC, catalog({"en": EN}), "+15005550006")
    assert said(renderer.counselor_goodbye("whisper_gone")) == [EN["whisper_gone"]]
    # In the catalog, but not a declared goodbye: validation never checked it in
    # the staff language, so it is refused rather than trusted.
    with pytest.raises(ValueError, match="not a counselor goodbye declared"):
        renderer.counselor_goodbye("welcome")


@pytest.mark.parametrize("step", [
    WarmStep("regional", "austin", ("c1", "c2"), 30, False, ("austin",)),
    DialStep("national", "backup", ("+18005550100",), 45, last=True),
], ids=["warm", "dial"])
@pytest.mark.parametrize("sid", ["CA" + "0123456789abcdef" * 2, "CA-1.x_2", "CA:odd", "CAx&y"])
def test_a_transfer_turn_rendered_once_reads_as_rendered_for_the_call(
        step: Step, sid: str) -> None:
    renderer = Renderer(PUBLIC, catalog({"en": EN}), "+15005550006")
    actions = (Speak("welcome", "en"), TransferTo("t", "crisis", None, "en", None))
    renderer.flow_turn(actions, 3, then=("call-CAother", step))  # the first call renders it
    turn = renderer.flow_turn(actions, 3, then=(f"call-{sid}", step))
    # What the call would have got without the document kept, to the byte.
    assert turn == renderer._flow_turn(actions, 3, None, (f"call-{sid}", step))
    if isinstance(step, WarmStep):
        conference = ET.fromstring(turn).find("Dial/Conference")
        assert conference is not None and conference.text == f"call-{sid}"
        assert f"call={quote_plus(sid)}" in conference.attrib["waitUrl"]


def test_words_that_hold_the_kept_documents_mark_are_never_mistaken_for_it() -> None:
    words = dict(EN, welcome="Say CallSidMark7f3a9c twice: CallSidMark7f3a9c.")
    renderer = Renderer(PUBLIC, catalog({"en": words}), "+15005550006")
    step = WarmStep("regional", "austin", ("c1",), 30, False, ("austin",))
    actions = (Speak("welcome", "en"), TransferTo("t", "crisis", None, "en", None))
    for sid in ("CAfirst", "CAsecond"):
        turn = renderer.flow_turn(actions, 3, then=(f"call-{sid}", step))
        assert said(turn) == ["Say CallSidMark7f3a9c twice: CallSidMark7f3a9c."]
        conference = ET.fromstring(turn).find("Dial/Conference")
        assert conference is not None and conference.text == f"call-{sid}"


def test_a_transfer_turn_is_rendered_once_for_every_call() -> None:
    rendered: list[int] = []

    class Counting(Renderer):
        def _flow_turn(self, actions: Sequence[Action], seq: int, listen_token: str | None,
                       then: tuple[str, Step] | None) -> str:
            rendered.append(seq)
            return super()._flow_turn(actions, seq, listen_token, then)

    renderer = Counting(PUBLIC, catalog({"en": EN}), "+15005550006")
    step = WarmStep("regional", "austin", ("c1",), 30, False, ("austin",))
    actions = (Speak("welcome", "en"), TransferTo("t", "crisis", None, "en", None))
    turns = [renderer.flow_turn(actions, 3, then=(f"call-CA{n:032x}", step)) for n in range(5)]
    assert rendered == [3]
    assert [ET.fromstring(t).findtext("Dial/Conference") for t in turns] == [
        f"call-CA{n:032x}" for n in range(5)]
