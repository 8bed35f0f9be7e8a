"""The one module that writes TwiML.

Runtime actions and transfer steps become `VoiceResponse` documents here,
with absolute callback URLs under IVR_PUBLIC_URL (Twilio signs the URL it
was given, so the URL must be exactly the one we validate against).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from urllib.parse import urlencode

from twilio.twiml.voice_response import Dial, Gather, VoiceResponse

from ivr.errors import ContentError
from ivr.flow.model import PromptCatalog
from ivr.flow.prompts import fill
from ivr.flow.runtime import Action, Ask, HangUp, Speak, TransferTo
from ivr.flow.system_prompts import (
    COUNSELOR_GOODBYES,
    HOLD_MUSIC,
    HOLD_REASSURANCE,
    STAFF_LANGUAGE,
    WHISPER,
)
from ivr.languages import SAY_LOCALES
from ivr.routing.location import is_dialable
from ivr.routing.steps import DialStep, Step

HOLD_PAUSE = 20  # seconds of quiet between reassurances without hold music
MOVE_PAUSE = 5  # seconds a caller being moved to the backup line waits per round
TURN_CACHE_SIZE = 4096
COUNSELOR_WAIT_PAUSE = 5  # seconds; the wait URL is requested again after it
# Seconds a listening menu's spoken prompt waits for a key before its stream opens.
LISTEN_KEY_WINDOW = 1


# Where the CallSid goes in a transfer turn rendered once for every call; a
# CallSid in which URL-encoding and XML escaping change nothing (Twilio's: CA
# and 32 hex digits) replaces it verbatim.
_SID_MARK = "CallSidMark7f3a9c"
_VERBATIM = re.compile(r"[A-Za-z0-9_.-]+")


def _marks(step: Step) -> int:
    """The CallSid appears twice in a warm step's <Conference> (its name and its
    wait URL) and nowhere in a dial step's <Dial>."""
    return 0 if isinstance(step, DialStep) else 2


class MissingPrompt(ContentError, LookupError):
    """A prompt the call should hear is not in the catalog.

    Validation makes this unreachable; should it happen anyway, the turn must
    fail loudly (the voice webhook's fail-safe takes the caller to the backup
    line and logs it) rather than leave out words the caller needed.
    """

    def __init__(self, language: str, prompt_id: str) -> None:
        super().__init__(f"prompt '{prompt_id}' is not in the {language} catalog")
        self.language = language
        self.prompt_id = prompt_id


class Renderer:
    def __init__(
        self, public_url: str, prompts: PromptCatalog, caller_id: str, version: str | None = None
    ) -> None:
        self.public_url = public_url
        self.prompts = prompts
        self.caller_id = caller_id  # our own number, for legs and <Dial>s we originate
        # The content version the prompts are from: recording URLs name it, so a
        # call hears its own version's recordings whichever instance serves them.
        self.version = version
        # Most turns hold nothing of the caller (the greeting and menu at seq 1
        # are the same for every call): render each distinct one once.
        self._turns: dict[tuple[tuple[Action, ...], int, Step | None], str] = {}

    def url(self, path: str, **query: object) -> str:
        qs = urlencode({k: v for k, v in query.items() if v is not None})
        return f"{self.public_url}{path}" + (f"?{qs}" if qs else "")

    def recording_url(self, language: str, prompt_id: str) -> str:
        return self.url(f"/prompts/{language}/{prompt_id}.wav", v=self.version)

    def _speak(
        self,
        target: VoiceResponse | Gather,
        language: str,
        prompt_id: str,
        values: Mapping[str, object] | None = None,
    ) -> None:
        prompt = self.prompts.get(language, prompt_id)
        if prompt is None:
            raise MissingPrompt(language, prompt_id)
        if prompt.recording is not None and not values:
            target.play(self.recording_url(language, prompt_id))
            return
        if prompt.segments:
            for segment_language, part in prompt.segments:
                voice = prompt.voice if segment_language == language else None
                self._say(target, segment_language, part, voice)
            return
        # A placeholder without a value raises: validation allows only the ones
        # the server fills, so a gap here is a bug to hear about, not a blank.
        text = fill(prompt.text, {k: str(v) for k, v in (values or {}).items()})
        self._say(target, language, text, prompt.voice)

    def _say(
        self, target: VoiceResponse | Gather, language: str, text: str, voice: str | None
    ) -> None:
        voice = voice or self.prompts.voices.get(language)
        locale = self.prompts.locales.get(language) or SAY_LOCALES.get(language, language)
        target.say(text, language=locale, voice=voice)

    def flow_turn(
        self,
        actions: Sequence[Action],
        seq: int,
        *,
        listen_token: str | None = None,
        then: tuple[str, Step] | None = None,
    ) -> str:
        """TwiML for a flow turn.

        With a `listen_token` the menu listens over a media stream instead of
        a <Gather>; `then` is a transfer's first step (conference name, step).
        """
        if listen_token is not None:
            return self._flow_turn(actions, seq, listen_token, then)  # the call's own token
        if then is None:
            return self._kept(actions, seq, None)
        # A transfer turn is the same for every call but for the call's own
        # conference: kept with a mark where the CallSid goes (the menu answer's
        # TwiML was a sixth of its CPU).
        conference, step = then
        sid = conference.removeprefix("call-")
        if conference.startswith("call-") and _VERBATIM.fullmatch(sid):
            text = self._kept(actions, seq, step)
            if text.count(_SID_MARK) == _marks(step):  # else the words say the mark too
                return text.replace(_SID_MARK, sid)
        return self._flow_turn(actions, seq, None, then)

    def _kept(self, actions: Sequence[Action], seq: int, step: Step | None) -> str:
        """A turn rendered once (with the CallSid's mark when it transfers)."""
        key = (tuple(actions), seq, step)
        text = self._turns.get(key)
        if text is None:
            then = None if step is None else ("call-" + _SID_MARK, step)
            text = self._flow_turn(actions, seq, None, then)
            if len(self._turns) < TURN_CACHE_SIZE:
                self._turns[key] = text
        return text

    def _flow_turn(
        self,
        actions: Sequence[Action],
        seq: int,
        listen_token: str | None,
        then: tuple[str, Step] | None,
    ) -> str:
        response = VoiceResponse()
        for action in actions:
            match action:
                case Speak(prompt=prompt, language=language):
                    self._speak(response, language, prompt)
                case Ask() if listen_token:
                    self._listen(response, action, seq, listen_token)
                case Ask():
                    self._gather(response, action, seq)
                case HangUp():
                    response.hangup()
                case _:
                    pass  # TransferTo: `then` says how
        if then is not None:
            language = next((a.language for a in actions if isinstance(a, TransferTo)), "en")
            self._step(response, then[0], then[1], seq, language)
        return str(response)

    def step(
        self, conference: str, step: Step, seq: int, language: str, prompt: str | None = None
    ) -> str:
        """TwiML for a transfer step on its own (the next tier), after `prompt`."""
        response = VoiceResponse()
        if prompt is not None:
            self._speak(response, language, prompt)
        self._step(response, conference, step, seq, language)
        return str(response)

    def _step(
        self, response: VoiceResponse, conference: str, step: Step, seq: int, language: str
    ) -> None:
        if isinstance(step, DialStep):
            self._dial(response, step, seq)
            return
        # The caller waits alone (startConferenceOnEnter false: hold audio from
        # waitUrl) until a counselor who accepted joins and starts it.
        dial = response.dial(action=self.url("/twilio/conference-end", seq=seq), method="POST")
        dial.conference(
            conference,
            start_conference_on_enter=False,
            end_conference_on_exit=True,
            beep=False,
            wait_url=self.url("/twilio/hold", lang=language, call=conference.removeprefix("call-")),
            wait_method="POST",
        )

    def hold(self, language: str, call_sid: str, rounds: int) -> str:
        """The wait URL document: reassurance then hold audio, then the next round
        (the count lets the wait URL notice a caller who has held too long)."""
        response = VoiceResponse()
        self._speak(response, language, HOLD_REASSURANCE.id)
        music = self.prompts.get(language, HOLD_MUSIC.id)
        if music is not None and music.recording is not None:
            response.play(self.recording_url(language, HOLD_MUSIC.id))
        else:  # optional: validation refuses a hold_music entry without its recording
            response.pause(length=HOLD_PAUSE)
        response.redirect(self.url("/twilio/hold", lang=language, call=call_sid, n=rounds + 1),
                          method="POST")
        return str(response)

    def hold_while_moved(self, language: str, call_sid: str, rounds: int) -> str:
        """A wait document with no prompt, for a caller the REST API is taking to
        the backup line because their hold document could not be rendered: a
        wait URL may not <Dial> (Twilio error 13238), so the next round comes
        back soon, and moves them again if the first move failed."""
        response = VoiceResponse()
        response.pause(length=MOVE_PAUSE)
        response.redirect(self.url("/twilio/hold", lang=language, call=call_sid, n=rounds + 1),
                          method="POST")
        return str(response)

    def whisper(self, offer_id: int, values: Mapping[str, object]) -> str:
        """What a counselor hears on answering: who is waiting, and press 1."""
        response = VoiceResponse()
        action = self.url("/twilio/whisper-answer", offer=offer_id)
        gather = response.gather(input="dtmf", num_digits=1, timeout=8, action=action,
                                 method="POST")
        self._speak(gather, STAFF_LANGUAGE, WHISPER.id, values)
        response.redirect(action, method="POST")  # no key: not accepted
        return str(response)

    def join_conference(self, conference: str, offer_id: int) -> str:
        """The counselor joins the caller. The wait URL is requested only if
        they find the conference empty (the caller left): never hold music for
        nobody, the server sends them off instead."""
        response = VoiceResponse()
        dial = response.dial()
        dial.conference(conference, start_conference_on_enter=True,
                        end_conference_on_exit=True, beep=False,
                        wait_url=self.url("/twilio/counselor-wait", offer=offer_id),
                        wait_method="POST")
        return str(response)

    def counselor_waiting(self) -> str:
        """What a counselor alone in a conference hears until the REST API moves
        them to their goodbye: quiet (a wait document allows no <Hangup>)."""
        response = VoiceResponse()
        response.pause(length=COUNSELOR_WAIT_PAUSE)
        return str(response)

    def counselor_goodbye(self, prompt_id: str) -> str:
        """A counselor leg's last words, then hang up: one of the declared goodbyes
        (an undeclared id was never checked in the catalogs, so it is refused)."""
        if prompt_id not in COUNSELOR_GOODBYES:
            raise ValueError(f"'{prompt_id}' is not a counselor goodbye declared in "
                             "ivr.flow.system_prompts")
        response = VoiceResponse()
        self._speak(response, STAFF_LANGUAGE, prompt_id)
        response.hangup()
        return str(response)

    def _gather(self, response: VoiceResponse, ask: Ask, seq: int) -> None:
        action = self.url("/twilio/gather", seq=seq)
        gather = response.gather(
            input="dtmf",
            num_digits=1,
            timeout=max(1, round(ask.timeout)),
            action=action,
            method="POST",
        )
        self._speak(gather, ask.language, ask.prompt)
        # Silence falls through the Gather to this Redirect: the same callback
        # without Digits is the no-input event.
        response.redirect(action, method="POST")

    def _listen(self, response: VoiceResponse, ask: Ask, seq: int, token: str) -> None:
        prompt = self.prompts.get(ask.language, ask.prompt)
        if prompt is None or prompt.recording is None:
            # Without a recording the stream has nothing to play: the prompt is
            # spoken first. Twilio hears keys only inside a <Gather> (a key
            # pressed during a bare <Say> is lost), so the prompt is nested in
            # one whose action is this menu's answer, like a plain menu's. With
            # no key it falls through to the stream after its shortest timeout
            # (a positive integer of seconds: 1), which then listens for words.
            gather = response.gather(
                input="dtmf",
                num_digits=1,
                timeout=LISTEN_KEY_WINDOW,
                action=self.url("/twilio/gather", seq=seq),
                method="POST",
            )
            self._speak(gather, ask.language, ask.prompt)
        connect = response.connect(action=self.url("/twilio/listen", seq=seq), method="POST")
        stream = connect.stream(url=self.ws_url)
        stream.parameter(name="token", value=token)

    @property
    def ws_url(self) -> str:
        scheme, _, rest = self.public_url.partition("://")
        return f"{'wss' if scheme == 'https' else 'ws'}://{rest}/twilio/media"

    def dial_caller_id(self, caller: str | None) -> str | None:
        """The callerId for <Dial>s of a call whose From is `caller`."""
        return dial_caller_id(caller, self.caller_id)

    def _dial(self, response: VoiceResponse, step: DialStep, seq: int) -> None:
        dial: Dial = response.dial(
            action=self.url("/twilio/dial", seq=seq),
            method="POST",
            timeout=step.timeout,
            caller_id=step.caller_id,
        )
        for target in step.targets:
            if target.startswith("sip:"):
                dial.sip(target)
            else:
                dial.number(target)

    def goodbye(self) -> str:
        response = VoiceResponse()
        response.hangup()
        return str(response)


def dial_caller_id(caller: str | None, own: str) -> str | None:
    """The callerId a <Dial> needs for a caller whose From is `caller`.

    A caller's own phone number passes through to whoever we dial (the
    backup centre sees who is calling): no callerId. Anything else (a SIP
    URI, "anonymous", a missing From) Twilio would present as it is and the
    far end may refuse, failing the dial (Twilio error 13214): our number.
    """
    return None if is_dialable(caller) else own


def failsafe(backup_number: str, caller_id: str | None = None) -> str:
    """The answer when anything goes wrong: ring the backup line, nothing else.

    Built without the flow, the prompts or the database so it cannot fail
    for the same reason the normal path did. `caller_id`: see dial_caller_id.
    """
    response = VoiceResponse()
    response.dial(backup_number, timeout=60, caller_id=caller_id)
    return str(response)


def hangup_only() -> str:
    response = VoiceResponse()
    response.hangup()
    return str(response)
