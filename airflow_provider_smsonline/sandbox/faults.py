# The failures the sandbox injects into API calls: a queue of faults for the next calls of an
# action, an optional seeded random plan, and counts of what was injected. The wire applies them.
"""Fault injection: which call fails, and how. Plain data; the lock is the caller's (:mod:`.state`)."""

from __future__ import annotations

import random
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

import airflow_provider_smsonline.sandbox.inputs as inputs

#: Fault modes ``POST /sandbox/faults`` accepts.
FAULT_MODES: tuple[str, ...] = (
    "http_500",
    "html_502",
    "garbage",
    "slow",
    "reset_after_commit",
    "timeout_after_commit",
)
#: The delay (seconds) of a fault when none is given.
DEFAULT_FAULT_DELAY: Mapping[str, float] = MappingProxyType({"slow": 5.0, "timeout_after_commit": 60.0})


@dataclass(frozen=True)
class Fault:
    """How one API call is to fail.

    :ivar action: the action it applies to (``*`` for any).
    :ivar mode: one of :data:`FAULT_MODES`.
    :ivar delay: seconds to wait (``slow``: before answering; ``timeout_after_commit``: before
        closing without an answer).
    """

    action: str
    mode: str
    delay: float


@dataclass(frozen=True)
class RandomFaults:
    """A seeded plan that makes a share of the calls of one action fail, in modes drawn at random.

    :ivar action: the action it applies to (``*`` for any).
    :ivar rate: the probability, from 0 to 1, that a call suffers a fault.
    :ivar modes: the modes drawn from, uniformly (a subset of :data:`FAULT_MODES`).
    :ivar delays: seconds per mode, for ``slow`` and ``timeout_after_commit``.
    :ivar seed: seeds the draws (``None``: random); the same seed and call order give the same faults.
    """

    action: str
    rate: float
    modes: tuple[str, ...]
    delays: Mapping[str, float]
    seed: int | None

    def to_json(self) -> dict[str, Any]:
        """The plan as JSON-able data."""
        return {
            "action": self.action,
            "rate": self.rate,
            "modes": list(self.modes),
            "delays": dict(self.delays),
            "seed": self.seed,
        }


def _action(action: object, actions: Collection[str]) -> str:
    return inputs.one_of(action, "action", [*actions, "*"])


def _delay(value: object, field: str) -> float:
    return inputs.seconds(value, field, inputs.MAX_FAULT_DELAY_SECONDS)


def build_fault(
    action: object, mode: object, count: object, delay: object, actions: Collection[str]
) -> tuple[Fault, int]:
    """A checked fault and how many calls it applies to; raises :class:`~.inputs.SandboxError`."""
    name = _action(action, actions)
    chosen = inputs.one_of(mode, "mode", FAULT_MODES)
    times = inputs.integer(count, "count", 1, inputs.MAX_FAULT_COUNT)
    seconds = DEFAULT_FAULT_DELAY.get(chosen, 0.0) if delay is None else _delay(delay, "delay")
    return Fault(action=name, mode=chosen, delay=seconds), times


def build_random_plan(
    action: object, rate: object, modes: object, seed: object, delays: object, actions: Collection[str]
) -> RandomFaults:
    """A checked random fault plan; raises :class:`~.inputs.SandboxError`."""
    name = _action(action, actions)
    probability = inputs.rate(rate)
    chosen = FAULT_MODES if modes is None else modes
    if (
        not isinstance(chosen, (list, tuple))
        or not chosen
        or any(not isinstance(mode, str) or mode not in FAULT_MODES for mode in chosen)
    ):
        raise inputs.refuse("modes", f"a non-empty list of {', '.join(FAULT_MODES)}", modes)
    seeded = inputs.seed(seed)
    given = {} if delays is None else delays
    if not isinstance(given, Mapping) or any(mode not in FAULT_MODES for mode in given):
        raise inputs.refuse(
            "delays", f"an object that maps fault modes ({', '.join(FAULT_MODES)}) to seconds", delays
        )
    unique = tuple(dict.fromkeys(chosen))
    seconds: dict[str, float] = {}
    for mode in unique:
        try:
            seconds[mode] = (
                _delay(given[mode], f"delays[{mode}]")
                if mode in given
                else DEFAULT_FAULT_DELAY.get(mode, 0.0)
            )
        except inputs.SandboxError as error:
            error.field = "delays"
            raise
    return RandomFaults(
        action=name, rate=probability, modes=unique, delays=MappingProxyType(seconds), seed=seeded
    )


class Faults:
    """Queued faults (applied first, in order), the random plan, and counts of injected faults."""

    def __init__(self) -> None:
        self._queue: list[tuple[Fault, int]] = []  # (fault, calls left)
        self._plan: RandomFaults | None = None
        self._draws = random.Random()
        self._injected: dict[str, dict[str, int]] = {}  # action -> mode -> count

    def queue(self, fault: Fault, count: int) -> None:
        """Make the next ``count`` calls of ``fault.action`` fail as ``fault`` says."""
        self._queue.append((fault, count))

    def set_plan(self, plan: RandomFaults) -> None:
        """Replace the random plan; its draws restart from its seed."""
        self._plan = plan
        self._draws = random.Random(plan.seed)

    def clear(self) -> None:
        """Drop the queue and the plan; the counts of injected faults stay."""
        self._queue.clear()
        self._plan = None

    def next(self, action: str, counted_as: str) -> Fault | None:
        """The fault a call of ``action`` suffers, if any; counted under ``counted_as``."""
        for index, (fault, left) in enumerate(self._queue):
            if fault.action in (action, "*"):
                if left <= 1:
                    del self._queue[index]
                else:
                    self._queue[index] = (fault, left - 1)
                return self._count(counted_as, fault)
        plan = self._plan
        if plan is not None and plan.action in (action, "*") and self._draws.random() < plan.rate:
            mode = self._draws.choice(plan.modes)
            return self._count(counted_as, Fault(action=action, mode=mode, delay=plan.delays[mode]))
        return None

    def _count(self, action: str, fault: Fault) -> Fault:
        per_mode = self._injected.setdefault(action, {})
        per_mode[fault.mode] = per_mode.get(fault.mode, 0) + 1
        return fault

    def pending_json(self) -> list[dict[str, Any]]:
        """Queued faults in the order they apply."""
        return [
            {"action": f.action, "mode": f.mode, "count": left, "delay": f.delay} for f, left in self._queue
        ]

    def plan_json(self) -> dict[str, Any] | None:
        """The random plan, or ``None``."""
        return self._plan.to_json() if self._plan else None

    def injected_json(self) -> dict[str, dict[str, int]]:
        """Action → mode → how many faults were injected."""
        return {action: dict(modes) for action, modes in self._injected.items()}
