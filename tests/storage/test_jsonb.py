"""The pool's jsonb codec (binary wire format) against a real PostgreSQL."""

from __future__ import annotations

from typing import Any

from ivr.storage.database import open_pool

VALUES: list[Any] = [
    {"state": {"seq": 3, "vars": {"language": "es"}}, "tried": ["tx-ana"], "deadline": None},
    {"prompt": "¿Necesita ayuda? Marque 1", "name": "영어"},
    [1, 2.5, True, None, "x"],
    "a bare string",
    {},
]


async def test_jsonb_values_and_arrays_of_them_round_trip_and_read_as_sql_does(dsn: str) -> None:
    pool = await open_pool(dsn, min_size=1, max_size=1)
    try:
        for value in VALUES:
            assert await pool.fetchval("SELECT $1::jsonb", value) == value
        # An array of objects, as the event trail's details are written (asyncpg
        # takes a list inside the list for a dimension, not for a value).
        objects = [v for v in VALUES if isinstance(v, dict)]
        assert await pool.fetchval("SELECT $1::jsonb[]", objects) == objects
        # What the server writes is what SQL reads in the database, non-ASCII included.
        prompt = await pool.fetchval("SELECT ($1::jsonb)->>'prompt'", VALUES[1])
        assert prompt == VALUES[1]["prompt"]
        assert await pool.fetchval("SELECT ($1::jsonb)->'state'->>'seq'", VALUES[0]) == "3"
        # And what SQL builds decodes as JSON (integer keys become strings, as in PostgreSQL).
        built = await pool.fetchval(
            """SELECT jsonb_build_object('n', 1, 'é', '{"a": [null]}'::jsonb)""")
        assert built == {"n": 1, "é": {"a": [None]}}
        assert await pool.fetchval("SELECT $1::jsonb", {1: "one"}) == {"1": "one"}
    finally:
        await pool.close()
