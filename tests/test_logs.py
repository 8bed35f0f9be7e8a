"""ivr.logs: the JSON formatter, its call context, and IVR_LOG_FORMAT."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest

from ivr import logs

SID = "CA" + "0123456789abcdef" * 2
LEG = "CA" + "fedcba9876543210" * 2


@pytest.fixture
def private_root(
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[tuple[logging.Logger, io.StringIO]]:
    """A logger standing in for the root, with one text handler, as basicConfig leaves it
    (and the process's serving version restored after the test)."""
    monkeypatch.setattr(logs, "_serving", None)
    logger = logging.getLogger("tests.logs.private")
    logger.propagate = False
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    yield logger, out
    logger.removeHandler(handler)
    logging.captureWarnings(False)  # use_format("json") routes warnings to logging


def test_json_format_on_request(private_root: tuple[logging.Logger, io.StringIO]) -> None:
    logger, out = private_root
    assert logs.use_format("JSON", logger) == "json"
    logs.set_version("lifeline@abc")
    token = logs.call_sid.set(SID)
    try:
        logger.info("heard %s", "español")
        logger.info("leg %s answered for call %s", "x", LEG)
    finally:
        logs.call_sid.reset(token)
    logger.info("no call here")
    first, named, outside = (json.loads(line) for line in out.getvalue().splitlines())
    assert first["event"] == "heard español" and first["call_sid"] == SID
    assert first["content_version"] == "lifeline@abc" and first["level"] == "INFO"
    assert named["call_sid"] == LEG  # the call a line names is the call it is about
    assert outside["call_sid"] is None


def test_request_version_wins_over_the_process_one(
    private_root: tuple[logging.Logger, io.StringIO],
) -> None:
    logger, out = private_root
    logs.use_format("json", logger)
    logs.set_version("old")
    token = logs.content_version.set("new")
    try:
        logger.warning("x")
    finally:
        logs.content_version.reset(token)
    assert json.loads(out.getvalue())["content_version"] == "new"


def test_exceptions_stay_on_one_line(private_root: tuple[logging.Logger, io.StringIO]) -> None:
    logger, out = private_root
    logs.use_format("json", logger)
    try:
        raise ValueError("boom")
    except ValueError:
        logger.exception("call %s: failed", SID)
    [line] = out.getvalue().splitlines()
    entry = json.loads(line)
    assert "ValueError: boom" in entry["exception"] and entry["call_sid"] == SID


@pytest.mark.parametrize("name", [None, "", "text", " Text "])
def test_text_by_default(private_root: tuple[logging.Logger, io.StringIO],
                         name: str | None) -> None:
    logger, out = private_root
    assert logs.use_format(name, logger) == "text"
    logger.info("plain")
    assert out.getvalue() == "INFO plain\n"


def test_unknown_format_keeps_text(private_root: tuple[logging.Logger, io.StringIO],
                                   caplog: pytest.LogCaptureFixture) -> None:
    logger, out = private_root
    assert logs.use_format("xml", logger) == "text"
    assert "IVR_LOG_FORMAT='xml' is not one of text, json" in caplog.text
    logger.info("plain")
    assert out.getvalue() == "INFO plain\n"
