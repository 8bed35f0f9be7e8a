"""Offline speech recognition of menu words with Vosk, off the event loop.

Shape:

* `SpeechModels` loads each language's Vosk model once (hundreds of MB and
  seconds each) and answers vocabulary questions for flow validation.
* `SpeechEngine` owns the bounded thread pool where every Vosk call runs;
  Vosk's C code releases the GIL, so decoding uses all cores while the event
  loop keeps serving calls.
* `ListenSession` is one menu's listening on one call: 20 ms mu-law frames
  go through an `EnergyGate`; silent frames stop there (no Vosk work, no
  recognizer even exists until the caller first makes a sound); when speech
  ends the session asks Vosk for its final result and decides.

Decisions, measured on the Korean model with espeak-ng speech through the
phone path (21 menu-word utterances at varied speed and pitch, 36
utterances of 18 other words; tests/speech, bench/speech_raw.py):

* Audio is decoded at 16 kHz after our half-band upsampler rather than
  handed to Vosk at 8 kHz for Kaldi to resample. Both recognised 20 of 21
  menu words, but 16 kHz rejected more of the other words: 26 of 36
  against 25 at the default threshold, 24 against 21 at 0.6, and more in
  every configuration tried. Small Vosk models are trained on 16 kHz
  audio. The upsampling costs ~50 us per 20 ms speech frame, against
  ~650 us for Vosk to decode it.
* The grammar is the menu phrases plus the model's unknown-word token
  repeated `unknown_weight` times. Vosk builds a bigram model from the
  phrase list, so repeating the token raises the garbage path's prior and
  more out-of-menu speech lands on it instead of on a menu word.
* Confidence comes from Vosk's n-best list, not its per-word confidences.
  With a grammar of a few words the per-word (MBR) confidence is 1.0 for
  most answers, right or wrong, so it can neither reject much nor choose
  between two languages (two recognizers both answering with 1.0). From
  the n-best list we get a posterior per interpretation (alternatives that
  mean the same phrase add up) and, for each language's best answer, the
  total log-likelihood of the same audio, which ranks the languages.
* Hearing one phrase several times ("영어 영어") counts as that phrase, the
  unknown token next to a phrase is ignored, and two different phrases in
  one utterance are ambiguous.
* Loud noise is not a word. With a grammar of a few words, line noise
  driven into clipping (pink noise, 60 Hz hum with its harmonics) decoded
  as a menu word with a posterior of 0.75 to 1.0 in 12 to 17 of 20 pieces:
  the n-best list only ranks the grammar's paths, and noise fits one of
  them. So a decision also needs a voice: `VoicingMeter` (ivr/speech/
  voicing.py) looks for a pitch that glides over at least 120 ms of the
  utterance; an utterance without one is noise (no decision, the menu
  keeps listening), whatever the recognizer made of it. Word timings
  from Vosk (SetWords) did not separate noise from speech (noise "words"
  of 0.66 to 0.72 s against 0.33 to 0.42 s of espeak speech, a spread
  real callers overlap), so they are not used.
* Known limit: a small grammar maps some out-of-menu words onto a menu word
  with full confidence (고양이 "cat" is heard as 영어). Menus should use
  words that sound unlike each other and unlike common answers.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import os
import re
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import Executor, Future
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

from ivr.speech.audio import EnergyGate, GateConfig, Upsampler, ulaw_to_pcm16
from ivr.speech.errors import SpeechConfigError
from ivr.speech.pool import PriorityPool
from ivr.speech.vocabulary import UNKNOWN_TOKENS, grammar_form
from ivr.speech.voicing import VoicingConfig, VoicingMeter

__all__ = [
    "ENV_PREFIX",
    "Decision",
    "ListenConfig",
    "ListenSession",
    "ListenStats",
    "Match",
    "NoMatch",
    "NoMatchReason",
    "SpeechConfigError",
    "SpeechEngine",
    "SpeechModels",
]

log = logging.getLogger(__name__)

ENV_PREFIX = "IVR_VOSK_MODEL_"
# Speech frames handed to the decoder in one job. Vosk costs the same fed
# 20 ms or 200 ms at a time (15.9 and 16.1 ms of CPU for a 1.1 s word), and
# its network computes in ~200 ms chunks anyway; each job costs ~0.1 ms of
# Python and two thread hops besides. A batch waits at most its length,
# and what is left is decoded as soon as the gate stops passing frames
# (past its hangover, before its end-of-speech wait is over), so the final
# result seldom waits for any.
BATCH_FRAMES = 10
_LANG_RE = re.compile(r"^[a-z][a-z0-9_]*$")

NoMatchReason = Literal[
    "silence",  # nothing louder than the line's noise was heard
    "noise",  # sound was heard but the recognizer found no word in it
    "unknown",  # words outside the menu (the unknown token), or a partial phrase
    "ambiguous",  # two different menu phrases in one utterance
    "low_confidence",  # a menu phrase, but below the confidence threshold
    "error",  # the recognizer failed; the caller should fall back to keys
    "closed",  # the session was closed before it decided
]


@dataclass(frozen=True)
class Match:
    """The caller said `word` (as written in the menu) in language `lang`."""

    lang: str
    word: str
    confidence: float
    heard: str = ""


@dataclass(frozen=True)
class NoMatch:
    """No menu word was recognised; `heard` is the raw best text, for logs."""

    reason: NoMatchReason
    heard: str = ""


Decision = Match | NoMatch


@dataclass(frozen=True)
class ListenConfig:
    """Recognition tuning shared by the sessions of an engine.

    `confidence_threshold` applies to the n-best posterior of the chosen
    phrase; `unknown_weight` is how many times the unknown token is listed
    in the grammar; `alternatives` is the n-best depth.
    """

    confidence_threshold: float = 0.75
    unknown_weight: int = 5
    alternatives: int = 5
    decode_rate: Literal[8000, 16000] = 16000
    gate: GateConfig = field(default_factory=GateConfig)
    voicing: VoicingConfig | None = field(default_factory=VoicingConfig)
    """None decides on the recognizer alone, noise included (for measurements)."""

    def __post_init__(self) -> None:
        if not 0.0 <= self.confidence_threshold <= 1.0:
            raise ValueError("confidence_threshold must be between 0 and 1")
        if self.unknown_weight < 1 or self.alternatives < 1:
            raise ValueError("unknown_weight and alternatives must be at least 1")
        if self.decode_rate not in (8000, 16000):
            raise ValueError("decode_rate must be 8000 or 16000")


_VOSK: Any = None


def vosk_module() -> Any:
    """Import Vosk on first use: it costs ~0.1 s, and `ivr validate` never needs it."""
    global _VOSK
    if _VOSK is None:
        coretype = openblas_coretype(_cpuinfo())
        if coretype:
            # Vosk's bundled OpenBLAS does not know recent CPUs and falls back to
            # its SSE3 kernels, doubling decode cost. Naming a core type the CPU
            # really supports (from its flags; a wrong one would crash) fixes it.
            os.environ.setdefault("OPENBLAS_CORETYPE", coretype)
        import vosk

        vosk.SetLogLevel(-1)  # Kaldi's chatter would flood the server log
        _VOSK = vosk
    return _VOSK


def _cpuinfo() -> str:
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as f:
            return f.read(65536)
    except OSError:
        return ""


def openblas_coretype(cpuinfo: str) -> str | None:
    """The fastest OpenBLAS x86 kernel family the CPU's flags allow, if any."""
    flags: set[str] = set()
    for line in cpuinfo.splitlines():
        if line.startswith("flags"):
            flags = set(line.partition(":")[2].split())
            break
    if {"avx512f", "avx512cd", "avx512bw", "avx512dq", "avx512vl"} <= flags:
        return "SkylakeX"
    if {"avx2", "fma"} <= flags:
        return "Haswell"
    if "avx" in flags:
        return "Sandybridge"
    return None


@dataclass(frozen=True)
class _LoadedModel:
    lang: str
    path: Path
    origin: str
    unknown_token: str | None
    model: Any = field(repr=False, compare=False)

    def knows(self, word: str) -> bool:
        return bool(self.model.vosk_model_find_word(word) >= 0)


def check_model_dir(path: Path, origin: str) -> bool:
    """Raise unless `path` looks like a Vosk model; True if it takes grammars."""
    if not path.exists():
        raise SpeechConfigError(f"{origin}={path}: no such directory")
    if not path.is_dir():
        raise SpeechConfigError(f"{origin}={path}: not a directory")
    if not ((path / "am" / "final.mdl").is_file() or (path / "final.mdl").is_file()):
        raise SpeechConfigError(f"{origin}={path}: not a Vosk model (no am/final.mdl)")
    graph = path / "graph"
    static = (graph / "HCLG.fst").is_file() or (path / "HCLG.fst").is_file()
    dynamic = (graph / "HCLr.fst").is_file() and (graph / "Gr.fst").is_file()
    if not (static or dynamic):
        raise SpeechConfigError(
            f"{origin}={path}: not a Vosk model (no graph/HCLG.fst nor graph/HCLr.fst + Gr.fst)"
        )
    return dynamic


class SpeechModels:
    """Vosk models by language, loaded once and shared by every call.

    `paths` maps a language code ("en", "es") to a model directory;
    `origins` says where each path came from (an environment variable name)
    so errors point the administrator at the right setting. Two languages
    may name the same directory: the model is loaded once.
    """

    def __init__(
        self,
        paths: Mapping[str, str | os.PathLike[str]],
        *,
        origins: Mapping[str, str] | None = None,
    ) -> None:
        vosk: Any = vosk_module() if paths else None
        loaded: dict[str, _LoadedModel] = {}
        by_dir: dict[Path, Any] = {}
        for lang, raw in sorted(paths.items()):
            origin = (origins or {}).get(lang, f"speech model for {lang!r}")
            if not _LANG_RE.match(lang):
                raise SpeechConfigError(f"{origin}: invalid language code {lang!r}")
            path = Path(raw).expanduser()
            if not check_model_dir(path, origin):
                log.warning(
                    "%s=%s: a static-graph model ignores menu grammars; it decodes"
                    " with its whole vocabulary, slower and with no unknown-word path."
                    " Prefer a small model (graph/HCLr.fst + Gr.fst)",
                    origin,
                    path,
                )
            key = path.resolve()
            model = by_dir.get(key)
            if model is None:
                try:
                    model = vosk.Model(str(path))
                except Exception as exc:  # Vosk raises a bare Exception
                    raise SpeechConfigError(
                        f"{origin}={path}: Vosk could not load the model"
                        " (damaged or incompatible files)"
                    ) from exc
                by_dir[key] = model
            unknown = next(
                (tok for tok in UNKNOWN_TOKENS if model.vosk_model_find_word(tok) >= 0), None
            )
            if unknown is None:
                log.warning(
                    "%s: model has no unknown-word token; out-of-menu speech"
                    " can only be rejected by confidence",
                    origin,
                )
            loaded[lang] = _LoadedModel(lang, path, origin, unknown, model)
        self._models = loaded

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> SpeechModels:
        """Load every `IVR_VOSK_MODEL_<LANG>` that is set and not empty."""
        env = os.environ if environ is None else environ
        paths: dict[str, str] = {}
        origins: dict[str, str] = {}
        for name, value in env.items():
            if not name.startswith(ENV_PREFIX) or not value.strip():
                continue
            lang = name[len(ENV_PREFIX) :].lower()
            if not _LANG_RE.match(lang):
                raise SpeechConfigError(f"{name}: cannot read a language code from the name")
            paths[lang] = value.strip()
            origins[lang] = name
        return cls(paths, origins=origins)

    @property
    def languages(self) -> tuple[str, ...]:
        return tuple(self._models)

    def __contains__(self, lang: object) -> bool:
        return lang in self._models

    def _get(self, lang: str) -> _LoadedModel:
        try:
            return self._models[lang]
        except KeyError:
            have = ", ".join(self._models) or "none"
            raise SpeechConfigError(
                f"no speech model for language {lang!r} (loaded: {have});"
                f" set {ENV_PREFIX}{lang.upper()}"
            ) from None

    def path(self, lang: str) -> Path:
        return self._get(lang).path

    def unknown_token(self, lang: str) -> str | None:
        """The model's own unknown-word token ("[unk]", "<UNK>"), if any."""
        return self._get(lang).unknown_token

    def grammar_form(self, lang: str, phrase: str) -> str | None:
        """`phrase` spelled as the model knows it, or None if it cannot be recognised."""
        return grammar_form(phrase, self._get(lang).knows)

    def vocabulary_has(self, lang: str, phrase: str) -> bool:
        """Whether every word of `phrase` is in the model's vocabulary."""
        return self.grammar_form(lang, phrase) is not None

    def missing_words(self, lang: str, phrases: Iterable[str]) -> list[str]:
        """The phrases (as given) that the model cannot recognise, in order."""
        return [p for p in phrases if not self.vocabulary_has(lang, p)]


# ------------------------------------------------------------ interpretation

# Readings that are not a menu phrase. The leading space keeps them apart
# from every phrase, which is normalised and never starts with one.
_EMPTY = " empty"
_UNKNOWN = " unknown"
_AMBIGUOUS = " ambiguous"


@dataclass(frozen=True)
class _Heard:
    """One language's reading of one utterance."""

    lang: str
    kind: str  # a grammar phrase, or _EMPTY / _UNKNOWN / _AMBIGUOUS
    confidence: float
    score: float
    text: str


def _meaning(text: str, phrases: Mapping[tuple[str, ...], str], unknown: str | None) -> str:
    """What an alternative's text means: a grammar phrase or a category."""
    tokens = text.split()
    if not tokens:
        return _EMPTY
    words = [t for t in tokens if t != unknown]
    if not words:
        return _UNKNOWN
    longest = max(len(key) for key in phrases)
    found: set[tuple[str, ...]] = set()
    i = 0
    while i < len(words):
        for size in range(min(longest, len(words) - i), 0, -1):
            key = tuple(words[i : i + size])
            if key in phrases:
                found.add(key)
                i += size
                break
        else:
            return _UNKNOWN  # a word of a phrase without the rest of it
    if len(found) > 1:
        return _AMBIGUOUS
    return " ".join(found.pop())


def _interpret(
    lang: str,
    alternatives: Sequence[tuple[str, float]],
    phrases: Mapping[tuple[str, ...], str],
    unknown: str | None,
) -> _Heard:
    """Posterior of the best alternative's meaning over the n-best list."""
    if not alternatives:
        return _Heard(lang, _EMPTY, 1.0, -math.inf, "")
    best = max(score for _, score in alternatives)
    mass: dict[str, float] = {}
    for text, score in alternatives:
        meaning = _meaning(text, phrases, unknown)
        mass[meaning] = mass.get(meaning, 0.0) + math.exp(score - best)
    top_text, top_score = alternatives[0]
    top = _meaning(top_text, phrases, unknown)
    return _Heard(lang, top, mass[top] / sum(mass.values()), top_score, top_text)


def _decide(
    heard: Sequence[_Heard],
    words: Mapping[str, Mapping[str, str]],
    threshold: float,
) -> Decision | None:
    """One decision from every language's reading; None means only noise was heard."""
    special = (_EMPTY, _UNKNOWN, _AMBIGUOUS)
    matches = [h for h in heard if h.kind not in special and h.confidence >= threshold]
    if matches:
        # Scores of the same audio rank the languages; confidences saturate.
        win = max(matches, key=lambda h: h.score)
        return Match(win.lang, words[win.lang][win.kind], win.confidence, win.text)
    text = next((h.text for h in heard if h.kind != _EMPTY), "")
    if any(h.kind not in special for h in heard):
        return NoMatch("low_confidence", text)
    if any(h.kind == _AMBIGUOUS for h in heard):
        return NoMatch("ambiguous", text)
    if any(h.kind == _UNKNOWN for h in heard):
        return NoMatch("unknown", text)
    return None


# ------------------------------------------------------------ engine, sessions

_warned: set[tuple[str, str]] = set()


def _warn_ignored(ignored: Mapping[str, Sequence[str]]) -> None:
    """Warn once per word: flow validation should have caught it already."""
    new = [(lang, word) for lang, words in ignored.items() for word in words]
    new = [item for item in new if item not in _warned]
    if new:
        _warned.update(new)
        log.warning("menu words the speech models cannot recognise (ignored): %s", new)


class SpeechEngine:
    """The models plus the bounded pool where all decoding happens."""

    def __init__(
        self,
        models: SpeechModels,
        *,
        max_workers: int | None = None,
        config: ListenConfig | None = None,
    ) -> None:
        workers = max_workers if max_workers is not None else (os.cpu_count() or 1)
        if workers < 1:
            raise ValueError("max_workers must be at least 1")
        self.models = models
        self.config = config or ListenConfig()
        self.max_workers = workers
        self.executor: Executor = PriorityPool(workers, "vosk")
        self._lock = threading.Lock()
        self._open_sessions = 0

    @property
    def open_sessions(self) -> int:
        return self._open_sessions

    def _count_session(self, delta: int) -> None:
        with self._lock:
            self._open_sessions += delta

    def listen(
        self, grammars: Mapping[str, Sequence[str]], *, config: ListenConfig | None = None
    ) -> ListenSession:
        """Start listening for `grammars` ({lang: [menu words or phrases]})."""
        return ListenSession(self, grammars, config=config)

    def shutdown(self, *, wait: bool = True) -> None:
        self.executor.shutdown(wait=wait, cancel_futures=True)


class _Channel:
    """One recognizer of a session, for one language or several sharing a model.

    Touched only by the session's job. `menus` maps each language to its
    grammar forms; languages share a channel only when their forms differ,
    so a recognised phrase names its language.
    """

    def __init__(
        self,
        menus: Mapping[str, Sequence[str]],
        model: Any,
        unknown: str | None,
        config: ListenConfig,
    ) -> None:
        self.lang = next(iter(menus))
        self.lang_of = {form: lang for lang, forms in menus.items() for form in forms}
        self.phrases = {tuple(form.split()): form for form in self.lang_of}
        self.model = model
        self.unknown = unknown
        self.config = config
        entries = list(self.lang_of)
        if unknown is not None:
            # The garbage path keeps the prior it has against one language's
            # phrases: `unknown_weight` entries per language in the channel.
            entries += [unknown] * (config.unknown_weight * len(menus))
        self.grammar_json = json.dumps(entries, ensure_ascii=False)
        self.recognizer: Any = None

    def accept(self, pcm: bytes) -> bool:
        """Decode `pcm`; True if this created the recognizer (lazily, on first sound)."""
        if not pcm:
            return False
        if self.recognizer is None:
            vosk = vosk_module()
            rec = vosk.KaldiRecognizer(self.model, self.config.decode_rate, self.grammar_json)
            rec.SetMaxAlternatives(self.config.alternatives)
            self.recognizer = rec
            created = True
        else:
            created = False
        self.recognizer.AcceptWaveform(pcm)
        return created

    def final(self) -> _Heard:
        if self.recognizer is None:
            return _Heard(self.lang, _EMPTY, 1.0, -math.inf, "")
        result = json.loads(self.recognizer.FinalResult())
        alternatives = [
            (str(alt.get("text", "")), float(alt.get("confidence", 0.0)))
            for alt in result.get("alternatives", [])
        ]
        if alternatives == [("", 1.0)] or all(not text for text, _ in alternatives):
            alternatives = []  # Vosk's stand-in for "nothing decoded"
        heard = _interpret(self.lang, alternatives, self.phrases, self.unknown)
        lang = self.lang_of.get(heard.kind, self.lang)
        return heard if lang == self.lang else replace(heard, lang=lang)


def _channels(
    menus: Mapping[str, dict[str, str]], models: Mapping[str, _LoadedModel], config: ListenConfig
) -> list[_Channel]:
    """The recognizers a session needs: one per model, unless two languages share a form.

    Two languages configured with the same model directory (one model
    loaded once) would otherwise decode every word twice with the same
    acoustic model: one recognizer with both menus gives each phrase's
    score on the same audio, which is how `_decide` ranks languages anyway.
    """
    groups: dict[int, list[str]] = {}
    for lang in menus:
        groups.setdefault(id(models[lang].model), []).append(lang)
    channels: list[_Channel] = []
    for langs in groups.values():
        forms = [form for lang in langs for form in menus[lang]]
        shared = len(set(forms)) == len(forms)
        for part in [langs] if shared else [[lang] for lang in langs]:
            loaded = models[part[0]]
            channels.append(
                _Channel(
                    {lang: list(menus[lang]) for lang in part},
                    loaded.model,
                    loaded.unknown_token,
                    config,
                )
            )
    return channels


@dataclass
class ListenStats:
    """Work done by one session; frames are 20 ms each."""

    frames_fed: int = 0
    frames_decoded: int = 0
    decode_jobs: int = 0
    recognizers_created: int = 0
    utterances: int = 0
    unvoiced_utterances: int = 0  # decoded, but no voice in them: treated as noise


class ListenSession:
    """Listening for one menu on one call.

    Feed every inbound 20 ms mu-law frame to `feed`; it returns a `Decision`
    when an utterance has ended and been decided, else None (at once: the
    decoding runs in the engine's pool, at most one job per session; frames
    arriving meanwhile, and up to `BATCH_FRAMES` of speech, are batched into
    the next job). Call `finish` when the menu times out (or the caller
    pressed a key) to decide with what was heard so far; call `close` when
    the call or stream ends. Neither `feed` nor `finish` raises on
    recognizer failure: the decision is then `NoMatch("error")`.

    After a decision, `feed` ignores audio and returns None; `decision`
    and `finish()` give the decision again.
    """

    def __init__(
        self,
        engine: SpeechEngine,
        grammars: Mapping[str, Sequence[str]],
        *,
        config: ListenConfig | None = None,
    ) -> None:
        self.engine = engine
        self.config = config or engine.config
        self.stats = ListenStats()
        self.decision: Decision | None = None
        # Seconds from the end of the utterance (or the `finish` call) to the decision.
        self.decided_in: float | None = None
        self.speech_started = False
        self.ignored_words: dict[str, list[str]] = {}
        if not grammars:
            raise ValueError("a listen session needs at least one language")
        words: dict[str, dict[str, str]] = {}
        for lang, menu in grammars.items():
            if isinstance(menu, str):
                raise TypeError(f"words for {lang!r} must be a list of phrases, not a string")
            forms: dict[str, str] = {}
            for phrase in menu:
                form = engine.models.grammar_form(lang, phrase)
                if form is None:
                    self.ignored_words.setdefault(lang, []).append(phrase)
                    continue
                forms.setdefault(form, phrase)
            if not forms:
                continue
            words[lang] = forms
        _warn_ignored(self.ignored_words)
        channels = _channels(words, {lang: engine.models._get(lang) for lang in words}, self.config)
        if not channels:
            raise SpeechConfigError(
                f"none of the menu words can be recognised by the speech models: {dict(grammars)}"
            )
        self._words = words
        self._channels = channels
        self._gate = EnergyGate(self.config.gate)
        self._upsampler = Upsampler() if self.config.decode_rate == 16000 else None
        voicing = self.config.voicing
        self._voicing = VoicingMeter(voicing) if voicing is not None else None
        self._pending = bytearray()
        self._pending_frames = 0
        self._draining = False  # no batch to wait for: decode pending frames at once
        self._inflight: asyncio.Future[Any] | None = None
        self._queued_job: Future[Any] | None = None  # the job in flight, in the pool's terms
        self._finalizing = False
        self._failed = False
        self._closed = False
        self._heard_noise = False
        self._lock = asyncio.Lock()
        engine._count_session(+1)

    # -------------------------------------------------------------- public

    @property
    def in_speech(self) -> bool:
        """True while an utterance is in progress (useful for barge-in)."""
        return self._gate.in_speech

    async def feed(self, mulaw_frame: bytes) -> Decision | None:
        """Take one inbound frame; return the decision once one is made."""
        if self.decision is not None or self._closed:
            return None
        self.stats.frames_fed += 1
        step = self._gate.push(mulaw_frame)
        if step.speech_started:
            self.speech_started = True
        if step.frames:
            for frame in step.frames:
                self._pending += frame
            self._pending_frames += len(step.frames)
            self._draining = False
            if self._pending_frames >= BATCH_FRAMES:
                self._kick()
        elif self._pending:
            # The gate holds frames back (quiet past its hangover) or the
            # utterance just ended: decode what is left now (or when the
            # job in flight ends), so that the final result does not wait for it.
            self._draining = True
            self._kick()
        if self._failed:
            return self._conclude(NoMatch("error"), time.perf_counter())
        if step.speech_ended:
            started = time.perf_counter()
            decision = await self._finalize()
            if decision is not None:
                return self._conclude(decision, started)
            self._heard_noise = True
        return None

    async def finish(self) -> Decision:
        """Decide now with whatever was heard, then free the recognizers."""
        if self.decision is not None:
            return self.decision
        if self._closed:
            return NoMatch("closed")
        started = time.perf_counter()
        decision: Decision | None = None
        if self._failed:
            decision = NoMatch("error")
        elif self._gate.in_speech or self._pending or self._inflight is not None:
            self._gate.reset()
            decision = await self._finalize()
        if decision is None:
            decision = NoMatch("noise" if self._heard_noise else "silence")
        return self._conclude(decision, started)

    def close(self) -> None:
        """Stop listening and free the recognizers (after a running job ends)."""
        if self._closed:
            return
        self._closed = True
        self._pending.clear()
        self.engine._count_session(-1)
        if self._inflight is None:
            self._release()

    # -------------------------------------------------------------- internals

    def _conclude(self, decision: Decision, started: float) -> Decision:
        """Keep the first decision, and the time it took since `started`."""
        if self.decision is None:
            self.decision = decision
            self.decided_in = time.perf_counter() - started
        self.close()
        return self.decision

    def _release(self) -> None:
        for channel in self._channels:
            channel.recognizer = None  # Vosk frees it when the last reference goes

    def _take_pending(self) -> bytes:
        data = bytes(self._pending)
        self._pending.clear()
        self.stats.frames_decoded += self._pending_frames
        self._pending_frames = 0
        return data

    def _kick(self) -> None:
        if self._inflight is not None or self._finalizing or self._closed or not self._pending:
            return
        self._submit(self._decode_job, self._take_pending())

    def _submit(
        self, job: Callable[[bytes], Any], data: bytes, *, urgent: bool = False
    ) -> asyncio.Future[Any] | None:
        """Run `job(data)` in the pool as the session's one job in flight.

        An urgent job (a final result a caller is waiting for) goes ahead of
        other calls' streaming chunks.
        """
        self.stats.decode_jobs += 1
        executor = self.engine.executor
        try:
            if isinstance(executor, PriorityPool):
                submitted = (executor.submit_first if urgent else executor.submit)(job, data)
                self._queued_job = submitted
                future = asyncio.wrap_future(submitted)
            else:
                future = asyncio.get_running_loop().run_in_executor(executor, job, data)
        except RuntimeError as exc:  # the pool was shut down under us
            self._failed = True
            log.error("speech decoding unavailable: %s", exc)
            return None
        self._inflight = future
        future.add_done_callback(self._on_job_done)
        return future

    def _on_job_done(self, future: asyncio.Future[Any]) -> None:
        self._inflight = None
        self._queued_job = None
        if future.cancelled():
            self._failed = True
        elif (exc := future.exception()) is not None:
            self._failed = True
            log.error("speech decoding failed", exc_info=exc)
        if self._closed:
            self._release()
        elif self._draining or self._pending_frames >= BATCH_FRAMES:
            self._kick()

    def _decode_job(self, mulaw: bytes) -> bool:
        if self._closed:
            return False
        pcm = ulaw_to_pcm16(mulaw)
        if self._voicing is not None:
            self._voicing.push(pcm)
        if self._upsampler is not None:
            pcm = self._upsampler.push(pcm)
        created = 0
        for channel in self._channels:
            if self._closed:
                break
            created += channel.accept(pcm)
        self.stats.recognizers_created += created
        return True

    def _final_job(self, mulaw: bytes) -> tuple[list[_Heard], bool]:
        """Every language's reading of the utterance, and whether it held a voice."""
        self._decode_job(mulaw)
        if self._upsampler is not None:
            tail = self._upsampler.flush()
            for channel in self._channels:
                if channel.recognizer is not None and tail:
                    channel.recognizer.AcceptWaveform(tail)
        # FinalResult also resets each recognizer for the next utterance.
        heard = [channel.final() for channel in self._channels if not self._closed]
        voiced = True
        if self._voicing is not None:
            voiced = self._voicing.speech_like
            self._voicing.reset()
        return heard, voiced

    async def _finalize(self) -> Decision | None:
        """Final result of the current utterance; None if it held no words."""
        async with self._lock:
            if self.decision is not None:
                return self.decision
            self._finalizing = True
            try:
                if self._queued_job is not None and isinstance(
                    self.engine.executor, PriorityPool
                ):
                    # The caller is waiting: this call's streaming job, if still
                    # queued behind other calls' streaming, goes first as well.
                    self.engine.executor.promote(self._queued_job)
                while self._inflight is not None:
                    await asyncio.wait({self._inflight})
                if self._failed:
                    return NoMatch("error")
                if self._closed:
                    return NoMatch("closed")
                self.stats.utterances += 1
                future = self._submit(self._final_job, self._take_pending(), urgent=True)
                if future is None:
                    return NoMatch("error")
                try:
                    heard, voiced = await future
                except Exception:  # logged by _on_job_done
                    return NoMatch("error")
                if self._closed:
                    return NoMatch("closed")
                if not voiced:
                    self.stats.unvoiced_utterances += 1
                    return None  # noise, whatever the grammar fitted to it
                return _decide(heard, self._words, self.config.confidence_threshold)
            finally:
                self._finalizing = False
