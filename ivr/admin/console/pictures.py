"""The flow pictures the supervisor console shows: `ivr graph`'s SVG, drawn on
first request (Graphviz in a thread, off the event loop) and kept."""

from __future__ import annotations

import asyncio
import logging
import tempfile
from pathlib import Path

from ivr.content import Content
from ivr.flow.graph import build_graph, dot_source
from ivr.flow.render import RenderError, render

log = logging.getLogger(__name__)


class FlowPictures:
    """Pictures by (content version, flow id): a version's content never changes."""

    def __init__(self) -> None:
        self._svg: dict[tuple[str, str], bytes | None] = {}
        self._lock = asyncio.Lock()

    async def svg(self, version: str, content: Content, flow_id: str) -> bytes | None:
        """The picture of a flow of the content, or None (unknown flow, no Graphviz)."""
        if flow_id not in content.flows.flows:
            return None
        async with self._lock:
            if (version, flow_id) not in self._svg:
                self._svg[(version, flow_id)] = await asyncio.to_thread(
                    self._draw, content, flow_id)
            return self._svg[(version, flow_id)]

    @staticmethod
    def _draw(content: Content, flow_id: str) -> bytes | None:
        flow = content.flows.flows[flow_id]
        graph = build_graph(flow, content.analyses[flow_id], content.flows.prompts, content.plan)
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp) / "flow.svg"
            try:
                render(dot_source(graph), out)
            except RenderError as exc:
                log.warning("console: no picture of flow %s: %s", flow_id, exc)
                return None
            return out.read_bytes()
