"""The prompts the server says on its own: declared once, checked in every catalog."""

from __future__ import annotations

import ast
import wave
from pathlib import Path

import pytest

from ivr.flow.prompts import load_prompts
from ivr.flow.system_prompts import (
    STAFF_LANGUAGE,
    SYSTEM_PROMPTS,
    Audience,
    check_catalog,
)
from ivr.yamlsrc import Problems

from .conftest import Write

ROOT = Path(__file__).parents[2]
EN_FULL = """
    welcome: Hello.
    hold_reassurance: Please hold. If you are in immediate danger, call 911.
    backup_connecting: Connecting you to our national network.
    whisper: Language {language}, need {need}, from {region}, waiting {wait} seconds.
    whisper_declined: Not accepted. Goodbye.
    whisper_gone: The caller left. Goodbye.
    """


def with_entry(catalog: str, line: str) -> str:
    """The catalog text with one more entry at its end (line 7 of the file)."""
    return catalog.rstrip(" ") + f"    {line}\n"


def check(tmp_path: Path, languages: set[str]) -> list[tuple[str, int, str]]:
    problems = Problems()
    catalog = load_prompts(tmp_path / "prompts", problems)
    assert problems.items == [], "the fixture's catalogs must load cleanly"
    check_catalog(catalog, languages, tmp_path / "prompts", problems)
    return [
        (str(Path(p.pos.file).relative_to(tmp_path / "prompts")), p.pos.line, p.message)
        for p in problems.sorted()
    ]


def speaking_calls(source: str) -> list[tuple[str, int]]:
    """(prompt id, line) of every literal prompt id handed to something that says it."""
    found: list[tuple[str, int]] = []
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, ast.Call) or not isinstance(node.func, ast.Attribute):
            continue
        name, args = node.func.attr, node.args
        index = {"counselor_goodbye": 0, "_speak": 2, "get": 1}.get(name)
        if index is None or len(args) <= index:
            continue
        arg = args[index]
        if not (isinstance(arg, ast.Constant) and isinstance(arg.value, str)):
            continue
        target = node.func.value
        is_catalog = isinstance(target, ast.Attribute) and target.attr == "prompts"
        if name != "get" or is_catalog:
            found.append((arg.value, node.lineno))
    return found


def test_every_prompt_the_server_says_on_its_own_is_declared() -> None:
    """A prompt id written in the telephony code or app.py is one of the table's:
    the table is what validation checks, so an id missing from it would only be
    found when a caller (or a counselor) should hear it."""
    sources = [*sorted((ROOT / "ivr" / "telephony").glob("*.py")), ROOT / "ivr" / "app.py"]
    used = {
        (prompt_id, f"{path.name}:{line}")
        for path in sources
        for prompt_id, line in speaking_calls(path.read_text(encoding="utf-8"))
    }
    assert used, "the scan found no prompt ids at all: it no longer sees the calls"
    undeclared = sorted(where for prompt_id, where in used if prompt_id not in SYSTEM_PROMPTS)
    assert undeclared == [], "declare these in ivr/flow/system_prompts.py"


def test_the_scan_sees_literal_ids() -> None:
    source = (
        "r.counselor_goodbye('bye_now')\n"
        "self._speak(response, language, 'hold_reassurance')\n"
        "self.prompts.get(language, 'hold_music')\n"
        "options.get('x', 'not_a_prompt')\n"
    )
    assert speaking_calls(source) == [
        ("bye_now", 1), ("hold_reassurance", 2), ("hold_music", 3)
    ]


def test_the_table() -> None:
    whisper = SYSTEM_PROMPTS["whisper"]
    assert whisper.audience is Audience.COUNSELOR
    assert whisper.placeholders == {"language", "need", "region", "wait"}
    assert SYSTEM_PROMPTS["hold_reassurance"].audience is Audience.CALLER
    assert SYSTEM_PROMPTS["hold_music"].optional and SYSTEM_PROMPTS["hold_music"].recording_only
    assert STAFF_LANGUAGE == "en"


def test_caller_prompts_in_every_flow_language_counselor_prompts_in_the_staff_one(
    write: Write, tmp_path: Path
) -> None:
    write("prompts/en/catalog.yaml", EN_FULL)
    write("prompts/es/catalog.yaml", """
        welcome: Hola.
        backup_connecting: Le comunicamos con nuestra red nacional.
        """)
    assert check(tmp_path, {"en", "es"}) == [(
        "es/catalog.yaml", 1,
        "prompt 'hold_reassurance' is missing: the server says it to callers holding for a "
        "counselor, every round of hold (it must say what to do in immediate danger), in each "
        "language the flows speak (en, es); add it here",
    )]
    # A catalog no flow speaks is not held to the caller prompts.
    assert check(tmp_path, {"en"}) == []


def test_counselor_prompts_need_the_staff_language(write: Write, tmp_path: Path) -> None:
    write("prompts/es/catalog.yaml", EN_FULL)  # Spanish-only flows, every prompt there
    assert check(tmp_path, {"es"}) == [(
        "en/catalog.yaml", 1,
        "counselors hear the server's prompts in en (the staff language): add this catalog "
        "with whisper, whisper_declined, whisper_gone",
    )]
    write("prompts/en/catalog.yaml",
          "\n".join(line for line in EN_FULL.splitlines() if "whisper_gone" not in line))
    assert check(tmp_path, {"es"}) == [(
        "en/catalog.yaml", 1,
        "prompt 'whisper_gone' is missing: the server says it to a counselor whose caller is no "
        "longer waiting, before hanging up, in the staff language (en); add it here",
    )]


def test_placeholders_the_server_does_not_fill(write: Write, tmp_path: Path) -> None:
    write("prompts/en/catalog.yaml",
          with_entry(EN_FULL.replace("{need}", "{nee}"), "connecting: Connecting you, {name}."))
    assert check(tmp_path, {"en"}) == [
        ("en/catalog.yaml", 4,
         "prompt 'whisper' has the placeholder {nee}, which the server never fills: it fills "
         "{language}, {need}, {region}, {wait}; did you mean {need}?"),
        ("en/catalog.yaml", 7,
         "prompt 'connecting' has the placeholder {name}, which nothing fills: flow prompts are "
         "said as written; write the words instead"),
    ]
    write("prompts/en/catalog.yaml", EN_FULL.replace("Hello.", "Hello {caller}."))
    assert [m for _, _, m in check(tmp_path, {"en"})] == [
        "prompt 'welcome' has the placeholder {caller}, which nothing fills: flow prompts are "
        "said as written; write the words instead",
    ]


def mono_wav(path: Path) -> None:
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(8000)
        out.writeframes(b"\x01\x00" * 800)


def test_recordings_the_renderer_would_never_use(write: Write, tmp_path: Path) -> None:
    write("prompts/en/catalog.yaml", with_entry(EN_FULL, "hold_music: Soft piano."))
    assert check(tmp_path, {"en"}) == [(
        "en/catalog.yaml", 7,
        "prompt 'hold_music' is only ever played as a recording, and en/hold_music.wav does "
        "not exist: add the recording, or remove the entry",
    )]
    mono_wav(tmp_path / "prompts" / "en" / "hold_music.wav")
    assert check(tmp_path, {"en"}) == []
    # The whisper is filled in per call: a recording of it would be dead weight.
    mono_wav(tmp_path / "prompts" / "en" / "whisper.wav")
    assert check(tmp_path, {"en"}) == [(
        "en/whisper.wav", 1,
        "recording whisper.wav would never be played: prompt 'whisper' is filled in on every "
        "call ({language}, {need}, {region}, {wait}), so it is always said from its text; "
        "remove the recording",
    )]


@pytest.mark.parametrize("language", ["en", "es"])
def test_the_shipped_catalogs_have_every_system_prompt(language: str) -> None:
    problems = Problems()
    catalog = load_prompts(ROOT / "prompts", problems)
    check_catalog(catalog, {"en", "es"}, ROOT / "prompts", problems)
    assert problems.items == []
    reassurance = catalog.get(language, "hold_reassurance")
    assert reassurance is not None and "911" in reassurance.text
    for prompt in SYSTEM_PROMPTS.values():
        if prompt.audience is Audience.CALLER and not prompt.optional:
            assert catalog.get(language, prompt.id) is not None, prompt.id
