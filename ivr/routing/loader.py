"""The routing plan (flows/routing.yaml) read into `ivr.routing.model` values.

"A routing plan that leaves a state uncovered is a validation error, not a
dropped call." Concretely: every state, DC and territory must be reachable
by at least one center before the national tier, either because a center
serves it or because a center backs it up (directly or through its region).
The national backup covers everyone, but a state that only it answers
means no caller from there ever reaches a local counselor, which is a plan
mistake, not a routing choice. Language gaps (no center speaking a
language for some states) are warnings: those callers still reach the
national backup.

The loader reports every mistake with its `file:line:col` into `Problems`
and returns None when there is any error.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Final

from ivr.routing.model import (
    DEFAULT_RING_TIMEOUT,
    MAX_RING_TIMEOUT,
    MIN_RING_TIMEOUT,
    NATIONAL,
    TIER_ORDER,
    Center,
    Counselor,
    Line,
    Queue,
    RoutingPlan,
    Tier,
    TierKind,
)
from ivr.routing.states import STATES, state_code
from ivr.yamlfields import Field, FieldReader
from ivr.yamlsrc import Node, Pos, Problems, YamlSyntaxError, decode, parse

_TIER_KINDS: Final[Mapping[str, TierKind]] = {kind: kind for kind in TIER_ORDER}
_TOP_KEYS: Final = (
    "georoute_header",
    "default_region",
    "national_backup",
    "lines",
    "regions",
    "centers",
    "queues",
)
_ID = re.compile(r"^[a-z0-9][a-z0-9_.-]*$")
_NAME = re.compile(r"^[a-z][a-z0-9_-]*$")
_SIP = re.compile(r"^sips?:[^@\s]+@[^@\s]+$")
# Twilio forwards only X- headers of an INVITE, as SipHeader_<name>.
_SIP_HEADER = re.compile(r"^[Xx]-[A-Za-z0-9-]+$")


def load_plan(path: Path, problems: Problems) -> RoutingPlan | None:
    """Load and validate a routing plan; None (with problems reported) when invalid."""
    try:
        text = decode(path.read_bytes(), str(path))
    except OSError as exc:
        problems.add(Pos(str(path), 1, 1), f"cannot read: {exc}")
        return None
    except YamlSyntaxError as exc:  # not UTF-8: reported where the bytes are
        problems.items.append(exc.problem)
        return None
    return parse_plan(text, str(path), problems)


def parse_plan(text: str, file: str, problems: Problems) -> RoutingPlan | None:
    """Like `load_plan` for text already in memory (tests, the admin API)."""
    try:
        root = parse(text, file)
    except YamlSyntaxError as exc:
        problems.items.append(exc.problem)
        return None
    version = hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]
    return _Loader(problems).plan(root, file, version)


class _Loader(FieldReader):
    def __init__(self, problems: Problems) -> None:
        super().__init__(problems)
        self.errors_before = self.error_count

    # shapes of this schema

    def texts(self, node: Node, what: str) -> list[tuple[str, Pos]]:
        """A list of texts; a single text is a list of one (`serves: TX`)."""
        return self.text_list(node, what, one=True)

    def state(self, value: str, pos: Pos, what: str) -> str | None:
        if value in STATES:
            return value
        guess = state_code(value)
        hint = f" (write it '{guess}')" if guess else ""
        self.error(pos, f"unknown state '{value}' in {what}{hint}")
        return None

    def language_codes(self, node: Node, what: str) -> tuple[str, ...]:
        codes = [code for code, _ in self.known_languages(node, what, one=True)]
        return tuple(dict.fromkeys(codes))

    def skills(self, node: Node, what: str) -> tuple[str, ...]:
        out = []
        for value, pos in self.texts(node, what):
            if not _NAME.match(value):
                self.error(pos, f"skill '{value}' in {what} is not a lower-case word like veteran")
            elif value not in out:
                out.append(value)
        return tuple(out)

    # the plan

    def plan(self, root: Node, file: str, version: str) -> RoutingPlan | None:
        top = self.fields(
            root, "the routing plan", _TOP_KEYS, required=("national_backup", "centers", "queues")
        )
        if top is None:
            return None
        georoute = self.georoute(top["georoute_header"]) if "georoute_header" in top else None
        national = None
        if "national_backup" in top:
            national = self.line(NATIONAL, top["national_backup"].value, "national_backup")
        lines: dict[str, Line] = {}
        if "lines" in top:
            for key, kpos, node in self.names(top["lines"].value, "lines", optional=True):
                if not _ID.match(key):
                    self.error(kpos, f"line name '{key}' must be a lower-case identifier")
                found = self.line(key, node, f"line '{key}'", kpos)
                if found is not None:
                    lines[key] = found
        regions = self.regions(top["regions"].value) if "regions" in top else {}
        centers = self.centers(top["centers"].value, regions) if "centers" in top else {}
        queues = self.queues(top["queues"].value) if "queues" in top else {}
        default = NATIONAL
        if "default_region" in top:
            default = self.default_region(top["default_region"].value, regions)
        if "centers" in top:
            self.coverage(top["centers"].key_pos, regions, centers)
        if national is None or self.error_count > self.errors_before:
            return None
        return RoutingPlan(
            national_backup=national,
            centers=MappingProxyType(centers),
            queues=MappingProxyType(queues),
            regions=MappingProxyType(regions),
            lines=MappingProxyType(lines),
            default_region=default,
            georoute_header=georoute,
            source=file,
            version=version,
            pos=root.pos,
        )

    def georoute(self, field: Field) -> str | None:
        if field.value.is_null:
            return None
        georoute = self.text(field.value, "georoute_header")
        if georoute is not None and not _SIP_HEADER.match(georoute):
            self.error(
                field.value.pos,
                f"georoute_header '{georoute}' must be an X- SIP header name"
                " (Twilio forwards only those)",
            )
        return georoute

    def default_region(self, node: Node, regions: Mapping[str, tuple[str, ...]]) -> str:
        value = self.text(node, "default_region")
        if value is None:
            return NATIONAL
        if value == NATIONAL or value in regions or value in STATES:
            return value
        self.error(node.pos, f"default_region '{value}' is not '{NATIONAL}', a region or a state")
        return NATIONAL

    def line(self, key: str, node: Node, what: str, at: Pos | None = None) -> Line | None:
        at = at or node.pos
        f = self.fields(node, what, ("name", "number", "languages"), required=("number",), at=at)
        if f is None:
            return None
        name = self.text(f["name"].value, f"{what} name") if "name" in f else key
        number = self.phone(f["number"].value, f"{what} number") if "number" in f else None
        languages = self.language_codes(f["languages"].value, what) if "languages" in f else ()
        if number is None or name is None:
            return None
        return Line(key, name, number, languages, at)

    def regions(self, node: Node) -> dict[str, tuple[str, ...]]:
        out: dict[str, tuple[str, ...]] = {}
        owner: dict[str, str] = {}
        for key, kpos, value in self.names(node, "regions", optional=True):
            if not _NAME.match(key) or key == NATIONAL:
                self.error(
                    kpos,
                    f"region name '{key}' must be a lower-case word other than '{NATIONAL}'",
                )
                continue
            states: list[str] = []
            for text, pos in self.texts(value, f"region '{key}'"):
                code = self.state(text, pos, f"region '{key}'")
                if code is None:
                    continue
                if code in owner and owner[code] != key:
                    self.error(pos, f"{code} is already in region '{owner[code]}'")
                elif code not in states:
                    owner[code] = key
                    states.append(code)
            out[key] = tuple(states)
        return out

    def centers(self, node: Node, regions: Mapping[str, tuple[str, ...]]) -> dict[str, Center]:
        out: dict[str, Center] = {}
        counselor_ids: dict[str, Pos] = {}
        for key, kpos, value in self.names(node, "centers", optional=True):
            if not _ID.match(key):
                self.error(kpos, f"center id '{key}' must be a lower-case identifier")
            center = self.center(key, kpos, value, regions, counselor_ids)
            if center is not None:
                out[key] = center
        return out

    def center(
        self,
        key: str,
        at: Pos,
        node: Node,
        regions: Mapping[str, tuple[str, ...]],
        counselor_ids: dict[str, Pos],
    ) -> Center | None:
        what = f"center '{key}'"
        f = self.fields(
            node,
            what,
            ("name", "serves", "backup_for", "languages", "skills", "counselors", "number"),
            required=("languages",),
            at=at,
        )
        if f is None:
            return None
        name = (self.text(f["name"].value, f"{what} name") if "name" in f else None) or key
        serves_items = self.texts(f["serves"].value, f"{what} serves") if "serves" in f else []
        serves: list[str] = []
        for text, pos in serves_items:
            code = self.state(text, pos, f"{what} serves")
            if code is not None and code not in serves:
                serves.append(code)
        backup_items = self.texts(f["backup_for"].value, what) if "backup_for" in f else []
        backup: list[str] = []
        for text, pos in backup_items:
            if text in regions or text in STATES:
                if text not in backup:
                    backup.append(text)
            else:
                guess = state_code(text)
                hint = f" (write it '{guess}')" if guess else ""
                self.error(pos, f"backup_for '{text}' of {what} is not a region or state{hint}")
        if not serves_items and not backup_items:
            self.error(at, f"{what} serves nothing: give it serves (states) or backup_for")
        languages: tuple[str, ...] = ()
        if "languages" in f:
            lnode = f["languages"].value
            languages = self.language_codes(lnode, what)
            if lnode.is_list and not list(lnode.items()):
                self.error(lnode.pos, f"{what} needs at least one language")
        skills = self.skills(f["skills"].value, what) if "skills" in f else ()
        number = self.phone(f["number"].value, f"{what} number") if "number" in f else None
        counselors: list[Counselor] = []
        if "counselors" in f:
            cnode = f["counselors"].value
            if not cnode.is_list:
                self.error(cnode.pos, f"counselors of {what} must be a list")
            else:
                for item in cnode.items():
                    c = self.counselor(key, item, languages, skills, counselor_ids)
                    if c is not None:
                        counselors.append(c)
                if not list(cnode.items()):
                    self.error(cnode.pos, f"{what} has an empty counselor list")
        for lang in languages:
            if counselors and not any(lang in c.languages for c in counselors):
                self.warn(
                    f["languages"].value.pos,
                    f"{what} lists '{lang}' but none of its counselors speaks it",
                )
        if "counselors" in f and "number" in f:
            self.error(at, f"{what} has both counselors and an external number: pick one")
        elif "counselors" not in f and "number" not in f:
            self.error(at, f"{what} needs counselors or an external number")
        return Center(
            key,
            name,
            tuple(serves),
            tuple(backup),
            languages,
            skills,
            tuple(counselors),
            number,
            at,
        )

    def counselor(
        self,
        center: str,
        node: Node,
        center_languages: tuple[str, ...],
        center_skills: tuple[str, ...],
        ids: dict[str, Pos],
    ) -> Counselor | None:
        f = self.fields(
            node,
            f"a counselor of center '{center}'",
            ("id", "name", "phone", "sip", "languages", "skills"),
            required=("id",),
        )
        if f is None or "id" not in f:
            return None
        id_node = f["id"].value
        cid = self.text(id_node, "counselor id")
        if cid is None:
            return None
        what = f"counselor '{cid}'"
        if not _ID.match(cid):
            self.error(id_node.pos, f"{what}: id must be a lower-case identifier")
        if cid in ids:
            self.error(id_node.pos, f"duplicate counselor id '{cid}' (first at {ids[cid]})")
        else:
            ids[cid] = id_node.pos
        name = (self.text(f["name"].value, f"{what} name") if "name" in f else None) or cid
        phone = self.phone(f["phone"].value, f"{what} phone") if "phone" in f else None
        sip = None
        if "sip" in f:
            sip = self.text(f["sip"].value, f"{what} sip")
            if sip is not None and not _SIP.match(sip):
                self.error(f["sip"].value.pos, f"{what} sip '{sip}' is not a URI like sip:ana@host")
        if "phone" in f and "sip" in f:
            self.error(node.pos, f"{what} has both a phone and a sip address: pick one")
        elif "phone" not in f and "sip" not in f:
            self.error(node.pos, f"{what} needs a phone or a sip address")
        languages = center_languages
        if "languages" in f:
            languages = self.language_codes(f["languages"].value, what)
            for lang in languages:
                if lang not in center_languages:
                    self.error(
                        f["languages"].value.pos,
                        f"{what} speaks '{lang}', which center '{center}' does not list",
                    )
        own = self.skills(f["skills"].value, what) if "skills" in f else ()
        skills = center_skills + tuple(s for s in own if s not in center_skills)
        return Counselor(cid, name, center, phone, sip, languages, skills, node.pos)

    def queues(self, node: Node) -> dict[str, Queue]:
        out: dict[str, Queue] = {}
        for key, kpos, value in self.names(node, "queues", optional=True):
            if not _ID.match(key):
                self.error(kpos, f"queue name '{key}' must be a lower-case identifier")
            f = self.fields(value, f"queue '{key}'", ("tiers",), required=("tiers",), at=kpos)
            if f is None or "tiers" not in f:
                continue
            out[key] = Queue(key, self.tiers(key, f["tiers"].value), kpos)
        return out

    def tiers(self, queue: str, node: Node) -> tuple[Tier, ...]:
        what = f"queue '{queue}'"
        if not node.is_list or not list(node.items()):
            self.error(node.pos, f"tiers of {what} must be a non-empty list ending in national")
            return ()
        out: list[Tier] = []
        last = node.pos
        for item in node.items():
            last = item.pos
            tier = self.tier(what, item, out[-1] if out else None)
            if tier is not None:
                out.append(tier)
        if out and out[-1].kind != NATIONAL:
            self.error(last, f"the tiers of {what} must end with the national tier")
        return tuple(out)

    def tier(self, what: str, item: Node, previous: Tier | None) -> Tier | None:
        f = self.fields(
            item,
            f"a tier of {what}",
            ("tier", "ring_timeout", "skip_when_unavailable"),
            required=("tier",),
        )
        if f is None or "tier" not in f:
            return None
        name = self.text(f["tier"].value, "tier")
        kind = _TIER_KINDS.get(name or "")
        if kind is None:
            if name is not None:
                self.error(
                    f["tier"].value.pos,
                    f"unknown tier '{name}' in {what} (known: {', '.join(TIER_ORDER)})",
                )
            return None
        timeout: float | None = DEFAULT_RING_TIMEOUT
        if "ring_timeout" in f:
            timeout = self.seconds(
                f["ring_timeout"].value,
                f"ring_timeout of {what}",
                low=MIN_RING_TIMEOUT,
                high=MAX_RING_TIMEOUT,
            )
        skip: bool | None = False
        if "skip_when_unavailable" in f:
            skip_node = f["skip_when_unavailable"].value
            skip = self.flag(skip_node, "skip_when_unavailable")
            if skip and kind == NATIONAL:
                self.error(
                    skip_node.pos, "the national tier is the last resort: it cannot be skipped"
                )
        if previous is not None and previous.kind == NATIONAL:
            self.error(item.pos, f"tier '{kind}' after national in {what}: national is last")
        elif previous is not None and TIER_ORDER.index(kind) <= TIER_ORDER.index(previous.kind):
            self.error(
                item.pos,
                f"tier '{kind}' after '{previous.kind}' in {what}:"
                " tiers go local, backup, national, each at most once",
            )
        # A tier with a bad timeout or flag still counts for the order checks of the next.
        return Tier(kind, timeout or DEFAULT_RING_TIMEOUT, bool(skip), item.pos)

    def coverage(
        self,
        pos: Pos,
        regions: Mapping[str, tuple[str, ...]],
        centers: Mapping[str, Center],
    ) -> None:
        def states_of(center: Center) -> set[str]:
            out = set(center.serves)
            for target in center.backup_for:
                out.update(regions.get(target, (target,)))
            return out

        covered: set[str] = set()
        by_language: dict[str, set[str]] = {}
        for center in centers.values():
            reach = states_of(center)
            covered |= reach
            for lang in center.languages:
                by_language.setdefault(lang, set()).update(reach)
        missing = [code for code in STATES if code not in covered]
        if missing:
            self.error(
                pos,
                f"no center serves or backs up {', '.join(missing)}: callers from there"
                " would only ever reach the national backup (add them to a region"
                " a center backs up, or to a center's serves)",
            )
            return
        for lang, reach in sorted(by_language.items()):
            gaps = [code for code in STATES if code not in reach]
            if gaps:
                self.warn(
                    pos,
                    f"callers speaking '{lang}' from {', '.join(gaps)} reach only the"
                    " national backup",
                )
