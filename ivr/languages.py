"""The languages the IVR can speak: one registry for flows, prompts and the routing plan.

A language is written everywhere by its two-letter ISO 639-1 code (`en`,
`es`): a flow's `languages`, a prompt directory's name, a center's or
counselor's `languages` in the routing plan. Each code here carries the
locale Twilio's <Say> speaks it in when a prompt catalog sets no `locale` of
its own, and the English name counselors hear in the whisper ("Spanish").

The locales are ones Twilio's <Say> documents for its `language` attribute
(https://www.twilio.com/docs/voice/twiml/say, "language"; the Polly and
Google voices of /docs/voice/twiml/say/text-speech): US English and US
Spanish for the two languages a US crisis line answers in first, the
national locale for the others. Adding a language is adding a line here.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Final


@dataclass(frozen=True)
class Language:
    code: str  # ISO 639-1, as flows, prompt directories and the routing plan write it
    locale: str  # Twilio <Say language=...> when a catalog sets none
    name: str  # in English: what a counselor hears in the whisper


_ALL = (
    Language("de", "de-DE", "German"),
    Language("en", "en-US", "English"),
    Language("es", "es-US", "Spanish"),
    Language("fr", "fr-CA", "French"),
    Language("it", "it-IT", "Italian"),
    Language("ja", "ja-JP", "Japanese"),
    Language("ko", "ko-KR", "Korean"),
    Language("pl", "pl-PL", "Polish"),
    Language("pt", "pt-BR", "Portuguese"),
    Language("ru", "ru-RU", "Russian"),
)

LANGUAGES: Final[Mapping[str, Language]] = MappingProxyType({lang.code: lang for lang in _ALL})
SAY_LOCALES: Final[Mapping[str, str]] = MappingProxyType(
    {lang.code: lang.locale for lang in _ALL}
)
LANGUAGE_NAMES: Final[Mapping[str, str]] = MappingProxyType(
    {lang.code: lang.name for lang in _ALL}
)
_BY_NAME: Final = {lang.name.casefold(): lang.code for lang in _ALL}


def base_code(tag: str) -> str:
    """The language part of a tag as callers and Twilio write it: 'es-US', 'ES', 'es_mx' -> 'es'."""
    return tag.strip().lower().split("-", 1)[0].split("_", 1)[0]


def is_known(code: str) -> bool:
    return code in LANGUAGES


def unknown_language(code: str) -> str:
    """Why `code` is refused, as a sentence for a `file:line:col` problem."""
    return f"'{code}' is not a language code the IVR knows" + _hint(code)


def _hint(code: str) -> str:
    # A code in capitals or with a region ('EN', 'es-MX'), or a name ('Spanish', 'englsh').
    guess = base_code(code)
    if guess not in LANGUAGES:
        close = difflib.get_close_matches(code.strip().casefold(), list(_BY_NAME), n=1, cutoff=0.75)
        guess = _BY_NAME[close[0]] if close else ""
    if guess:
        return f" (did you mean '{guess}'?)"
    return " (known: " + ", ".join(LANGUAGES) + ")"
