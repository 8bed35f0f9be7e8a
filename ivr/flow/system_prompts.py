"""The prompts the server says on its own, outside any flow.

A flow names its prompts and the analysis checks each one in every language
of the flow. The telephony adapter also speaks: reassurance while a caller
holds, a word before the national backup, the whisper a counselor hears
before joining, the goodbyes of a counselor leg. No flow names those, so
they are declared here, once: who hears them, in which languages they must
exist, and the placeholders the server fills in. `check_catalog` holds
every catalog to this table, and the renderer speaks them by these ids.

A placeholder the server does not fill would be said as nothing, or break
the call: every `{name}` in any catalog entry must be one the table lists
for that prompt (flow prompts are said as written, with none).
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import Enum
from pathlib import Path

from ivr.flow.model import Prompt, PromptCatalog
from ivr.flow.prompts import CATALOG_FILE, placeholders
from ivr.yamlsrc import Pos, Problems

STAFF_LANGUAGE = "en"
"""Counselors hear the whisper and their goodbyes in this language."""


class Audience(Enum):
    CALLER = "callers"  # in the caller's language: every language a flow speaks
    COUNSELOR = "counselors"  # in the staff language


@dataclass(frozen=True)
class SystemPrompt:
    id: str
    audience: Audience
    purpose: str  # completes "the server says it ..." in validation messages
    placeholders: frozenset[str] = frozenset()
    optional: bool = False
    recording_only: bool = False  # only ever played as a recording; its text is a label


HOLD_REASSURANCE = SystemPrompt(
    "hold_reassurance", Audience.CALLER,
    "to callers holding for a counselor, every round of hold (it must say what to do "
    "in immediate danger)",
)
HOLD_MUSIC = SystemPrompt(
    "hold_music", Audience.CALLER, "between reassurances while callers hold",
    optional=True, recording_only=True,
)
BACKUP_CONNECTING = SystemPrompt(
    "backup_connecting", Audience.CALLER, "to callers before the national backup line is dialed",
)
WHISPER = SystemPrompt(
    "whisper", Audience.COUNSELOR,
    "to a counselor who answers an offer: who is waiting, and press 1",
    placeholders=frozenset({"language", "need", "region", "wait"}),
)
WHISPER_DECLINED = SystemPrompt(
    "whisper_declined", Audience.COUNSELOR,
    "to a counselor who declined or did not answer the whisper, before hanging up",
)
WHISPER_GONE = SystemPrompt(
    "whisper_gone", Audience.COUNSELOR,
    "to a counselor whose caller is no longer waiting, before hanging up",
)

SYSTEM_PROMPTS: Mapping[str, SystemPrompt] = {
    p.id: p
    for p in (HOLD_REASSURANCE, HOLD_MUSIC, BACKUP_CONNECTING, WHISPER, WHISPER_DECLINED,
              WHISPER_GONE)
}
COUNSELOR_GOODBYES = frozenset({WHISPER_DECLINED.id, WHISPER_GONE.id})


def required_languages(prompt: SystemPrompt, flow_languages: Iterable[str]) -> tuple[str, ...]:
    if prompt.audience is Audience.COUNSELOR:
        return (STAFF_LANGUAGE,)
    return tuple(sorted(set(flow_languages)))


def check_catalog(
    catalog: PromptCatalog,
    flow_languages: Iterable[str],
    prompts_dir: Path,
    problems: Problems,
) -> None:
    """Every system prompt where it is needed; no placeholder the server does not fill.

    `flow_languages` are the languages the flows speak (callers hear the
    system prompts in theirs). A language with no catalog at all is the
    flow analysis' to report; the staff language is reported here.
    """
    languages = tuple(sorted(set(flow_languages)))
    if STAFF_LANGUAGE not in catalog.prompts and STAFF_LANGUAGE not in languages:
        needed = ", ".join(p.id for p in SYSTEM_PROMPTS.values()
                           if p.audience is Audience.COUNSELOR and not p.optional)
        problems.add(
            Pos(str(prompts_dir / STAFF_LANGUAGE / CATALOG_FILE), 1, 1),
            f"counselors hear the server's prompts in {STAFF_LANGUAGE} (the staff language): "
            f"add this catalog with {needed}",
        )
    for prompt in SYSTEM_PROMPTS.values():
        for lang in required_languages(prompt, languages):
            entries = catalog.prompts.get(lang)
            if entries is None:
                continue  # reported once for the whole language
            entry = entries.get(prompt.id)
            if entry is None and not prompt.optional:
                _missing(prompt, lang, languages, prompts_dir, problems)
    for _, entries in sorted(catalog.prompts.items()):
        for entry in entries.values():
            _check_entry(entry, problems)


def _missing(
    prompt: SystemPrompt,
    lang: str,
    languages: tuple[str, ...],
    prompts_dir: Path,
    problems: Problems,
) -> None:
    where = (f"in each language the flows speak ({', '.join(languages)})"
             if prompt.audience is Audience.CALLER
             else f"in the staff language ({STAFF_LANGUAGE})")
    fills = f" (it may use {_names(prompt.placeholders)})" if prompt.placeholders else ""
    problems.add(
        Pos(str(prompts_dir / lang / CATALOG_FILE), 1, 1),
        f"prompt '{prompt.id}' is missing: the server says it {prompt.purpose}, {where}; "
        f"add it here{fills}",
    )


def _check_entry(entry: Prompt, problems: Problems) -> None:
    declared = SYSTEM_PROMPTS.get(entry.id)
    where = entry.pos or Pos("?", 1, 1)
    allowed = declared.placeholders if declared else frozenset()
    for name in placeholders(entry.text):
        if name in allowed:
            continue
        if declared is None:
            problems.add(
                where,
                f"prompt '{entry.id}' has the placeholder {{{name}}}, which nothing fills: "
                "flow prompts are said as written; write the words instead",
            )
            continue
        close = difflib.get_close_matches(name, sorted(allowed), n=1)
        hint = f"; did you mean {{{close[0]}}}?" if close else ""
        fills = f"it fills {_names(allowed)}" if allowed else "it fills none"
        problems.add(
            where,
            f"prompt '{entry.id}' has the placeholder {{{name}}}, which the server never "
            f"fills: {fills}{hint}",
        )
    if declared is None:
        return
    if declared.recording_only and entry.recording is None:
        problems.add(
            where,
            f"prompt '{entry.id}' is only ever played as a recording, and "
            f"{entry.language}/{entry.id}.wav does not exist: add the recording, or remove "
            "the entry",
        )
    if declared.placeholders and entry.recording is not None:
        # The renderer says a prompt it fills in from its text, never the recording.
        problems.add(
            Pos(str(entry.recording), 1, 1),
            f"recording {entry.recording.name} would never be played: prompt '{entry.id}' is "
            f"filled in on every call ({_names(declared.placeholders)}), so it is always said "
            "from its text; remove the recording",
        )


def _names(names: Iterable[str]) -> str:
    return ", ".join(f"{{{n}}}" for n in sorted(names))
