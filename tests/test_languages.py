"""One registry of languages: flows, prompts and the routing plan check codes against it,
and the renderer and the whisper take locales and names from it."""

from __future__ import annotations

import textwrap
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from ivr.flow.loader import load_flows
from ivr.flow.prompts import load_prompts
from ivr.flow.runtime import Speak
from ivr.languages import (
    LANGUAGE_NAMES,
    LANGUAGES,
    SAY_LOCALES,
    base_code,
    is_known,
    unknown_language,
)
from ivr.routing.loader import parse_plan
from ivr.routing.states import STATES
from ivr.telephony.twiml import Renderer
from ivr.yamlsrc import Problems

ROOT = Path(__file__).resolve().parents[1]


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
    return path


def test_each_language_has_a_locale_of_its_own_and_a_name() -> None:
    assert {"en", "es"} <= set(LANGUAGES)
    for code, lang in LANGUAGES.items():
        assert lang.code == code and len(code) == 2 and code.islower()
        prefix, region = lang.locale.split("-")
        assert prefix == code and region.isupper() and len(region) == 2
    assert len(set(LANGUAGE_NAMES.values())) == len(LANGUAGES)
    assert SAY_LOCALES["en"] == "en-US" and SAY_LOCALES["es"] == "es-US"
    assert LANGUAGE_NAMES["es"] == "Spanish" and LANGUAGE_NAMES["ko"] == "Korean"


@pytest.mark.parametrize(
    ("code", "hint"),
    [
        ("EN", "(did you mean 'en'?)"),
        ("es-MX", "(did you mean 'es'?)"),
        ("Spanish", "(did you mean 'es'?)"),
        ("englsh", "(did you mean 'en'?)"),
        ("xx", "(known: de, en, es, fr, it, ja, ko, pl, pt, ru)"),
    ],
)
def test_an_unknown_code_gets_a_hint(code: str, hint: str) -> None:
    assert not is_known(code)
    assert unknown_language(code) == f"'{code}' is not a language code the IVR knows {hint}"


def test_base_code_reads_tags_as_callers_and_twilio_write_them() -> None:
    assert [base_code(t) for t in ("es-US", "ES", "es_mx", " en ")] == ["es", "es", "es", "en"]


def test_flows_prompts_and_the_plan_refuse_the_same_unknown_code(tmp_path: Path) -> None:
    wanted = unknown_language("xx")
    flow = write(tmp_path / "flows" / "f.yaml", """
        id: t
        languages: [en, xx]
        start: a
        max_time_to_human: 60s
        nodes:
          a: {transfer: {queue: crisis}}
        """)
    problems = Problems()
    assert load_flows(flow.parent, problems) == {}
    assert [str(p) for p in problems.errors] == [f"{flow}:2:17: {wanted}"]

    write(tmp_path / "prompts" / "en" / "catalog.yaml", "welcome: Hello.\n")
    catalog = write(tmp_path / "prompts" / "es" / "catalog.yaml", """
        welcome:
          - Hola.
          - {xx: Hello.}
        """)
    write(tmp_path / "prompts" / "xx" / "catalog.yaml", "welcome: Hello.\n")
    problems = Problems()
    prompts = load_prompts(tmp_path / "prompts", problems)
    assert [str(p) for p in problems.sorted()] == [
        f"{catalog}:3:6: {wanted}",
        f"{tmp_path / 'prompts' / 'xx'}:1:1: {wanted}: a prompt directory is named after its"
        " language",
    ]
    assert prompts.languages() == ("en", "es")

    plan = textwrap.dedent(f"""\
        national_backup: {{number: "+18005550100", languages: [en, xx]}}
        centers:
          all:
            serves: [{", ".join(STATES)}]
            languages: [en, xx]
            number: "+16175550109"
        queues:
          crisis: {{tiers: [{{tier: national}}]}}
        """)
    problems = Problems()
    assert parse_plan(plan, "routing.yaml", problems) is None
    assert [str(p) for p in problems.errors] == [
        f"routing.yaml:1:59: {wanted}",
        f"routing.yaml:5:21: {wanted}",
    ]


def test_a_catalog_without_a_locale_is_said_in_the_registry_locale(tmp_path: Path) -> None:
    write(tmp_path / "prompts" / "fr" / "catalog.yaml", "welcome: Bonjour.\n")
    problems = Problems()
    prompts = load_prompts(tmp_path / "prompts", problems)
    assert problems.items == []
    assert prompts.locales == {"fr": "fr-CA"}
    twiml = Renderer("https://ivr.example", prompts, "+15005550006").flow_turn(
        [Speak("welcome", "fr")], 1
    )
    assert [(e.text, e.get("language")) for e in ET.fromstring(twiml).iter("Say")] == [
        ("Bonjour.", "fr-CA")
    ]


def test_the_shipped_content_speaks_only_registered_languages() -> None:
    problems = Problems()
    prompts = load_prompts(ROOT / "prompts", problems)
    flows = load_flows(ROOT / "flows", problems)
    assert problems.errors == []
    spoken = set(prompts.languages()) | {lang for f in flows.values() for lang in f.languages}
    assert spoken and all(is_known(code) for code in spoken)
