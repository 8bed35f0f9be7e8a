"""`ivr call`: simulate one call against a server, printing its transcript.

Without --server an in-process server is started on a free local port, with
the project's flows and the same settings `ivr serve` would use, but secrets
of its own and a throwaway embedded database in a temporary directory (or
the one --database names); the simulator then talks to it over real HTTP like Twilio does. A
simulated call never touches the configured database or data directory: a
test call must not be able to change who answers real callers.
"""

from __future__ import annotations

import argparse
import asyncio
import secrets
import shutil
import socket
import sys
import tempfile
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import replace
from datetime import datetime
from functools import partial
from pathlib import Path

from aiohttp import web
from pgserver import get_server  # type: ignore[attr-defined]

from ivr.config import Settings
from ivr.sim.call import simulate_call
from ivr.sim.config import SimConfig
from ivr.sim.errors import ScriptError
from ivr.sim.media import MediaStreams, StreamSettings
from ivr.sim.options import script_from_args, world_from_args


@asynccontextmanager
async def local_server(
    settings: Settings, *, counselors_available: bool = True,
    clock: Callable[[], datetime] | None = None, poll: float | None = None,
) -> AsyncIterator[Settings]:
    """Run the server in this process on a free port; yields its settings.

    With `counselors_available`, every counselor of the plan starts the
    simulated shift available, as a staffed line would be. `clock` and `poll`
    go to create_app: a world's clock (TwilioWorld.server_clock) keeps the
    server's deadlines in simulated time, looked at every `poll` real seconds.
    """
    from ivr import keys
    from ivr.app import create_app
    from ivr.storage.counselors import list_counselors, set_presence

    # Closed however start-up ends (invalid content, no database).
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        settings = replace(settings, public_url=f"http://127.0.0.1:{port}")
        # Loading content reads files: off the event loop.
        app = await asyncio.to_thread(partial(create_app, settings, clock=clock, poll=poll))
        runner = web.AppRunner(app, access_log=None)
        try:
            # Inside the try: a start-up that fails part way closes what it opened.
            await runner.setup()
            await web.SockSite(runner, sock).start()
            if counselors_available:
                pool = app[keys.pool]
                for counselor in await list_counselors(pool):
                    if counselor.presence == "offline":
                        await set_presence(pool, counselor.id, "available")
            yield settings
        finally:
            await runner.cleanup()


@asynccontextmanager
async def throwaway_settings(database: str | None) -> AsyncIterator[Settings]:
    """Settings for an in-process server whose state lives in a temporary
    directory, removed afterwards, with secrets made for this call (a test
    call needs none of the real line's), and the embedded database there too
    unless `database` names one."""
    # Files and the embedded server are set up off the event loop.
    tmp = await asyncio.to_thread(tempfile.mkdtemp, prefix="ivr-call-")
    try:
        settings = replace(await asyncio.to_thread(Settings.from_env),
                           data_dir=Path(tmp), database_url=database,
                           auth_token=secrets.token_hex(20),
                           admin_token=secrets.token_hex(20),
                           caller_hash_key=secrets.token_bytes(20))
        if database is not None:
            yield settings
            return
        # cleanup_mode="delete": this server is ours alone, stopped and wiped after.
        pg = await asyncio.to_thread(get_server, Path(tmp) / "pg", cleanup_mode="delete")
        try:
            yield replace(settings, database_url=str(pg.get_uri()))
        finally:
            await asyncio.to_thread(pg.cleanup)
    finally:
        await asyncio.to_thread(shutil.rmtree, tmp, ignore_errors=True)


async def run_call_command(args: argparse.Namespace) -> int:
    try:
        script = script_from_args(args)
    except ScriptError as exc:
        print(f"ivr call: {exc}", file=sys.stderr)
        return 2
    if args.server and args.database:
        print("ivr call: --database is for the in-process server; "
              "a server given with --server uses its own", file=sys.stderr)
        return 2
    media = MediaStreams(StreamSettings(speed=args.stream_speed))
    if args.server:
        settings = await asyncio.to_thread(Settings.from_env)
        # Twilio signs every webhook with the account's auth token; so must we.
        auth_token = settings.auth_token_for(
            f"ivr call --server signs its requests with the auth token of {args.server}")
        world = world_from_args(args, account_sid=settings.account_sid, auth_token=auth_token)
        async with world:  # Twilio's REST API and the counselors' phones
            cfg = SimConfig(server_url=args.server, auth_token=auth_token,
                            public_url=settings.public_url, account_sid=settings.account_sid,
                            caller_ids=(settings.caller_id,))
            transcript = await simulate_call(cfg, script, world=world,
                                             handlers=world.handlers(media=media))
    else:
        async with throwaway_settings(args.database) as settings:
            token = settings.required_secrets().auth_token
            world = world_from_args(args, account_sid=settings.account_sid, auth_token=token)
            async with world:
                local = replace(settings, twilio_api_url=world.api_url)
                # Staff only a database made for this call: in one given with
                # --database, presence belongs to whoever runs that line.
                staffed = not args.counselors_offline and args.database is None
                async with local_server(local, counselors_available=staffed) as live:
                    cfg = SimConfig(server_url=live.public_url, auth_token=token,
                                    account_sid=live.account_sid, caller_ids=(live.caller_id,))
                    transcript = await simulate_call(cfg, script, world=world,
                                                     handlers=world.handlers(media=media))
    print(transcript.format())
    return 0 if transcript.reached_human else 1
