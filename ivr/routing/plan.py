"""The routing plan (flows/routing.yaml): who answers callers from where.

The plan names regions (groups of states), centers (the states they serve
locally, the regions or states they back up, their languages and skills,
and either their counselors or one external number), special lines (the
veterans line) and the national backup. Queues list the tiers a transfer
walks through: the local center, then state or regional backups, then the
national backup, always last.

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
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Final, Literal

import phonenumbers

from ivr.routing.states import STATES, state_code
from ivr.yamlsrc import Node, Pos, Problems, YamlSyntaxError, parse, parse_duration

TierKind = Literal["local", "backup", "national"]
TIER_ORDER: Final[tuple[TierKind, ...]] = ("local", "backup", "national")
_TIER_KINDS: Final[Mapping[str, TierKind]] = {kind: kind for kind in TIER_ORDER}

NATIONAL: Final = "national"  # default_region value: unknown callers go to the national tier
DEFAULT_RING_TIMEOUT: Final = 30.0  # seconds; Twilio's own <Dial> default
# Twilio accepts 5 to 600 seconds for a dial or participant timeout.
MIN_RING_TIMEOUT: Final = 5.0
MAX_RING_TIMEOUT: Final = 600.0

_NOWHERE: Final = Pos("?", 1, 1)
_ID = re.compile(r"^[a-z0-9][a-z0-9_.-]*$")
_NAME = re.compile(r"^[a-z][a-z0-9_-]*$")
_LANGUAGE = re.compile(r"^[a-z]{2}$")
_E164 = re.compile(r"^\+[1-9]\d{6,14}$")
_SIP = re.compile(r"^sips?:[^@\s]+@[^@\s]+$")
# Twilio forwards only X- headers of an INVITE, as SipHeader_<name>.
_SIP_HEADER = re.compile(r"^[Xx]-[A-Za-z0-9-]+$")


class RoutingError(Exception):
    """Base of the errors raised by `ivr.routing` at run time."""


class UnknownLine(RoutingError, KeyError):
    """A special line the plan does not define."""


@dataclass(frozen=True)
class Counselor:
    id: str
    name: str
    center: str  # id of the center the counselor works for
    phone: str | None = None  # E.164
    sip: str | None = None  # sip:user@host
    languages: tuple[str, ...] = ()  # the center's languages unless the plan narrows them
    skills: tuple[str, ...] = ()  # the center's skills plus the counselor's own
    pos: Pos = field(default=_NOWHERE, compare=False)

    @property
    def address(self) -> str:
        """What to dial: the phone number or the SIP URI."""
        return self.phone or self.sip or ""


@dataclass(frozen=True)
class Center:
    id: str
    name: str
    serves: tuple[str, ...]  # states answered at the local tier
    backup_for: tuple[str, ...]  # regions and states answered at the backup tier
    languages: tuple[str, ...]
    skills: tuple[str, ...] = ()
    counselors: tuple[Counselor, ...] = ()
    number: str | None = None  # an external center we dial instead of counselors
    pos: Pos = field(default=_NOWHERE, compare=False)


@dataclass(frozen=True)
class Line:
    """A number dialled as is: a special line (veterans) or the national backup."""

    id: str
    name: str
    number: str
    languages: tuple[str, ...] = ()
    pos: Pos = field(default=_NOWHERE, compare=False)


@dataclass(frozen=True)
class Tier:
    kind: TierKind
    ring_timeout: float = DEFAULT_RING_TIMEOUT
    # Move on at once when no counselor of the tier is free instead of ringing
    # out the timeout. External numbers are always taken as available.
    skip_when_unavailable: bool = False
    pos: Pos = field(default=_NOWHERE, compare=False)


@dataclass(frozen=True)
class Queue:
    id: str
    tiers: tuple[Tier, ...]
    pos: Pos = field(default=_NOWHERE, compare=False)

    @property
    def max_ring_seconds(self) -> float:
        """Worst-case time spent ringing through every tier (for time-to-human)."""
        return sum(t.ring_timeout for t in self.tiers)


@dataclass(frozen=True)
class RoutingPlan:
    national_backup: Line
    centers: Mapping[str, Center]
    queues: Mapping[str, Queue]
    regions: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    lines: Mapping[str, Line] = field(default_factory=dict)
    default_region: str = NATIONAL  # "national", a region name or a state code
    georoute_header: str | None = None  # e.g. "X-Georoute-State"
    source: str = "?"
    version: str = ""  # content hash of the source file
    pos: Pos = field(default=_NOWHERE, compare=False)

    @property
    def georoute_param(self) -> str | None:
        """The Twilio webhook parameter carrying the georoute header."""
        return f"SipHeader_{self.georoute_header}" if self.georoute_header else None

    def region_of(self, state: str) -> str | None:
        for name, states in self.regions.items():
            if state in states:
                return name
        return None

    def backed_up_states(self, center: Center) -> frozenset[str]:
        """The states a center answers at the backup tier."""
        out: set[str] = set()
        for target in center.backup_for:
            out.update(self.regions.get(target, (target,) if target in STATES else ()))
        return frozenset(out)

    def languages(self) -> tuple[str, ...]:
        return tuple(sorted({lang for c in self.centers.values() for lang in c.languages}))


# --- loading -------------------------------------------------------------------------


def load_plan(path: Path, problems: Problems) -> RoutingPlan | None:
    """Load and validate a routing plan; None (with problems reported) when invalid."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        problems.add(Pos(str(path), 1, 1), f"cannot read: {exc}")
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


def is_e164(number: str) -> bool:
    if not _E164.match(number):
        return False
    try:
        return bool(phonenumbers.is_possible_number(phonenumbers.parse(number)))
    except phonenumbers.NumberParseException:
        return False


class _Loader:
    def __init__(self, problems: Problems) -> None:
        self.problems = problems
        self.errors_before = len(problems.errors)

    def error(self, pos: Pos, message: str) -> None:
        self.problems.add(pos, message)

    # generic shapes

    def fields(
        self,
        node: Node,
        what: str,
        allowed: Iterable[str],
        required: Iterable[str] = (),
        at: Pos | None = None,  # where "needs" is reported: the key naming the mapping
    ) -> dict[str, Node] | None:
        if not node.is_map:
            self.error(node.pos, f"{what} must be a mapping, not {node.kind_name}")
            return None
        allowed = tuple(allowed)
        out: dict[str, Node] = {}
        for key, kpos, value in node.entries():
            if key in out:
                self.error(kpos, f"duplicate key '{key}' in {what}")
            elif key not in allowed:
                self.error(kpos, f"unknown key '{key}' in {what} (known: {', '.join(allowed)})")
            else:
                out[key] = value
        for key in required:
            if key not in out:
                self.error(at or node.pos, f"{what} needs '{key}'")
        return out

    def entries(self, node: Node, what: str) -> list[tuple[str, Pos, Node]]:
        """The entries of a mapping keyed by ids; duplicates reported and dropped."""
        if node.is_null:  # an optional section left empty
            return []
        if not node.is_map:
            self.error(node.pos, f"{what} must be a mapping, not {node.kind_name}")
            return []
        seen: set[str] = set()
        out: list[tuple[str, Pos, Node]] = []
        for key, kpos, value in node.entries():
            if key in seen:
                self.error(kpos, f"duplicate '{key}' in {what}")
                continue
            seen.add(key)
            out.append((key, kpos, value))
        return out

    def text(self, node: Node, what: str) -> str | None:
        if not node.is_scalar or node.is_null or not node.text.strip():
            self.error(node.pos, f"{what} must be a text value, not {node.kind_name}")
            return None
        return node.text.strip()

    def texts(self, node: Node, what: str) -> list[tuple[str, Pos]]:
        """A list of scalars; a single scalar is accepted as a one-item list."""
        items = list(node.items()) if node.is_list else [node]
        out: list[tuple[str, Pos]] = []
        for item in items:
            value = self.text(item, f"each of {what}")
            if value is not None:
                out.append((value, item.pos))
        return out

    def flag(self, node: Node, what: str) -> bool:
        value = node.text.strip().lower() if node.is_scalar else ""
        if value in ("true", "yes", "on", "false", "no", "off"):
            return value in ("true", "yes", "on")
        self.error(node.pos, f"{what} must be true or false, not {node.kind_name}")
        return False

    def number(self, node: Node, what: str) -> str | None:
        value = self.text(node, what)
        if value is not None and not is_e164(value):
            self.error(node.pos, f"{what} '{value}' is not an E.164 number like +15125550100")
            return None
        return value

    def state(self, value: str, pos: Pos, what: str) -> str | None:
        if value in STATES:
            return value
        guess = state_code(value)
        hint = f" (write it '{guess}')" if guess else ""
        self.error(pos, f"unknown state '{value}' in {what}{hint}")
        return None

    def languages(self, node: Node, what: str) -> tuple[str, ...]:
        out = []
        for value, pos in self.texts(node, what):
            if not _LANGUAGE.match(value):
                self.error(pos, f"language '{value}' in {what} is not a two-letter code like en")
            elif value not in out:
                out.append(value)
        return tuple(out)

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
            root,
            "the routing plan",
            (
                "georoute_header",
                "default_region",
                "national_backup",
                "lines",
                "regions",
                "centers",
                "queues",
            ),
            ("national_backup", "centers", "queues"),
        )
        if top is None:
            return None
        georoute = None
        if "georoute_header" in top and not top["georoute_header"].is_null:
            georoute = self.text(top["georoute_header"], "georoute_header")
            if georoute is not None and not _SIP_HEADER.match(georoute):
                self.error(
                    top["georoute_header"].pos,
                    f"georoute_header '{georoute}' must be an X- SIP header name"
                    " (Twilio forwards only those)",
                )
        national = None
        if "national_backup" in top:
            national = self.line(NATIONAL, top["national_backup"], "national_backup")
        lines: dict[str, Line] = {}
        if "lines" in top:
            for key, kpos, node in self.entries(top["lines"], "lines"):
                if not _ID.match(key):
                    self.error(kpos, f"line name '{key}' must be a lower-case identifier")
                found = self.line(key, node, f"line '{key}'", kpos)
                if found is not None:
                    lines[key] = found
        regions = self.regions(top["regions"]) if "regions" in top else {}
        centers = self.centers(top["centers"], regions) if "centers" in top else {}
        queues = self.queues(top["queues"]) if "queues" in top else {}
        default = NATIONAL
        if "default_region" in top:
            node = top["default_region"]
            value = self.text(node, "default_region")
            if value is not None:
                if value == NATIONAL or value in regions or value in STATES:
                    default = value
                else:
                    self.error(
                        node.pos,
                        f"default_region '{value}' is not '{NATIONAL}', a region or a state",
                    )
        if "centers" in top:
            key_pos = {key: pos for key, pos, _ in root.entries()}
            self.coverage(key_pos["centers"], regions, centers)
        if national is None or len(self.problems.errors) > self.errors_before:
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

    def line(self, key: str, node: Node, what: str, at: Pos | None = None) -> Line | None:
        at = at or node.pos
        f = self.fields(node, what, ("name", "number", "languages"), ("number",), at)
        if f is None:
            return None
        name = self.text(f["name"], f"{what} name") if "name" in f else key
        number = self.number(f["number"], f"{what} number") if "number" in f else None
        languages = self.languages(f["languages"], what) if "languages" in f else ()
        if number is None or name is None:
            return None
        return Line(key, name, number, languages, at)

    def regions(self, node: Node) -> dict[str, tuple[str, ...]]:
        out: dict[str, tuple[str, ...]] = {}
        owner: dict[str, str] = {}
        for key, kpos, value in self.entries(node, "regions"):
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
        for key, kpos, value in self.entries(node, "centers"):
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
            ("languages",),
            at,
        )
        if f is None:
            return None
        name = (self.text(f["name"], f"{what} name") if "name" in f else None) or key
        serves_items = self.texts(f["serves"], f"{what} serves") if "serves" in f else []
        serves: list[str] = []
        for text, pos in serves_items:
            code = self.state(text, pos, f"{what} serves")
            if code is not None and code not in serves:
                serves.append(code)
        backup_items = self.texts(f["backup_for"], what) if "backup_for" in f else []
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
        languages = self.languages(f["languages"], what) if "languages" in f else ()
        if "languages" in f and f["languages"].is_list and not list(f["languages"].items()):
            self.error(f["languages"].pos, f"{what} needs at least one language")
        skills = self.skills(f["skills"], what) if "skills" in f else ()
        number = self.number(f["number"], f"{what} number") if "number" in f else None
        counselors: list[Counselor] = []
        if "counselors" in f:
            cnode = f["counselors"]
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
                self.problems.warn(
                    f["languages"].pos,
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
            ("id",),
        )
        if f is None or "id" not in f:
            return None
        cid = self.text(f["id"], "counselor id")
        if cid is None:
            return None
        what = f"counselor '{cid}'"
        if not _ID.match(cid):
            self.error(f["id"].pos, f"{what}: id must be a lower-case identifier")
        if cid in ids:
            self.error(f["id"].pos, f"duplicate counselor id '{cid}' (first at {ids[cid]})")
        else:
            ids[cid] = f["id"].pos
        name = (self.text(f["name"], f"{what} name") if "name" in f else None) or cid
        phone = self.number(f["phone"], f"{what} phone") if "phone" in f else None
        sip = None
        if "sip" in f:
            sip = self.text(f["sip"], f"{what} sip")
            if sip is not None and not _SIP.match(sip):
                self.error(f["sip"].pos, f"{what} sip '{sip}' is not a URI like sip:ana@host")
        if "phone" in f and "sip" in f:
            self.error(node.pos, f"{what} has both a phone and a sip address: pick one")
        elif "phone" not in f and "sip" not in f:
            self.error(node.pos, f"{what} needs a phone or a sip address")
        languages = center_languages
        if "languages" in f:
            languages = self.languages(f["languages"], what)
            for lang in languages:
                if lang not in center_languages:
                    self.error(
                        f["languages"].pos,
                        f"{what} speaks '{lang}', which center '{center}' does not list",
                    )
        own = self.skills(f["skills"], what) if "skills" in f else ()
        skills = center_skills + tuple(s for s in own if s not in center_skills)
        return Counselor(cid, name, center, phone, sip, languages, skills, node.pos)

    def queues(self, node: Node) -> dict[str, Queue]:
        out: dict[str, Queue] = {}
        for key, kpos, value in self.entries(node, "queues"):
            if not _ID.match(key):
                self.error(kpos, f"queue name '{key}' must be a lower-case identifier")
            f = self.fields(value, f"queue '{key}'", ("tiers",), ("tiers",), kpos)
            if f is None or "tiers" not in f:
                continue
            tiers = self.tiers(key, f["tiers"])
            out[key] = Queue(key, tiers, kpos)
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
            f = self.fields(
                item,
                f"a tier of {what}",
                ("tier", "ring_timeout", "skip_when_unavailable"),
                ("tier",),
            )
            if f is None or "tier" not in f:
                continue
            name = self.text(f["tier"], "tier")
            kind = _TIER_KINDS.get(name or "")
            if kind is None:
                if name is not None:
                    self.error(
                        f["tier"].pos,
                        f"unknown tier '{name}' in {what} (known: {', '.join(TIER_ORDER)})",
                    )
                continue
            timeout = DEFAULT_RING_TIMEOUT
            if "ring_timeout" in f:
                t_node = f["ring_timeout"]
                parsed = parse_duration(t_node.text) if t_node.is_scalar else None
                if parsed is None or not MIN_RING_TIMEOUT <= parsed <= MAX_RING_TIMEOUT:
                    self.error(
                        t_node.pos,
                        f"ring_timeout of {what} must be a duration from"
                        f" {MIN_RING_TIMEOUT:g}s to {MAX_RING_TIMEOUT:g}s, not {t_node.kind_name}",
                    )
                else:
                    timeout = parsed
            skip = False
            if "skip_when_unavailable" in f:
                skip = self.flag(f["skip_when_unavailable"], "skip_when_unavailable")
                if skip and kind == NATIONAL:
                    self.error(
                        f["skip_when_unavailable"].pos,
                        "the national tier is the last resort: it cannot be skipped",
                    )
            if out and out[-1].kind == NATIONAL:
                self.error(item.pos, f"tier '{kind}' after national in {what}: national is last")
            elif out and TIER_ORDER.index(kind) <= TIER_ORDER.index(out[-1].kind):
                self.error(
                    item.pos,
                    f"tier '{kind}' after '{out[-1].kind}' in {what}:"
                    " tiers go local, backup, national, each at most once",
                )
            out.append(Tier(kind, timeout, skip, item.pos))
        if out and out[-1].kind != NATIONAL:
            self.error(last, f"the tiers of {what} must end with the national tier")
        return tuple(out)

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
                self.problems.warn(
                    pos,
                    f"callers speaking '{lang}' from {', '.join(gaps)} reach only the"
                    " national backup",
                )
