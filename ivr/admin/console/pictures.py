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
    def __init__(self, content: Content) -> None:
        self._content = content
        self._svg: dict[str, bytes | None] = {}
        self._lock = asyncio.Lock()

    async def svg(self, flow_id: str) -> bytes | None:
        """The picture of a flow of the content, or None (unknown flow, no Graphviz)."""
        if flow_id not in self._content.flows.flows:
            return None
        async with self._lock:
            if flow_id not in self._svg:
                self._svg[flow_id] = await asyncio.to_thread(self._draw, flow_id)
            return self._svg[flow_id]

    def _draw(self, flow_id: str) -> bytes | None:
        content = self._content
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
