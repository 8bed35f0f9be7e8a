"""The `ivr` command."""

from __future__ import annotations

import argparse
import asyncio
import gc
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from ivr import logs
from ivr.config import ConfigError, Settings

if TYPE_CHECKING:
    import asyncpg

EXIT_INVALID = 2
# Net allocations of container objects between young-generation collections
# (the interpreter's default is 700): see settle_garbage_collector.
YOUNG_COLLECTION_THRESHOLD = 10_000


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="ivr", description="Crisis-line IVR server")
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the server")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8080)

    validate = sub.add_parser("validate", help="check flows, prompts and the routing plan")
    validate.add_argument("paths", nargs="*", type=Path,
                          help="flows directories or project directories (default: IVR_FLOWS_DIR)")

    graph = sub.add_parser("graph", help="draw each flow as a picture (Graphviz)")
    graph.add_argument("flow_file", nargs="?", type=Path, metavar="FLOW_FILE",
                       help="a flow file (default: every flow in IVR_FLOWS_DIR)")
    graph.add_argument("-o", "--output", type=Path, metavar="OUT",
                       help="file to write, its extension the format: svg, png, pdf or dot "
                            "(default: <flow id>.svg in the current directory)")

    publish = sub.add_parser("publish", help="validate and activate the content folders "
                             "on every instance")
    publish.add_argument("--server", metavar="URL", help="upload to this server's admin API "
                         "(default: publish straight into the database)")

    models = sub.add_parser("models", help="speech models").add_subparsers(
        dest="models_command", required=True)
    fetch = models.add_parser("fetch", help="download official Vosk models, checksum-verified")
    fetch.add_argument("languages", nargs="+", metavar="LANG")
    fetch.add_argument("--dest", type=Path, default=Path("models"))
    fetch.add_argument("--base-url", help="mirror to download from (default: alphacephei.com)")

    prompts = sub.add_parser("prompts", help="prompt recordings").add_subparsers(
        dest="prompts_command", required=True)
    render = prompts.add_parser(
        "render", help="make development recordings of the catalog texts with espeak-ng")
    render.add_argument("languages", nargs="*", metavar="LANG")
    render.add_argument("--force", action="store_true", help="replace existing recordings")

    sub.add_parser("migrate", help="apply database migrations and exit")

    sub.add_parser(
        "fallback", help="print the TwiML to host apart from the server as the number's "
        "Fallback URL (a TwiML Bin): it dials the backup line")

    report = sub.add_parser("report", help="988-style figures per state")
    report.add_argument("--since", default="30d",
                        help="24h, 7d, 2w or an ISO date (default: 30d)")

    from ivr.admin.console import command as tokens_command

    tokens_command.add_arguments(sub)

    call = sub.add_parser("call", help="simulate a call as Twilio would")
    from ivr.sim.options import add_call_arguments

    add_call_arguments(call)
    call.add_argument("--stream-speed", type=float, default=1.0, metavar="X",
                      help="media streams run X times faster than real time (default 1)")
    call.add_argument("--counselors-offline", action="store_true",
                      help="without --server: leave the plan's counselors offline "
                           "(callers then go to external centers and the national backup)")

    args = parser.parse_args(argv)
    logging.basicConfig(
        level=os.environ.get("IVR_LOG_LEVEL", "INFO"),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    logs.use_format(os.environ.get(logs.LOG_FORMAT_VAR))  # IVR_LOG_FORMAT=json
    # pgserver narrates every start and stop of the embedded database at INFO.
    logging.getLogger("pgserver").setLevel(logging.WARNING)
    try:
        if args.command == "serve":
            return _serve(args.host, args.port)
        if args.command == "validate":
            return _validate(args.paths)
        if args.command == "graph":
            return _graph(args.flow_file, args.output)
        if args.command == "publish":
            from ivr.publishing.command import run as run_publish

            return run_publish(args.server)
        if args.command == "models":
            return _fetch_models(args.languages, args.dest, args.base_url)
        if args.command == "prompts":
            return _render_prompts(args.languages, args.force)
        if args.command == "migrate":
            return asyncio.run(_migrate())
        if args.command == "fallback":
            return _fallback()
        if args.command == "report":
            return asyncio.run(_report(args.since))
        if args.command == "tokens":
            return asyncio.run(tokens_command.run(args, _open_pool))
        if args.command == "call":
            from ivr.content import InvalidContent
            from ivr.sim.run import run_call_command

            try:
                return asyncio.run(run_call_command(args))
            except InvalidContent as exc:
                print(f"ivr call: the content is not valid:\n{exc}", file=sys.stderr)
                return EXIT_INVALID
    except ConfigError as exc:
        print(f"ivr: configuration error: {exc}", file=sys.stderr)
        return EXIT_INVALID
    return 1


async def settle_garbage_collector(app: object) -> None:
    """Move what start-up loaded (content, phone-number metadata, libraries,
    the speech models' Python side) out of the garbage collector's reach: it
    lives as long as the process, and every full collection walked all of it.
    Under load that was a 27-38 ms pause every few seconds, the menu answer's
    paced p99 (issue 12). Only in `ivr serve`: a test process building many
    applications would keep each one's cycles for good.

    Then collect the youngest generation every 10,000 net allocations, not
    700: a webhook's objects are freed by reference counting, yet at 700 the
    collector still ran about once per 20 requests, 4% of the server's time
    under load (`gc.callbacks`, bench/webhooks.py). Cycles are still
    collected, in larger batches: a young collection of 10,000 live objects
    takes about 0.1 ms here."""
    gc.collect()
    gc.freeze()
    _, older, oldest = gc.get_threshold()
    gc.set_threshold(YOUNG_COLLECTION_THRESHOLD, older, oldest)


def _serve(host: str, port: int) -> int:
    from aiohttp import web

    from ivr.app import create_app
    from ivr.content import InvalidContent
    from ivr.speech.errors import SpeechError
    from ivr.storage.database import DatabaseError

    settings = Settings.from_env()
    settings.check_for_serving()
    # Only the server generates secrets, and only those not configured.
    settings = settings.with_generated_secrets()
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
    from ivr.publishing.wiring import publish_on_hup

    app.on_startup.append(publish_on_hup)  # `kill -HUP` publishes the content folders
    app.on_startup.append(settle_garbage_collector)  # last: after every resource has started
    try:
        web.run_app(app, host=host, port=port, print=lambda s: print(f"ivr: {s}"))
    except DatabaseError as exc:
        print(f"ivr: {exc}", file=sys.stderr)
        return 1
    return 0


def content_dirs(path: Path | None, settings: Settings) -> tuple[Path, Path]:
    """(flows dir, prompts dir) for a path given to `ivr validate`; the
    configured ones (IVR_FLOWS_DIR, IVR_PROMPTS_DIR) for none."""
    if path is None:
        return settings.flows_dir, settings.prompts_dir
    if path.is_file():
        path = path.parent
    if (path / "flows").is_dir():
        return path / "flows", path / "prompts"
    sibling = path.parent / "prompts"
    return path, sibling if sibling.is_dir() else settings.prompts_dir


def _validate(paths: Sequence[Path]) -> int:
    from ivr.content import check

    settings = Settings.from_env()
    status = 0
    targets: Sequence[Path | None] = paths or [None]
    for path in targets:
        flows_dir, prompts_dir = content_dirs(path, settings)
        content, problems = check(flows_dir, prompts_dir, settings.vosk_models)
        for problem in problems.sorted():
            print(problem)
        if content is None:
            status = EXIT_INVALID
            continue
        for flow_id, analysis in sorted(content.analyses.items()):
            flow = content.flows.flows[flow_id]
            print(f"{flow.source}: flow '{flow_id}' is valid: {analysis.summary()}")
            limit = flow.max_time_to_backup
            for reach in content.reaches.get(flow_id, ()):
                within = f" (limit {limit:g} s)" if limit is not None else ""
                print(f"  {reach.summary()}{within}")
                print(f"    slowest to the backup: {reach.slowest.describe()}")
    return status


def _graph(flow_file: Path | None, output: Path | None) -> int:
    """Draw each flow of the content (or the one in FLOW_FILE) after the same
    check as `ivr validate`: a picture of content the server would refuse
    would mislead."""
    from ivr.content import check
    from ivr.flow.graph import build_graph, dot_source
    from ivr.flow.render import FORMATS, RenderError, graphviz_missing, output_format, render

    fmt = output_format(output) if output is not None else "svg"
    if fmt is None:
        print(f"ivr graph: {output}: unknown picture format; use one of " + ", ".join(FORMATS),
              file=sys.stderr)
        return EXIT_INVALID
    missing = graphviz_missing(fmt)
    if missing:
        print(f"ivr graph: {missing}", file=sys.stderr)
        return 1
    settings = Settings.from_env()
    flows_dir, prompts_dir = content_dirs(flow_file, settings)
    content, problems = check(flows_dir, prompts_dir, settings.vosk_models)
    if content is None:
        for problem in problems.sorted():
            print(problem)
        return EXIT_INVALID
    flows = sorted(content.flows.flows.values(), key=lambda f: f.id)
    if flow_file is not None and flow_file.is_file():
        flows = [f for f in flows if Path(f.source).resolve() == flow_file.resolve()]
        if not flows:
            print(f"ivr graph: {flow_file} is not a flow file", file=sys.stderr)
            return EXIT_INVALID
    if output is not None and len(flows) > 1:
        print(f"ivr graph: -o names one file but there are {len(flows)} flows: "
              "name a FLOW_FILE, or leave -o out", file=sys.stderr)
        return EXIT_INVALID
    for flow in flows:
        graph = build_graph(flow, content.analyses[flow.id], content.flows.prompts, content.plan)
        out = output or Path(f"{flow.id}.svg")
        try:
            render(dot_source(graph), out)
        except RenderError as exc:
            print(f"ivr graph: {exc}", file=sys.stderr)
            return 1
        print(out)
    return 0


def _fetch_models(languages: Sequence[str], dest: Path, base_url: str | None) -> int:
    from ivr.speech.errors import SpeechError
    from ivr.speech.fetch import DEFAULT_BASE_URL, fetch_models

    try:
        fetched = fetch_models(languages, dest, base_url=base_url or DEFAULT_BASE_URL)
    except SpeechError as exc:
        print(f"ivr models fetch: {exc}", file=sys.stderr)
        return 1
    for lang, path in fetched.items():
        # A stable name per language, so deployments can set IVR_VOSK_MODEL_<LANG>
        # without knowing the model's version.
        link = dest / lang
        if link.is_symlink() or not link.exists():
            link.unlink(missing_ok=True)
            link.symlink_to(path.name)
        print(f"IVR_VOSK_MODEL_{lang.upper()}={link.resolve()}")
    return 0


def _render_prompts(languages: Sequence[str], force: bool) -> int:
    from ivr.flow.prompts import load_prompts, placeholders
    from ivr.speech.errors import SpeechError
    from ivr.speech.render import render_prompt
    from ivr.yamlsrc import Problems

    prompts_dir = Settings.from_env().prompts_dir
    problems = Problems()
    catalog = load_prompts(prompts_dir, problems)
    if problems.errors:
        for problem in problems.sorted():
            print(problem, file=sys.stderr)
        return EXIT_INVALID
    made = 0
    for lang in languages or catalog.languages():
        for prompt_id, prompt in sorted(catalog.prompts.get(lang, {}).items()):
            out = prompts_dir / lang / f"{prompt_id}.wav"
            # Prompts with placeholders are filled in per call: they stay <Say>.
            if placeholders(prompt.text) or (out.exists() and not force):
                continue
            try:
                render_prompt(prompt.text, lang, out)
            except SpeechError as exc:
                print(f"ivr prompts render: {exc}", file=sys.stderr)
                return 1
            print(out)
            made += 1
    print(f"{made} recordings made", file=sys.stderr)
    return 0


def _fallback() -> int:
    """The fixed document of /twilio/fallback, to host where the server's failure
    cannot reach it. It reads only the settings and the routing plan, and
    writes nothing (no secrets, no database)."""
    from ivr.config import DEV_CALLER_ID
    from ivr.content import ROUTING_FILE
    from ivr.routing.loader import load_plan
    from ivr.telephony.twiml import failsafe
    from ivr.yamlsrc import Problems

    settings = Settings.from_env()
    caller_id = settings.caller_id
    backup = settings.backup_number
    if backup is None:
        problems = Problems()
        routing = settings.flows_dir / ROUTING_FILE
        plan = load_plan(routing, problems)
        for problem in problems.sorted():
            print(problem, file=sys.stderr)
        if plan is None or problems.errors:
            print(f"ivr fallback: no backup number: set IVR_BACKUP_NUMBER or fix {routing}",
                  file=sys.stderr)
            return EXIT_INVALID
        backup = plan.national_backup.number
    if caller_id == DEV_CALLER_ID:
        print("ivr fallback: TWILIO_CALLER_ID is not set: this document uses the development "
              f"caller ID {DEV_CALLER_ID}, which real calls refuse", file=sys.stderr)
    print(failsafe(backup, caller_id))
    return 0


async def _open_pool(command: str) -> asyncpg.Pool | None:
    from ivr.storage.database import DatabaseError, open_pool, start_embedded

    settings = Settings.from_env()
    dsn = settings.database_url
    if dsn is None:
        dsn = await asyncio.to_thread(start_embedded, settings.data_dir)
    try:
        return await open_pool(dsn, min_size=1, max_size=1)
    except DatabaseError as exc:
        print(f"ivr {command}: {exc}", file=sys.stderr)
        return None


async def _migrate() -> int:
    pool = await _open_pool("migrate")
    if pool is None:
        return 1
    await pool.close()
    print("ivr migrate: the database is up to date")
    return 0


async def _report(since_text: str) -> int:
    from ivr.report import parse_since, table
    from ivr.storage.reports import figures_by_state

    try:
        since = parse_since(since_text)
    except ValueError as exc:
        print(f"ivr report: {exc}", file=sys.stderr)
        return EXIT_INVALID
    pool = await _open_pool("report")
    if pool is None:
        return 1
    try:
        rows = await figures_by_state(pool, since)
    finally:
        await pool.close()
    print(f"Calls to a counselor queue since {since:%Y-%m-%d %H:%M} UTC")
    print(table(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
