"""The `ivr` command."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from ivr.config import ConfigError, Settings

EXIT_INVALID = 2


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="ivr", description="Crisis-line IVR server")
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the server")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8080)

    validate = sub.add_parser("validate", help="check flows, prompts and the routing plan")
    validate.add_argument("paths", nargs="*", type=Path,
                          help="flows directories or project directories (default: IVR_FLOWS_DIR)")

    call = sub.add_parser("call", help="simulate a call as Twilio would")
    from ivr.sim.options import add_call_arguments

    add_call_arguments(call)

    args = parser.parse_args(argv)
    logging.basicConfig(
        level=os.environ.get("IVR_LOG_LEVEL", "INFO"),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    # pgserver narrates every start and stop of the embedded database at INFO.
    logging.getLogger("pgserver").setLevel(logging.WARNING)
    try:
        if args.command == "serve":
            return _serve(args.host, args.port)
        if args.command == "validate":
            return _validate(args.paths)
        if args.command == "call":
            from ivr.sim.run import run_call_command

            return asyncio.run(run_call_command(args))
    except ConfigError as exc:
        print(f"ivr: configuration error: {exc}", file=sys.stderr)
        return EXIT_INVALID
    return 1


def _serve(host: str, port: int) -> int:
    from aiohttp import web

    from ivr.app import create_app
    from ivr.content import InvalidContent
    from ivr.speech.errors import SpeechError
    from ivr.storage.database import DatabaseError

    settings = Settings.from_env()
    for note in settings.generated:
        print(f"ivr: {note} (generated: set the variable in production)", file=sys.stderr)
    try:
        app = create_app(settings)
    except InvalidContent as exc:
        print(f"ivr: refusing to start, the flows are not valid:\n{exc}", file=sys.stderr)
        return EXIT_INVALID
    except SpeechError as exc:
        print(f"ivr: refusing to start, speech is misconfigured: {exc}", file=sys.stderr)
        return EXIT_INVALID
    try:
        web.run_app(app, host=host, port=port, print=lambda s: print(f"ivr: {s}"))
    except DatabaseError as exc:
        print(f"ivr: {exc}", file=sys.stderr)
        return 1
    return 0


def content_dirs(path: Path | None) -> tuple[Path, Path]:
    """(flows dir, prompts dir) for a path given to `ivr validate`."""
    env_flows = Path(os.environ.get("IVR_FLOWS_DIR", "flows"))
    env_prompts = Path(os.environ.get("IVR_PROMPTS_DIR", "prompts"))
    if path is None:
        return env_flows, env_prompts
    if path.is_file():
        path = path.parent
    if (path / "flows").is_dir():
        return path / "flows", path / "prompts"
    sibling = path.parent / "prompts"
    return path, sibling if sibling.is_dir() else env_prompts


def _validate(paths: Sequence[Path]) -> int:
    from ivr.config import vosk_model_paths
    from ivr.content import check

    models = vosk_model_paths()
    status = 0
    targets: Sequence[Path | None] = paths or [None]
    for path in targets:
        flows_dir, prompts_dir = content_dirs(path)
        content, problems = check(flows_dir, prompts_dir, models)
        for problem in problems.sorted():
            print(problem)
        if content is None:
            status = EXIT_INVALID
            continue
        for flow_id, analysis in sorted(content.analyses.items()):
            flow = content.flows.flows[flow_id]
            print(f"{flow.source}: flow '{flow_id}' is valid: {analysis.summary()}")
    return status


if __name__ == "__main__":
    sys.exit(main())
