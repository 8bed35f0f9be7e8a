"""What the caller hears: <Say>, <Play> and <Pause>, timed on the call clock.

Rendering (measuring) and playing are separate so that `<Gather>` can know
how long its prompts last before deciding where a barge-in cuts them.
"""

from __future__ import annotations

from dataclasses import dataclass

from ivr.sim.session import CallSession, Document, say_seconds, url_path
from ivr.sim.transcript import Entry, Heard, Paused, Played, Tones
from ivr.sim.twiml import Pause, Play, Say

LOOP_FOREVER = 1000  # Twilio repeats loop="0" this many times at most
TONE_SECONDS = 0.5  # one DTMF tone, or one 'w' wait, of <Play digits>

Prompt = Say | Play | Pause


@dataclass(frozen=True)
class Audio:
    verb: Prompt
    url: str  # resolved URL for <Play>, "" otherwise
    seconds: float  # total, loops included
    repeat: int = 1
    error: str | None = None
    shown: str = ""

    def entry(self, at: float, interrupted: bool = False) -> Entry:
        verb = self.verb
        if isinstance(verb, Say):
            return Heard(
                at, verb.text, verb.language, verb.voice, self.seconds, self.repeat, interrupted
            )
        if isinstance(verb, Play):
            if verb.digits:
                return Tones(at, verb.digits)
            measured = None if self.error else self.seconds / self.repeat
            return Played(
                at, self.url, measured, self.repeat, interrupted, self.error, self.shown
            )
        return Paused(at, self.seconds)


async def render(session: CallSession, document: Document, verb: Prompt) -> Audio:
    if isinstance(verb, Pause):
        return Audio(verb, "", float(verb.length))
    repeat = verb.loop or LOOP_FOREVER
    if isinstance(verb, Say):
        once = say_seconds(verb.text, session.cfg.speaking_rate)
        return Audio(verb, "", once * repeat, repeat)
    if verb.digits:
        return Audio(verb, "", TONE_SECONDS * len(verb.digits))
    url = session.resolve(document, verb.url)
    shown = url_path(url) if session.is_ours(url) else url
    seconds, error = await session.audio_seconds(url)
    if seconds is None:
        # Twilio logs the failed fetch and moves on to the next verb.
        return Audio(verb, url, 0.0, repeat, error or "unplayable", shown)
    return Audio(verb, url, seconds * repeat, repeat, shown=shown)


async def play(session: CallSession, audio: Audio, limit: float | None = None) -> bool:
    """Play `audio` (cut after `limit` seconds if given); False if the call ended."""
    if limit is not None and audio.seconds > limit:
        session.record(audio.entry(session.now, interrupted=True))
        return session.advance(limit)
    session.record(audio.entry(session.now))
    return session.advance(audio.seconds)


async def say_or_play(session: CallSession, document: Document, verb: Prompt) -> bool:
    return await play(session, await render(session, document, verb))
