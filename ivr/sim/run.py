"""`ivr call`: simulate one call against a server, printing its transcript.

Without --server an in-process server is started on a free local port, with
the embedded database, the project's flows and the same settings `ivr serve`
would use; the simulator then talks to it over real HTTP like Twilio does.
"""

from __future__ import annotations

import argparse
import asyncio
import socket
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import replace

from aiohttp import web

from ivr.config import Settings
from ivr.sim.call import simulate_call
from ivr.sim.config import SimConfig
from ivr.sim.errors import ScriptError
from ivr.sim.media import MediaStreams, StreamSettings
from ivr.sim.options import script_from_args, world_from_args


@asynccontextmanager
async def local_server(
    settings: Settings, *, counselors_available: bool = True
) -> AsyncIterator[Settings]:
    """Run the server in this process on a free port; yields its settings.

    With `counselors_available`, every counselor of the plan starts the
    simulated shift available, as a staffed line would be.
    """
    from ivr.app import create_app, pool_key
    from ivr.storage.counselors import list_counselors, set_presence

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    settings = replace(settings, public_url=f"http://127.0.0.1:{port}")
    # Loading content reads files: off the event loop.
    app = await asyncio.to_thread(create_app, settings)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    try:
        await web.SockSite(runner, sock).start()
        if counselors_available:
            for counselor in await list_counselors(app[pool_key]):
                if counselor.presence == "offline":
                    await set_presence(app[pool_key], counselor.id, "available")
        yield settings
    finally:
        await runner.cleanup()


async def run_call_command(args: argparse.Namespace) -> int:
    try:
        script = script_from_args(args)
    except ScriptError as exc:
        print(f"ivr call: {exc}", file=sys.stderr)
        return 2
    settings = Settings.from_env()
    world = world_from_args(args, account_sid=settings.account_sid,
                            auth_token=settings.auth_token)
    media = MediaStreams(StreamSettings(speed=args.stream_speed))
    handlers = world.handlers(media=media)
    async with world:  # Twilio's REST API and the counselors' phones
        if args.server:
            cfg = SimConfig(server_url=args.server, auth_token=settings.auth_token,
                            public_url=settings.public_url, account_sid=settings.account_sid)
            transcript = await simulate_call(cfg, script, world=world, handlers=handlers)
        else:
            local = replace(settings, twilio_api_url=world.api_url)
            staffed = not args.counselors_offline
            async with local_server(local, counselors_available=staffed) as live:
                cfg = SimConfig(server_url=live.public_url, auth_token=live.auth_token,
                                account_sid=live.account_sid)
                transcript = await simulate_call(cfg, script, world=world, handlers=handlers)
    print(transcript.format())
    return 0 if transcript.reached_human else 1
