"""ivr.evolve: the same copies as dataclasses.replace, for the classes it is used on."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

import pytest

from ivr.evolve import evolve
from ivr.flow.runtime import CallState, TransferTo
from ivr.routing.progress import Offer, Phase, Progress
from ivr.routing.steps import DialStep, WarmStep
from ivr.storage.calls import CallRow

NOW = datetime(2026, 12, 6, 18, 0, tzinfo=UTC)
WARM = WarmStep("regional", "Texas", ("ana", "ben"), 20, True, ranks=(1, 2))
BACKUP = DialStep("national", "backup", ("+18005550100",), 30, last=True)
PROGRESS = Progress((WARM, BACKUP), 0, Phase.HOLDING, 1, NOW, NOW, "en",
                    offer=Offer(1, "ana", NOW, 20), tried=("ben",), queued=True)
STATE = CallState("lifeline", "abc", "menu", "en", vars={"x": "1"}, seq=3)
ROW = CallRow("CA1", 3, "flow", {"node": "menu"}, None, "<Response/>", "TX", "georoute", None)

CASES: list[tuple[Any, dict[str, Any]]] = [
    (STATE, {"node": "crisis", "seq": 4, "finished": True}),
    (STATE, {"language": "es", "failures": 0, "language_chosen": True}),
    (PROGRESS, {"phase": Phase.GONE, "offer": None, "queued": False, "moved_at": None}),
    (PROGRESS, {"index": 1, "phase": Phase.DIALING, "stage": 2, "tried": ()}),
    (WARM, {"counselors": ("ana",), "ranks": (1,)}),
    (BACKUP, {"caller_id": "+18005550199"}),
    (ROW, {"seq": 4, "phase": "transfer", "transfer": {"index": 0}}),
    (TransferTo("crisis", "crisis", None, "en", None), {"language": "es"}),
    (STATE, {}),
]


@pytest.mark.parametrize(("obj", "changes"), CASES)
def test_evolve_copies_as_replace_does(obj: Any, changes: dict[str, Any]) -> None:
    before = replace(obj)
    copied = evolve(obj, **changes)
    assert copied == replace(obj, **changes) and type(copied) is type(obj)
    assert vars(copied) == vars(replace(obj, **changes))  # fields out of == too
    assert copied is not obj and obj == before  # the original is left as it was


def test_a_misspelt_field_is_refused() -> None:
    with pytest.raises(TypeError, match="no field sequence"):
        evolve(STATE, sequence=4)


@dataclass(frozen=True)
class Checked:
    n: int

    def __post_init__(self) -> None:
        if self.n < 0:
            raise ValueError("negative")


@dataclass(frozen=True, slots=True)
class Slotted:
    n: int


@dataclass(frozen=True)
class FromSlotted(Slotted):  # its instances have a __dict__, but `n` lives in a slot
    m: int = 0


@dataclass(frozen=True)
class Derived:
    n: int
    double: int = field(init=False, default=0)


@pytest.mark.parametrize("obj", [Checked(1), Slotted(1), FromSlotted(1), Derived(1), (1, 2)])
def test_classes_a_plain_copy_would_get_wrong_are_refused(obj: object) -> None:
    with pytest.raises(TypeError):
        evolve(obj, n=2)
