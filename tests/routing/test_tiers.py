"""Tier resolution: local center, then state or regional backup, then national."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from ivr.routing.loader import load_plan, parse_plan
from ivr.routing.model import RoutingPlan, UnknownLine
from ivr.routing.states import STATES
from ivr.routing.tiers import TierTarget, line, resolve
from ivr.yamlsrc import Problems

ROOT = Path(__file__).resolve().parents[2]
SOUTH = ["TX", "OK", "LA", "AR"]
NORTHEAST = ["NY", "NJ", "PA", "CT", "MA", "RI", "VT", "NH", "ME"]
REST = [s for s in STATES if s not in SOUTH + NORTHEAST]

PLAN_TEXT = f"""\
default_region: national
national_backup: {{name: National, number: "+18005550100"}}
lines:
  veterans: {{name: Veterans line, number: "+18005550111"}}
regions:
  south: [{", ".join(SOUTH)}]
  northeast: [{", ".join(NORTHEAST)}]
  rest: [{", ".join(REST)}]
centers:
  tx:
    serves: [TX]
    languages: [en, es]
    counselors:
      - {{id: ana, phone: "+15125550101", languages: [en, es]}}
      - {{id: ben, phone: "+15125550102", languages: [en]}}
      - {{id: carla, phone: "+15125550103", languages: [es], skills: [veteran]}}
  ok-direct:
    backup_for: [OK]
    languages: [en]
    number: "+14055550104"
  south-backup:
    backup_for: [south]
    languages: [en, es]
    number: "+15045550105"
  ny:
    serves: [NY]
    backup_for: [northeast]
    languages: [en]
    counselors:
      - {{id: dan, phone: "+12125550106"}}
  ne-backup:
    backup_for: [northeast]
    languages: [en, es]
    skills: [veteran]
    number: "+16175550107"
  rest-backup:
    backup_for: [rest]
    languages: [en]
    number: "+13125550108"
queues:
  crisis:
    tiers:
      - {{tier: local, ring_timeout: 20s, skip_when_unavailable: true}}
      - {{tier: backup, ring_timeout: 25s}}
      - {{tier: national, ring_timeout: 40s}}
  quick:
    tiers:
      - {{tier: national, ring_timeout: 15s}}
  regional:
    tiers:
      - {{tier: backup}}
      - {{tier: national}}
"""


def make_plan() -> RoutingPlan:
    problems = Problems()
    plan = parse_plan(PLAN_TEXT, "routing.yaml", problems)
    assert plan is not None, [str(p) for p in problems.items]
    return plan


PLAN = make_plan()
NATIONAL = ("national", (), ("+18005550100",))


def summary(targets: tuple[TierTarget, ...]) -> list[tuple[str, tuple[str, ...], tuple[str, ...]]]:
    """(kind, counselor ids, external numbers) per tier: what the call will ring."""
    return [(t.kind, tuple(p.id for p in t.counselors), t.external_numbers) for t in targets]


@pytest.mark.parametrize(
    ("state", "language", "need", "expected"),
    [
        # TX in Spanish: Spanish speakers of the TX center, the south backup, national
        (
            "TX",
            "es",
            None,
            [("local", ("ana", "carla"), ()), ("backup", (), ("+15045550105",)), NATIONAL],
        ),
        (
            "TX",
            "en",
            None,
            [("local", ("ana", "ben"), ()), ("backup", (), ("+15045550105",)), NATIONAL],
        ),
        # a need is a preference: the veteran-skilled counselor first, the others still rung
        (
            "TX",
            "es",
            "veteran",
            [("local", ("carla", "ana"), ()), ("backup", (), ("+15045550105",)), NATIONAL],
        ),
        # no local center: straight to backups, the one for the state before the region's
        (
            "OK",
            "en",
            None,
            [("backup", (), ("+14055550104", "+15045550105")), NATIONAL],
        ),
        # language is a hard requirement: the English-only OK backup is left out
        ("OK", "es", None, [("backup", (), ("+15045550105",)), NATIONAL]),
        ("LA", "en", None, [("backup", (), ("+15045550105",)), NATIONAL]),
        # Spanish caller in NY, NY center English only: straight to a backup speaking es
        ("NY", "es", None, [("backup", (), ("+16175550107",)), NATIONAL]),
        # English caller in NY: the NY center once (locally), then the other backup
        ("NY", "en", None, [("local", ("dan",), ()), ("backup", (), ("+16175550107",)), NATIONAL]),
        # the need reorders centers within a tier
        (
            "NJ",
            "en",
            "veteran",
            [("backup", ("dan",), ("+16175550107",)), NATIONAL],
        ),
        ("CA", "en", None, [("backup", (), ("+13125550108",)), NATIONAL]),
        # nobody speaks French before the national backup, which answers everyone
        ("TX", "fr", None, [NATIONAL]),
        ("CA", "es", None, [NATIONAL]),
        # unknown or missing state: the default region (national here)
        (None, "en", None, [NATIONAL]),
        ("ZZ", "en", None, [NATIONAL]),
        ("tx", "en", None, [NATIONAL]),  # states arrive normalised; anything else is unknown
        # language tags are normalised
        (
            "TX",
            "ES-us",
            None,
            [("local", ("ana", "carla"), ()), ("backup", (), ("+15045550105",)), NATIONAL],
        ),
    ],
)
def test_resolve(
    state: str | None,
    language: str,
    need: str | None,
    expected: list[tuple[str, tuple[str, ...], tuple[str, ...]]],
) -> None:
    assert summary(resolve(PLAN, "crisis", state, language, need)) == expected


def test_tier_settings_come_from_the_queue() -> None:
    local, backup, national = resolve(PLAN, "crisis", "TX", "en", None)
    assert (local.ring_timeout, local.skip_when_unavailable) == (20.0, True)
    assert (backup.ring_timeout, backup.skip_when_unavailable) == (25.0, False)
    assert (national.ring_timeout, national.skip_when_unavailable) == (40.0, False)
    assert [c.id for c in local.centers] == ["tx"]
    assert [c.id for c in backup.centers] == ["south-backup"] and national.centers == ()


def test_ringing_centers_are_those_with_someone_to_ring() -> None:
    (backup, _) = resolve(PLAN, "crisis", "NJ", "en", "veteran")
    assert [c.id for c in backup.centers] == ["ne-backup", "ny"]


@pytest.mark.parametrize(
    ("default", "expected"),
    [
        ("TX", [("local", ("ana", "ben"), ()), ("backup", (), ("+15045550105",)), NATIONAL]),
        ("south", [("backup", (), ("+15045550105",)), NATIONAL]),
        ("national", [NATIONAL]),
    ],
)
def test_unknown_state_uses_the_default_region(
    default: str, expected: list[tuple[str, tuple[str, ...], tuple[str, ...]]]
) -> None:
    plan = replace(PLAN, default_region=default)
    assert summary(resolve(plan, "crisis", None, "en", None)) == expected
    assert summary(resolve(plan, "crisis", "XX", "en", None)) == expected
    # a known state is not overridden by the default
    assert summary(resolve(plan, "crisis", "CA", "en", None))[0][2] == ("+13125550108",)


def test_queue_without_local_tier() -> None:
    assert summary(resolve(PLAN, "regional", "TX", "en", None)) == [
        ("backup", (), ("+15045550105",)),
        NATIONAL,
    ]


def test_national_only_queue_keeps_its_timeout() -> None:
    (national,) = resolve(PLAN, "quick", "TX", "en", None)
    assert national.kind == "national" and national.ring_timeout == 15.0


def test_unknown_queue_still_reaches_the_national_backup() -> None:
    (national,) = resolve(PLAN, "no-such-queue", "TX", "en", None)
    assert national.external_numbers == ("+18005550100",)
    assert not national.skip_when_unavailable


def test_lines() -> None:
    assert line(PLAN, "veterans").number == "+18005550111"
    assert line(PLAN, "national").number == "+18005550100"
    with pytest.raises(UnknownLine):
        line(PLAN, "no-such-line")
    with pytest.raises(KeyError):
        line(PLAN, "no-such-line")


def test_every_caller_of_the_shipped_plan_reaches_a_center_before_national() -> None:
    problems = Problems()
    plan = load_plan(ROOT / "flows" / "routing.yaml", problems)
    assert plan is not None
    for state in STATES:
        for language in ("en", "es"):
            targets = resolve(plan, "crisis", state, language, None)
            assert targets[-1].kind == "national"
            assert len(targets) >= 2, f"{language} callers from {state} reach only national"
            for target in targets[:-1]:
                assert target.counselors or target.external_numbers
                for counselor in target.counselors:
                    assert language in counselor.languages
