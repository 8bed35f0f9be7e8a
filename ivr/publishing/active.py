"""The content versions one instance serves: the active one for new calls,
and the older ones calls in progress started on, loaded on demand.

A call's next webhook may land on any instance, including one started after
the version the call began on stopped being active: such an instance reads
that version's files from the database, writes them under
IVR_DATA_DIR/content/<version>/ (recordings are served from files), checks
them as `ivr validate` does, and keeps the result in a small LRU cache.
"""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import tempfile
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg

from ivr.content import Content, InvalidContent, check
from ivr.errors import ContentError
from ivr.flow.runtime import TransferTo
from ivr.publishing import versions
from ivr.publishing.archive import Files, write_files
from ivr.routing.steps import Step, transfer_steps
from ivr.speech.audio import load_prompt_wav
from ivr.speech.errors import AudioFormatError
from ivr.telephony.twiml import Renderer
from ivr.yamlsrc import Pos, Problems

log = logging.getLogger(__name__)

CACHE_SIZE = 8  # older versions kept loaded beside the active one
STEPS_CACHE_SIZE = 4096  # (transfer, state) keys: flows' queues x languages x needs x states


class UnknownVersion(ContentError, LookupError):
    """No content version of that name is stored."""

    def __init__(self, version: str) -> None:
        super().__init__(f"unknown content version '{version}'")
        self.version = version


@dataclass(frozen=True)
class Served:
    """One content version, ready to serve calls."""

    version: str
    content: Content
    renderer: Renderer
    # (language, prompt id) -> the recording as 8 kHz mu-law, for media streams.
    prompt_audio: Mapping[tuple[str, str], bytes]
    backup_number: str  # IVR_BACKUP_NUMBER, else the plan's national backup
    # A version's steps for each (transfer, caller's state) it was asked: every
    # menu turn asks (for an early offer), and resolving was a tenth of the
    # voice webhook's CPU (py-spy, issue 12). Few distinct keys per version.
    _steps: dict[tuple[TransferTo, str | None], tuple[Step, ...]] = field(
        default_factory=dict, compare=False, repr=False)

    def steps(self, transfer: TransferTo, caller_state: str | None) -> Sequence[Step]:
        key = (transfer, caller_state)
        found = self._steps.get(key)
        if found is None:
            found = tuple(transfer_steps(self.content.plan, transfer, caller_state,
                                         self.backup_number))
            if len(self._steps) < STEPS_CACHE_SIZE:
                self._steps[key] = found
        return found


@dataclass(frozen=True)
class ServeSettings:
    """What turns content into a Served, the same for every version."""

    public_url: str
    caller_id: str
    backup_number: str | None
    models: Mapping[str, Path]
    work_dir: Path  # IVR_DATA_DIR/content


def serve(
    version: str,
    content: Content,
    how: ServeSettings,
    audio: Mapping[tuple[str, str], bytes] | None = None,
) -> Served:
    """Build what serving needs; converts the recordings unless given their
    `audio` (blocking then: run it off the event loop)."""
    return Served(
        version=version,
        content=content,
        renderer=Renderer(how.public_url, content.flows.prompts, how.caller_id, version),
        prompt_audio=audio if audio is not None else prompt_audio(content),
        backup_number=how.backup_number or content.plan.national_backup.number,
    )


def prompt_audio(content: Content) -> dict[tuple[str, str], bytes]:
    """Every recording as 8 kHz mu-law, converted once, for media streams.

    `ivr.content.check` judged each with the rule `load_prompt_wav` applies,
    so this fails only for a file changed since; it is then refused the way
    content is, with its position.
    """
    audio: dict[tuple[str, str], bytes] = {}
    problems = Problems()
    for language, prompts in content.flows.prompts.prompts.items():
        for prompt_id, prompt in prompts.items():
            if prompt.recording is None:
                continue
            try:
                audio[(language, prompt_id)] = load_prompt_wav(prompt.recording)
            except AudioFormatError as exc:
                reason = str(exc).removeprefix(f"{prompt.recording}: ")
                problems.add(Pos(str(prompt.recording), 1, 1),
                             f"recording {prompt.recording.name} cannot be used: {reason}")
    if problems.errors:
        raise InvalidContent(problems)
    return audio


def stage(files: Files, version: str, how: ServeSettings) -> tuple[Content | None, Problems]:
    """Write a version's files under the work dir and check them (blocking).

    Files go to a fresh folder renamed into place only once complete, so a
    folder named after a version always holds exactly that version; problems
    name files relative to the content (`flows/988.yaml:3:1: ...`).
    """
    how.work_dir.mkdir(parents=True, exist_ok=True)
    final = how.work_dir / version
    if not final.is_dir():
        staging = Path(tempfile.mkdtemp(prefix=".staging-", dir=how.work_dir))
        try:
            write_files(files, staging)
            try:
                os.replace(staging, final)
            except OSError:
                if not final.is_dir():  # not a concurrent load that got there first
                    raise
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    content, problems = check(final / "flows", final / "prompts", how.models)
    return content, relative(problems, final)


def relative(problems: Problems, root: Path) -> Problems:
    prefix = f"{root}{os.sep}"
    out = Problems()
    for p in problems.items:
        pos = Pos(p.pos.file.removeprefix(prefix), p.pos.line, p.pos.col)
        (out.warn if p.warning else out.add)(pos, p.message)
    return out


async def load(pool: asyncpg.Pool, version: str, how: ServeSettings) -> Served:
    """A stored version, ready to serve; UnknownVersion when there is none."""
    files = await versions.files_of(pool, version)
    if files is None:
        raise UnknownVersion(version)

    def build() -> Served:
        content, problems = stage(files, version, how)
        if content is None:
            # It passed when published: this instance differs (its speech
            # models, say). Refused loudly; the caller goes to the backup line.
            raise InvalidContent(problems)
        return serve(version, content, how)

    return await asyncio.to_thread(build)


OnSwitch = Callable[[Served], Awaitable[None]]


class ActiveContent:
    """The active version of this instance and a bounded cache of older ones."""

    def __init__(
        self,
        first: Served,
        seq: int,
        loader: Callable[[str], Awaitable[Served]],
        cache_size: int = CACHE_SIZE,
    ) -> None:
        self.current = first
        self.seq = seq  # the activation number `current` came with
        self._loader = loader
        self._cache: OrderedDict[str, Served] = OrderedDict()
        self._cache_size = cache_size
        self._loading: dict[str, asyncio.Future[Served]] = {}
        self._switching = asyncio.Lock()
        self.on_switch: list[OnSwitch] = []

    @property
    def cached(self) -> tuple[str, ...]:
        """The older versions held, the least recently used first."""
        return tuple(self._cache)

    async def get(self, version: str | None) -> Served:
        """The version a call started on (None, for a call from before versions: the active)."""
        if version is None or version == self.current.version:
            return self.current
        found = self._cache.get(version)
        if found is not None:
            self._cache.move_to_end(version)
            return found
        pending = self._loading.get(version)
        if pending is None:
            # One load per version however many webhooks ask for it at once.
            pending = asyncio.ensure_future(self._loader(version))
            self._loading[version] = pending
            pending.add_done_callback(lambda _: self._loading.pop(version, None))
        served = await asyncio.shield(pending)
        self._keep(served)
        return served

    def _keep(self, served: Served) -> None:
        if served.version == self.current.version:
            return
        self._cache[served.version] = served
        self._cache.move_to_end(served.version)
        while len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)

    async def switch(self, to: versions.Active) -> bool:
        """Serve `to` for new calls, unless a later activation is already served."""
        async with self._switching:
            if to.seq <= self.seq:
                return False
            served = await self.get(to.version)
            old = self.current
            self.current, self.seq = served, to.seq
            self._cache.pop(served.version, None)
            self._keep(old)  # calls in progress on it still need it
            for hook in self.on_switch:
                try:
                    await hook(served)
                except Exception:
                    log.exception("after switching to content version %s", served.version)
            log.info("content version %s active (activation %d)", served.version, to.seq)
            return True

    def describe(self) -> dict[str, Any]:
        return {"version": self.current.version, "activation": self.seq,
                "cached": list(self.cached)}
