"""Prompt catalogs: `prompts/<lang>/catalog.yaml` and optional recordings.

    # prompts/es/catalog.yaml
    voice: Polly.Lupe        # optional: Twilio <Say> voice for this language
    locale: es-US            # optional: Twilio <Say language=...>; default: the registry's
    welcome: Ha llamado a la Línea 988 de Prevención del Suicidio y Crisis.
    whisper:
      text: Llamada de crisis. Idioma {language}, necesidad {need}.
      voice: Polly.Miguel    # optional: a voice for this prompt only

A directory is named after a language of the registry (`ivr.languages`),
whose locale is the default of `locale`. `voice` and `locale` are reserved
and cannot be prompt ids. Prompt text may carry placeholders `{name}`
(letters, digits and _), filled in by whoever says the prompt (`fill`);
other braces are refused, and a prompt must use the same placeholders in
every language. Which placeholders exist is the
server's to say: only the prompts it says on its own have any
(`ivr.flow.system_prompts`), and `ivr.content.check` refuses the others.

A recording `prompts/<lang>/<id>.wav` replaces the text when the call
hears the prompt; it must be one the server can stream (mono 16-bit PCM at
8 or 16 kHz, or 8 kHz mu-law: `ivr.wavfile.read_prompt_wav`, the rule the
server applies when it loads recordings). Its catalog entry stays required,
for transcripts and the counselor screen. A prompt's `seconds` is measured
from the recording's header, or estimated from the text at 2.5 words a second
(150 words a minute, about the pace of Twilio's text-to-speech voices) plus
0.3 s, at least 0.5 s. A placeholder counts as two words (a region such as
"New York"); a run of digits counts a word per digit ("988" is read
"nine eight eight").
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path

from ivr.flow.model import Prompt, PromptCatalog
from ivr.languages import LANGUAGES, is_known, unknown_language
from ivr.wavfile import WavError, read_prompt_wav
from ivr.yamlfields import FieldReader
from ivr.yamlsrc import Node, Pos, Problems, YamlSyntaxError, load

WORDS_PER_SECOND = 2.5
PAUSE_SECONDS = 0.3
MIN_SECONDS = 0.5
CATALOG_FILE = "catalog.yaml"

PROMPT_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]*$")
_PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")
_LOCALE = re.compile(r"^([a-z]{2,3})-[A-Z]{2}$")
_VOICE = re.compile(
    r"^(man|woman|alice|Polly\.[A-Z][A-Za-z]+(-Neural|-Generative)?"
    r"|Google\.([a-z]{2,3}-[A-Z]{2})-[A-Za-z0-9-]+)$"
)
# Amazon Polly voices Twilio offers for our languages, by the locale they speak.
_POLLY_LOCALES = {
    **dict.fromkeys(
        (
            "Danielle", "Gregory", "Ivy", "Joanna", "Joey", "Justin", "Kendra",
            "Kevin", "Kimberly", "Matthew", "Ruth", "Salli", "Stephen",
        ),
        "en-US",
    ),
    **dict.fromkeys(("Lupe", "Miguel", "Pedro", "Penelope"), "es-US"),
    **dict.fromkeys(("Andres", "Mia"), "es-MX"),
    **dict.fromkeys(("Conchita", "Enrique", "Lucia", "Sergio"), "es-ES"),
}  # fmt: skip

_RESERVED = ("voice", "locale")


def placeholders(text: str) -> tuple[str, ...]:
    """The placeholder names in a prompt's text, in order, without repeats."""
    return tuple(dict.fromkeys(_PLACEHOLDER.findall(text)))


def fill(text: str, values: Mapping[str, str]) -> str:
    """The text with each {name} replaced; a missing value is a ValueError."""
    missing = [name for name in placeholders(text) if name not in values]
    if missing:
        raise ValueError("no value for " + ", ".join(f"{{{m}}}" for m in missing))
    return _PLACEHOLDER.sub(lambda m: values[m.group(1)], text)


def estimate_seconds(text: str) -> float:
    """How long text-to-speech takes to say `text` (see the module docstring)."""
    words = 2 * len(_PLACEHOLDER.findall(text))
    for token in _PLACEHOLDER.sub(" ", text).split():
        digits = sum(c.isdigit() for c in token)
        words += digits if digits > 1 else int(any(c.isalnum() for c in token))
    return max(MIN_SECONDS, words / WORDS_PER_SECOND + PAUSE_SECONDS)


def load_prompts(prompts_dir: Path, problems: Problems) -> PromptCatalog:
    """Every language's catalog and recordings; problems are added, never raised."""
    prompts: dict[str, dict[str, Prompt]] = {}
    voices: dict[str, str] = {}
    locales: dict[str, str] = {}
    if not prompts_dir.is_dir():
        problems.add(Pos(str(prompts_dir), 1, 1), "the prompts directory does not exist")
        return PromptCatalog({})
    for lang_dir in sorted(p for p in prompts_dir.iterdir() if p.is_dir()):
        lang = lang_dir.name
        if lang.startswith("."):
            continue
        if not is_known(lang):
            problems.add(
                Pos(str(lang_dir), 1, 1),
                unknown_language(lang) + ": a prompt directory is named after its language",
            )
            continue
        catalog = _read_catalog(lang, lang_dir / CATALOG_FILE, problems)
        if catalog is None:
            continue
        entries, voice, locale = catalog
        _add_recordings(lang_dir, entries, problems)
        prompts[lang] = entries
        locales[lang] = locale
        if voice:
            voices[lang] = voice
    _check_placeholders(prompts, problems)
    if not prompts:
        problems.add(Pos(str(prompts_dir), 1, 1), "no prompt catalogs: add <lang>/catalog.yaml")
    return PromptCatalog(prompts, voices, locales)


def _read_catalog(
    lang: str, path: Path, problems: Problems
) -> tuple[dict[str, Prompt], str | None, str] | None:
    if not path.is_file():
        problems.add(
            Pos(str(path), 1, 1),
            f"missing: the {lang} prompts need {path.name} with the text of each prompt",
        )
        return None
    try:
        root = load(path)
    except YamlSyntaxError as exc:
        problems.add(exc.problem.pos, exc.problem.message)
        return None
    return _CatalogReader(problems, lang).read(root)


class _CatalogReader(FieldReader):
    """One language's catalog: prompt ids to text, plus its `voice` and `locale`."""

    def __init__(self, problems: Problems, lang: str) -> None:
        super().__init__(problems)
        self.lang = lang

    def read(self, root: Node) -> tuple[dict[str, Prompt], str | None, str] | None:
        if not root.is_map:
            self.error(root.pos, f"a prompt catalog maps prompt ids to text, not {root.kind_name}")
            return None
        entries: dict[str, Prompt] = {}
        voice: tuple[str, Pos] | None = None
        locale_value: tuple[str, Pos] | None = None
        for key, pos, value in self.names(root, "the catalog"):
            if key in _RESERVED:
                text = self.text(value, key)
                if text and key == "voice":
                    voice = (text, value.pos)
                elif text:
                    locale_value = (text, value.pos)
            elif not PROMPT_ID.match(key):
                self.error(pos, f"prompt id '{key}' may hold only letters, digits, _ and -")
            else:
                prompt = self.prompt(key, pos, value)
                if prompt is not None:
                    entries[key] = prompt
        locale = self.locale(locale_value)
        for prompt in entries.values():
            if prompt.voice and prompt.pos:
                self.voice_ok(prompt.voice, locale, prompt.pos)
        if voice and not self.voice_ok(voice[0], locale, voice[1]):
            voice = None
        return entries, voice[0] if voice else None, locale

    def segments(self, key: str, value: Node) -> tuple[tuple[str, str], ...] | None:
        """`- text` (in the catalog's language) or `- {es: text}` items, said in order."""
        out: list[tuple[str, str]] = []
        for item in value.items():
            language: str | None = self.lang
            node = item
            if item.is_map:
                entries = list(item.entries())
                if len(entries) != 1:
                    self.error(item.pos, f"a part of prompt '{key}' is text, or one language "
                               "code with its text, like {es: \"Para español, oprima 2.\"}")
                    return None
                code, code_pos, node = entries[0]
                language = self.language(code, code_pos)
            text = self.text(node, f"a part of prompt '{key}'")
            if text is None or language is None:
                return None
            out.append((language, " ".join(text.split())))
        if not out:
            self.error(value.pos, f"prompt '{key}' is an empty list")
            return None
        return tuple(out)

    def prompt(self, key: str, pos: Pos, value: Node) -> Prompt | None:
        lang = self.lang
        voice: str | None = None
        if value.is_list:
            segments = self.segments(key, value)
            if segments is None:
                return None
            spoken = " ".join(part for _, part in segments)
            if _PLACEHOLDER.search(spoken):
                self.error(
                    value.pos, f"prompt '{key}' mixes languages: it cannot have placeholders"
                )
                return None
            if all(language == lang for language, _ in segments):
                segments = ()
            return Prompt(key, lang, spoken, estimate_seconds(spoken), pos=pos, segments=segments)
        if value.is_map:
            fields = self.fields(value, f"prompt '{key}'", ("text", "voice"), required=("text",),
                                 at=pos)
            if fields is None or "text" not in fields:
                return None
            if "voice" in fields:
                voice = self.text(fields["voice"].value, "voice")
            value = fields["text"].value
        text = self.text(value, f"the text of prompt '{key}'")
        if text is None:
            return None
        leftover = _PLACEHOLDER.sub("", text)
        if "{" in leftover or "}" in leftover:
            self.error(
                value.pos,
                f"prompt '{key}' has a brace that is not a placeholder: write {{name}} "
                "with letters, digits and _ only",
            )
            return None
        text = " ".join(text.split())
        return Prompt(key, lang, text, estimate_seconds(text), pos=pos, voice=voice)

    def locale(self, value: tuple[str, Pos] | None) -> str:
        """The catalog's `locale`, else the registry's for its language."""
        default = LANGUAGES[self.lang].locale
        if value is None:
            return default
        locale, pos = value
        m = _LOCALE.match(locale)
        if not m or m.group(1) != self.lang:
            self.error(
                pos, f"locale '{locale}' does not fit language {self.lang}: write e.g. {default}"
            )
            return default
        return locale

    def voice_ok(self, voice: str, locale: str, pos: Pos) -> bool:
        m = _VOICE.match(voice)
        if not m:
            self.error(
                pos,
                f"'{voice}' is not a Twilio voice: write Polly.<Name>, Google.<locale>-<name>, "
                "man or woman",
            )
            return False
        speaks = m.group(3) or _POLLY_LOCALES.get(voice.removeprefix("Polly.").split("-")[0])
        if voice.startswith("Polly.") and speaks is None:
            self.warn(pos, f"{voice} is not a voice this checker knows; check it speaks {locale}")
        elif speaks and speaks != locale:
            self.error(
                pos, f"{voice} speaks {speaks}, not {locale}: Twilio refuses the combination"
            )
            return False
        return True


def _add_recordings(lang_dir: Path, entries: dict[str, Prompt], problems: Problems) -> None:
    catalog = lang_dir / CATALOG_FILE
    for wav in sorted(lang_dir.glob("*.wav")):
        pos = Pos(str(wav), 1, 1)
        prompt = entries.get(wav.stem)
        if prompt is None:
            problems.add(
                pos,
                f"recording {wav.name} has no entry '{wav.stem}' in {catalog}: add its text "
                "there (transcripts and the time analysis need it)",
            )
            continue
        try:
            # The server loads every recording with this same rule at start-up.
            seconds = read_prompt_wav(wav).seconds
        except WavError as exc:
            problems.add(pos, f"recording {wav.name} cannot be used: {exc}")
            continue
        entries[wav.stem] = Prompt(
            prompt.id, prompt.language, prompt.text, seconds, wav, prompt.pos, prompt.voice
        )


def _check_placeholders(prompts: Mapping[str, Mapping[str, Prompt]], problems: Problems) -> None:
    first: dict[str, Prompt] = {}
    for lang in sorted(prompts):
        for prompt_id, prompt in prompts[lang].items():
            other = first.setdefault(prompt_id, prompt)
            mine, theirs = set(placeholders(prompt.text)), set(placeholders(other.text))
            if mine != theirs and prompt.pos is not None:
                problems.add(
                    prompt.pos,
                    f"prompt '{prompt_id}' uses {_names(mine)} in {lang} but {_names(theirs)} "
                    f"in {other.language}: every language must fill the same placeholders",
                )


def _names(names: set[str]) -> str:
    return ", ".join(f"{{{n}}}" for n in sorted(names)) or "no placeholders"
