"""`ivr tokens`: issue, revoke and list the console's sign-in tokens.

    ivr tokens issue --supervisor "Dana Reyes"   # prints the token, once
    ivr tokens issue --counselor tx-ana
    ivr tokens revoke 7                          # ends its sessions everywhere
    ivr tokens list

Reads IVR_DATABASE_URL (or the embedded database of IVR_DATA_DIR) like
`ivr report`; a counselor must already be in the database, which `ivr serve`
fills from the routing plan when it starts.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Awaitable, Callable

import asyncpg

from ivr.admin.console import tokens

OpenPool = Callable[[str], Awaitable[asyncpg.Pool | None]]


def add_arguments(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser("tokens", help="console sign-in tokens for supervisors and counselors")
    commands = parser.add_subparsers(dest="tokens_command", required=True)
    issue = commands.add_parser("issue", help="issue a token (printed once, stored hashed)")
    who = issue.add_mutually_exclusive_group(required=True)
    who.add_argument("--supervisor", metavar="NAME", help="a supervisor, by name")
    who.add_argument("--counselor", metavar="ID", help="a counselor of the routing plan, by id")
    revoke = commands.add_parser("revoke", help="revoke a token and end its sessions")
    revoke.add_argument("token_id", type=int, metavar="ID", help="the id `issue` or `list` shows")
    commands.add_parser("list", help="the tokens issued (never the tokens themselves)")


async def run(args: argparse.Namespace, open_pool: OpenPool) -> int:
    pool = await open_pool("tokens")
    if pool is None:
        return 1
    try:
        if args.tokens_command == "issue":
            return await _issue(pool, args.supervisor, args.counselor)
        if args.tokens_command == "revoke":
            row = await tokens.revoke(pool, args.token_id)
            print(f"token {row.id} ({row.role} {row.subject}) revoked; its sessions are ended")
            return 0
        for row in await tokens.list_tokens(pool):
            state = ("active" if row.revoked_at is None
                     else f"revoked {row.revoked_at:%Y-%m-%d %H:%M}")
            print(f"{row.id}\t{row.role}\t{row.subject}\tissued {row.created_at:%Y-%m-%d %H:%M}"
                  f"\t{state}")
        return 0
    except tokens.TokenError as exc:
        print(f"ivr tokens: {exc}", file=sys.stderr)
        return 2
    finally:
        await pool.close()


async def _issue(pool: asyncpg.Pool, supervisor: str | None, counselor: str | None) -> int:
    if supervisor is not None:
        row, secret = await tokens.issue(pool, "supervisor", supervisor)
    else:
        assert counselor is not None
        row, secret = await tokens.issue(pool, "counselor", counselor)
    print(f"token {row.id} for {row.role} {row.subject} (shown once; revoke with "
          f"`ivr tokens revoke {row.id}`):")
    print(secret)
    return 0
