"""Flows by dialled number (pure).

Owns: which flow runs for a dialled number and where that flow sends the contact. The
first slice's flows have one step, "queue to X"; prompts, DTMF menus and identification
steps join later through the same `Flow` type.
Must never: do I/O or know how a call is carried.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass


@dataclass(frozen=True, slots=True, kw_only=True)
class Flow:
    dialled: str
    queue: str
    announce: bool = False  # "this call may be recorded" before the caller is queued


class FlowTable:
    def __init__(self, numbers: Mapping[str, str], *, announcing_queues: Collection[str] = ()) -> None:
        """`numbers`: dialled number -> queue; callers to `announcing_queues` (the ones
        that record) hear the recording notice first."""
        self._flows = {
            number: Flow(dialled=number, queue=queue, announce=queue in announcing_queues)
            for number, queue in numbers.items()
        }

    def for_number(self, dialled: str) -> Flow | None:
        """The flow of a dialled number; None when the hub does not serve it (404)."""
        return self._flows.get(_canonical(dialled))

    def numbers(self) -> list[str]:
        return sorted(self._flows)


def _canonical(dialled: str) -> str:
    # Phones dial "1000", "+1000" or "1 000"; visual separators never change the target.
    return "".join(ch for ch in dialled if ch.isdigit() or ch in "*#") or dialled
