# The ledger's data as values, and their JSON forms in Airflow Variables. No I/O here: the store
# reads and writes the JSON, the decision function reads the values.
"""Typed records of the charge ledger: what a task instance wrote around a charging call, and
what task instances on one account announce to each other."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from types import MappingProxyType
from typing import Any

from airflow_provider_smsonline.protocol import Activation, Rental, RentListEntry

#: How a snapshot of the account's rentals was read: getRentList (every active rental), or, where
#: getRentList wants a rental id, getRentHistory (every rental begun in a window around the call).
LIST = "getRentList"
HISTORY = "getRentHistory"


@dataclass(frozen=True)
class Listed:
    """A getRentList row, reduced to what SMS.online documents for it (``price`` is not needed).

    :ivar id: the rental's id.
    :ivar phone: what rows are compared by: its number's digest (:func:`~.keys.number_digest`);
        in a record of a release before 0.2, the number itself (digested when read).
    :ivar hours: its period in hours (a renewal adds its ``rent_time``); ``None`` if not sent.
    :ivar number: the number itself, for a row read from the API now; never written to a Variable.
    """

    id: int
    phone: str
    hours: int | None = None
    number: str = field(default="", compare=False)

    @classmethod
    def of(cls, entry: RentListEntry, digest: Callable[[str], str]) -> Listed:
        """The documented fields of a parsed row (``digest`` turns its number into what is kept);
        anything else the server sent is ignored."""
        return cls(id=entry.id, phone=digest(entry.number), hours=entry.hours, number=entry.number)


#: What a charging call asked for, ``(argument, value)`` pairs sorted by argument: a later try
#: that asks for something else is not served the earlier buy.
Asked = tuple[tuple[str, Any], ...]


def asked_of(arguments: Mapping[str, Any]) -> Asked:
    """The :data:`Asked` form of a call's arguments."""
    return tuple(sorted(arguments.items()))


def asked_by(record: Record | ActivationRecord) -> Asked | None:
    """What ``record``'s call asked for; for a record of an older release, what its other fields
    tell (a renewal's rental, a pending rental's hours, an activation's service and country)."""
    if record.asked is not None:
        return record.asked
    if isinstance(record, ActivationPending):
        return asked_of({"service": record.service, "country": record.country})
    if isinstance(record, ActivationDone):
        return None
    told: dict[str, Any] = {} if record.renewing is None else {"rent_id": record.renewing}
    if isinstance(record, Pending):
        told["rent_time"] = record.rent_time
    return asked_of(told) if told else None


@dataclass(frozen=True)
class Pending:
    """Written before a charging call; its outcome is unknown until :class:`Done` replaces it.

    :ivar started: when the call was about to be made (this machine's clock, UTC).
    :ivar until: when the call's window closes: it cannot be served after that.
    :ivar snapshot: getRentList just before the call.
    :ivar rent_time: the hours asked for (``None``: the server's default).
    :ivar renewing: the id of the rental being renewed; ``None`` for a new rental.
    :ivar intent: the Variable announcing the call to other task instances, if any.
    :ivar looked_at: when a look after a lost answer last found nothing to adopt.
    :ivar named: the named-rental Variables this record's ambiguity wrote.
    :ivar asked: what the call asked for (``None`` in a record of an older release).
    :ivar listing: how ``snapshot`` was read, :data:`LIST` or :data:`HISTORY` (where getRentList
        wants an id); the account is read the same way again to compare with it.
    """

    started: datetime
    until: datetime
    snapshot: tuple[Listed, ...]
    rent_time: int | None
    renewing: int | None = None
    intent: str | None = None
    looked_at: datetime | None = None
    named: tuple[str, ...] = ()
    asked: Asked | None = None
    listing: str = LIST

    @property
    def base(self) -> Listed | None:
        """The renewed rental's row in the snapshot (``None``: not a renewal, or not listed)."""
        return next((row for row in self.snapshot if row.id == self.renewing), None)


@dataclass(frozen=True)
class Done:
    """Written after a charging call: the rental it paid for (or that was found to be its own).

    :ivar rental: the rental (for a renewal: after it; its id may be new).
    :ivar renewing: the id the renewal started from; ``None`` for a new rental.
    :ivar claim: the claim Variable this record holds on the rental, if any.
    :ivar asked: what the call asked for (``None`` in a record of an older release).
    """

    rental: Rental
    renewing: int | None = None
    claim: str | None = None
    asked: Asked | None = None


Record = Pending | Done


@dataclass(frozen=True)
class ActivationPending:
    """Written before getNumber; its outcome is unknown until :class:`ActivationDone` replaces it.

    :ivar started: when the call was about to be made (UTC).
    :ivar until: when the call's window closes: it cannot be served after that.
    :ivar snapshot: the ids getActiveActivations listed just before the call; ``None`` when it
        could not be read (then a lost answer cannot be reconciled).
    :ivar service: the service code asked for.
    :ivar country: the country code asked for.
    :ivar asked: what the call asked for (``None`` in a record of an older release).
    """

    started: datetime
    until: datetime
    snapshot: tuple[int, ...] | None
    service: str
    country: int
    asked: Asked | None = None


@dataclass(frozen=True)
class ActivationDone:
    """Written after getNumber: the activation it bought (or that was found to be its own).

    :ivar activation: the activation (its number only in memory: read back from getHistory).
    :ivar claim: the claim Variable this record holds on it, if any.
    :ivar asked: what the call asked for (``None`` in a record of an older release).
    :ivar at: when the record was written (read back from its Variable).
    """

    activation: Activation
    claim: str | None = None
    asked: Asked | None = None
    at: datetime | None = None


ActivationRecord = ActivationPending | ActivationDone
#: The ``kind`` an activation record's JSON carries (the rent family's records carry none).
ACTIVATION_KIND = "activation"


@dataclass(frozen=True)
class Intent:
    """Another task instance's charging call on the same account, announced while unresolved.

    :ivar owner: its record's Variable.
    :ivar started: when its call was made.
    :ivar until: when its call's window closes.
    :ivar looked_at: when it last looked after a lost answer and found nothing of its own.
    :ivar answered: the rental its call was answered with (noted before anything else).
    :ivar snapshot: the rental ids its record's snapshot holds (read from its record; ``None``:
        unknown). A rental in it existed before that call, so that call did not make it.
    :ivar rent_time: the hours its call asked for (from its record; ``None``: unknown or default).
    :ivar renewing: the rental its call renews (from its record), ``None`` for a new rental.
    :ivar listing: how its snapshot was read (from its record): with :data:`HISTORY`, a rental
        absent from it may have begun before its window, so its absence proves nothing.
    """

    owner: str
    started: datetime | None = None
    until: datetime | None = None
    looked_at: datetime | None = None
    answered: int | None = None
    snapshot: frozenset[int] | None = None
    rent_time: int | None = None
    renewing: int | None = None
    listing: str = LIST


@dataclass(frozen=True)
class NamedMark:
    """A rental another task instance named in its ambiguity, and when it appeared.

    :ivar owner: that task instance's record Variable.
    :ivar appeared_after: the rental was not there before this.
    :ivar appeared_by: it was there by this.
    """

    owner: str
    appeared_after: datetime | None = None
    appeared_by: datetime | None = None


@dataclass(frozen=True)
class Survey:
    """What other task instances on the account say about the rentals that appeared.

    :ivar held: rentals others claimed, or whose calls were answered with them.
    :ivar named: rentals others named in an ambiguity, not claimed by anyone.
    :ivar rivals: others' unresolved calls (no answer noted).
    :ivar own_answer: the rental this record's own call was answered with, if that was noted.
    :ivar claimed: every rental claimed on the account (``None``: the store cannot list them).
    """

    held: frozenset[int] = frozenset()
    named: Mapping[int, NamedMark] = field(default_factory=lambda: MappingProxyType({}))
    rivals: tuple[Intent, ...] = ()
    own_answer: int | None = None
    claimed: frozenset[int] | None = None


# ----------------------------------------------------------------------------- JSON forms


def _time(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def _when(value: Any) -> datetime | None:
    try:
        return datetime.fromisoformat(value) if isinstance(value, str) and value else None
    except ValueError:
        return None


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _asked(value: Any) -> Asked | None:
    return asked_of(value) if isinstance(value, dict) else None


def record_to_json(record: Record, *, task: list[object], at: datetime) -> dict[str, Any]:
    """A record's Variable value; ``task`` and ``at`` (when written) serve pruning."""
    base: dict[str, Any] = {
        "task": task,
        "at": at.isoformat(),
        "renewing": record.renewing,
        "asked": dict(record.asked) if record.asked else None,
    }
    if isinstance(record, Done):
        # No number: a retry reads it from getRentList again (the Variable holds no phone number).
        rental = {"id": record.rental.id, "end_date": record.rental.end_date.isoformat()}
        return {**base, "state": "done", "rental": rental, "claim": record.claim}
    return {
        **base,
        "state": "pending",
        "started": record.started.isoformat(),
        "until": record.until.isoformat(),
        "snapshot": [[row.id, row.phone, row.hours] for row in record.snapshot],
        "rent_time": record.rent_time,
        "intent": record.intent,
        "looked_at": _time(record.looked_at),
        "named": list(record.named),
        "listing": record.listing,
    }


def record_from_json(data: Mapping[str, Any]) -> Record | None:
    """The record in a Variable's value; ``None`` for an empty value.

    :raises ValueError: the value is not a record this version wrote.
    """
    if not data:
        return None
    state = data.get("state")
    try:
        if state == "done":
            rental = data["rental"]
            return Done(
                rental=Rental(
                    id=int(rental["id"]),
                    number=str(rental.get("number") or ""),  # kept by releases before 0.2
                    end_date=datetime.fromisoformat(rental["end_date"]),
                ),
                renewing=_int(data.get("renewing")),
                claim=data.get("claim") or None,
                asked=_asked(data.get("asked")),
            )
        if state == "pending":
            return Pending(
                started=datetime.fromisoformat(data["started"]),
                until=datetime.fromisoformat(data["until"]),
                snapshot=tuple(
                    Listed(id=int(row[0]), phone=str(row[1]), hours=_int(row[2])) for row in data["snapshot"]
                ),
                rent_time=_int(data.get("rent_time")),
                renewing=_int(data.get("renewing")),
                intent=data.get("intent") or None,
                looked_at=_when(data.get("looked_at")),
                named=tuple(key for key in data.get("named") or () if isinstance(key, str)),
                asked=_asked(data.get("asked")),
                listing=HISTORY if data.get("listing") == HISTORY else LIST,
            )
    except (KeyError, TypeError, ValueError, IndexError):
        pass
    raise ValueError(f"not a charge ledger record (state {state!r})")


def owned_keys(data: Mapping[str, Any]) -> set[str]:
    """The claim, intent and named Variables a record's value holds (they go when it goes)."""
    keys = [data.get("claim"), data.get("intent"), *(data.get("named") or ())]
    return {key for key in keys if isinstance(key, str) and key}


def intent_to_json(owner: str, record: Pending, answered: int | None = None) -> dict[str, Any]:
    """What a pending record announces: whose call, its window, and its answer once known."""
    return {
        "owner": owner,
        "started": record.started.isoformat(),
        "until": record.until.isoformat(),
        "looked_at": _time(record.looked_at),
        "answered": answered,
    }


def intent_from_json(data: Mapping[str, Any]) -> Intent | None:
    """An intent's value; ``None`` when empty or unreadable."""
    owner = data.get("owner")
    if not isinstance(owner, str):
        return None
    answered = data.get("answered")
    return Intent(
        owner=owner,
        started=_when(data.get("started")),
        until=_when(data.get("until")),
        looked_at=_when(data.get("looked_at")),
        answered=int(answered) if isinstance(answered, (int, str)) and str(answered).isdigit() else None,
    )


def named_to_json(owner: str, appeared_after: datetime, appeared_by: datetime) -> dict[str, Any]:
    """A named rental's value."""
    return {
        "owner": owner,
        "named": True,
        "appeared_after": appeared_after.isoformat(),
        "appeared_by": appeared_by.isoformat(),
    }


def named_from_json(data: Mapping[str, Any]) -> NamedMark | None:
    """A named rental's value; ``None`` when empty or unreadable."""
    owner = data.get("owner")
    if not isinstance(owner, str):
        return None
    return NamedMark(owner, _when(data.get("appeared_after")), _when(data.get("appeared_by")))


def activation_to_json(record: ActivationRecord, *, task: list[object], at: datetime) -> dict[str, Any]:
    """An activation record's Variable value; ``task`` and ``at`` (when written) serve pruning."""
    base: dict[str, Any] = {
        "kind": ACTIVATION_KIND,
        "task": task,
        "at": at.isoformat(),
        "asked": dict(record.asked) if record.asked else None,
    }
    if isinstance(record, ActivationDone):
        # No number (as for a rental): a retry reads it from getHistory.
        activation = {"id": record.activation.id}
        return {**base, "state": "done", "activation": activation, "claim": record.claim}
    return {
        **base,
        "state": "pending",
        "started": record.started.isoformat(),
        "until": record.until.isoformat(),
        "snapshot": list(record.snapshot) if record.snapshot is not None else None,
        "service": record.service,
        "country": record.country,
    }


def activation_from_json(data: Mapping[str, Any]) -> ActivationRecord | None:
    """The activation record in a Variable's value; ``None`` for an empty value.

    :raises ValueError: the value is not an activation record this version wrote.
    """
    if not data:
        return None
    state = data.get("state") if data.get("kind") == ACTIVATION_KIND else None
    try:
        if state == "done":
            saved = data["activation"]
            activation = Activation(id=int(saved["id"]), number=str(saved.get("number") or ""))
            return ActivationDone(
                activation=activation,
                claim=data.get("claim") or None,
                asked=_asked(data.get("asked")),
                at=_when(data.get("at")),
            )
        if state == "pending":
            snapshot = data.get("snapshot")
            started = datetime.fromisoformat(data["started"])
            return ActivationPending(
                started=started,
                until=_when(data.get("until")) or started,
                snapshot=(
                    tuple(i for i in snapshot if isinstance(i, int) and not isinstance(i, bool))
                    if isinstance(snapshot, list)
                    else None
                ),
                service=str(data["service"]),
                country=int(data["country"]),
                asked=_asked(data.get("asked")),
            )
    except (KeyError, TypeError, ValueError):
        raise ValueError(f"not an activation record (state {state!r}, damaged)") from None
    raise ValueError(f"not an activation record (kind {data.get('kind')!r}, state {data.get('state')!r})")
