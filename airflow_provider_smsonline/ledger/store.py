# Where the ledger's values live: Airflow Variables, one per task instance and run, so that no two
# writers ever share one (no read-modify-write of another run's data), plus claims and intents per
# account. Older runs' records are pruned here, with everything they own.
"""The charge ledger's store: records, claims, intents and named rentals in Airflow Variables."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, Protocol

from airflow_provider_smsonline.ledger.keys import (
    TaskRun,
    claim_key,
    claim_prefix,
    intent_key,
    intent_prefix,
    is_intent_of,
    named_key,
    namer_key,
)
from airflow_provider_smsonline.ledger.records import (
    Intent,
    NamedMark,
    Pending,
    Record,
    Survey,
    intent_from_json,
    intent_to_json,
    named_from_json,
    named_to_json,
    owned_keys,
    record_from_json,
    record_to_json,
)

if TYPE_CHECKING:
    from airflow.sdk import Context

log = logging.getLogger(__name__)

#: Records kept per task instance (dag, task, map index): this run's and the newest others.
RUNS_KEPT = 20
DESCRIPTION = "airflow-provider-smsonline charge ledger; safe to delete when no run of this task is active"


class Store(Protocol):
    """What the ledger needs of a key-value store (Airflow Variables by default)."""

    def get(self, key: str) -> dict[str, Any]:
        """The value at ``key``; ``{}`` when missing or unreadable."""

    def set(self, key: str, value: dict[str, Any]) -> None:
        """Write ``value`` at ``key``."""

    def delete(self, key: str) -> None:
        """Remove ``key`` (missing: no error)."""

    def keys(self, prefix: str) -> list[str] | None:
        """The keys starting with ``prefix``; ``None`` where the store cannot list."""


class VariableStore:
    """Values kept in Airflow Variables, as JSON (the default store)."""

    def get(self, key: str) -> dict[str, Any]:
        """The Variable's JSON object; ``{}`` when missing, not JSON or not an object."""
        from airflow.sdk import Variable

        raw = Variable.get(key, default=None)
        try:
            value = json.loads(raw) if raw else {}
        except ValueError:
            value = {}
        return value if isinstance(value, dict) else {}

    def set(self, key: str, value: dict[str, Any]) -> None:
        """Write the Variable (with a description saying whose it is)."""
        from airflow.sdk import Variable

        Variable.set(key, json.dumps(value, sort_keys=True), description=DESCRIPTION)

    def delete(self, key: str) -> None:
        """Delete the Variable."""
        from airflow.sdk import Variable

        Variable.delete(key)

    def keys(self, prefix: str) -> list[str] | None:
        """The Variable keys starting with ``prefix``; ``None`` where Airflow cannot list them."""
        from airflow.sdk import Variable

        lister = getattr(Variable, "keys", None)  # Task SDK of Airflow 3.3+, not 3.1 or 3.2
        if lister is None:
            return None
        try:
            # Matched with SQL LIKE, where "_" is a wildcard: keep only true prefixes.
            return [key for key in lister(prefix=prefix) if key.startswith(prefix)]
        except Exception:  # an optimisation only: without it each rental is looked up
            log.debug("Listing Variables failed", exc_info=True)
            return None


@dataclass
class ChargeLedger:
    """The record of one task instance in one run, and what it claims and announces on an account.

    :ivar task: whose record it is.
    :ivar store: where values live.
    """

    task: TaskRun
    store: Any
    #: This run's record has the name it had before 0.2 (an earlier try ran on that release).
    legacy: bool = False

    @classmethod
    def for_context(cls, context: Context, store: Any | None = None) -> ChargeLedger:
        """The ledger of the task instance running in ``context`` (with the record an earlier try
        wrote under the name of the release before, if there is one)."""
        ti = context["ti"]
        map_index = getattr(ti, "map_index", None)  # the Task SDK types it ``int | None``
        task = TaskRun(
            str(ti.dag_id), str(ti.task_id), -1 if map_index is None else int(map_index), str(ti.run_id)
        )
        ledger = cls(task=task, store=store if store is not None else VariableStore())
        old = task.legacy_record_key
        if old != task.record_key and not ledger.store.get(task.record_key) and ledger.store.get(old):
            ledger.legacy = True
        return ledger

    @property
    def key(self) -> str:
        """The Variable holding this run's record."""
        return self.task.legacy_record_key if self.legacy else self.task.record_key

    def intent_key(self, account: str) -> str:
        """The Variable announcing this run's call on ``account``."""
        return intent_key(account, self.key)

    # ------------------------------------------------------------------ the record

    def read(self) -> Record | None:
        """This run's record, if any.

        :raises ValueError: the Variable holds something else (naming it: delete it to go on).
        """
        data = self.store.get(self.key)
        try:
            return record_from_json(data)
        except ValueError as error:
            raise ValueError(
                f"the charge ledger's Airflow Variable {self.key!r} is damaged ({error}); check the "
                "account's rentals, then delete the Variable to let the task charge again"
            ) from None

    def write(self, record: Record | None, *, announce: bool = True) -> None:
        """Replace this run's record (``None`` removes it), announcing a pending call's intent
        (unless ``announce`` is false: :meth:`announce` does it later) and removing what the old
        record owned that the new one does not."""
        before = owned_keys(self.store.get(self.key))
        if record is None:
            self._forget(self.key, before)
            return
        now = datetime.now(timezone.utc)
        data = record_to_json(record, task=self.task.to_json(), at=now)
        self.store.set(self.key, data)
        if announce:
            self.announce(record)
        self._release(before - owned_keys(data))

    def announce(self, record: Record) -> None:
        """Announce a pending record's call to other task instances (its intent): just before the
        call, once this try's charging turn is sure (a try that lost the turn announces nothing)."""
        if isinstance(record, Pending) and record.intent:
            self.store.set(record.intent, intent_to_json(self.key, record))

    def answered(self, record: Pending, rental_id: int) -> None:
        """Note in this run's intent which rental its call was answered with: the first thing
        written after an answer, so that others skip it and a retry after a kill finds it."""
        if record.intent:
            self.store.set(record.intent, intent_to_json(self.key, record, answered=rental_id))

    def prune_on_first_try(self, record: object) -> None:
        """Prune (see :meth:`prune`) when ``record`` is ``None``, the run's first charging try
        (retries need not look again); a failure is logged, never raised: it only leaves old
        records behind."""
        if record is not None:
            return
        try:
            self.prune()
        except Exception:
            log.warning("Could not prune the charge ledger's older records", exc_info=True)

    def prune(self) -> int:
        """Delete this task instance's records beyond the newest :data:`RUNS_KEPT` (by last
        write), with what they own; returns how many went."""
        listed = self.store.keys(self.task.task_prefix)
        if listed is None:
            return self._prune_by_index()
        others = [key for key in listed if key != self.key]
        if len(others) < RUNS_KEPT:
            return 0
        dated = []
        for key in others:
            data = self.store.get(key)
            if data and not self.task.same_task(data.get("task")):
                continue  # not this task instance's (only a digest collision could do that)
            dated.append((str(data.get("at") or ""), key, data))
        dated.sort()
        gone = dated[: max(0, len(dated) - (RUNS_KEPT - 1))]
        for _, key, data in gone:
            self._forget(key, owned_keys(data))
        return len(gone)

    def _prune_by_index(self) -> int:
        """Without listing: a per-task-instance index of its records. Concurrent runs can each
        rewrite it and drop the other's entry; that only leaves a record behind, never loses one."""
        index_key = self.task.index_key
        runs = dict(self.store.get(index_key).get("runs") or {})
        runs[self.key] = datetime.now(timezone.utc).isoformat()
        old = sorted((at, key) for key, at in runs.items() if key != self.key)
        gone = [key for _, key in old[: max(0, len(runs) - RUNS_KEPT)]]
        for key in gone:
            data = self.store.get(key)
            if not data or self.task.same_task(data.get("task")):
                self._forget(key, owned_keys(data))
            runs.pop(key)
        self.store.set(index_key, {"runs": runs})
        return len(gone)

    def _forget(self, key: str, owned: Iterable[str]) -> None:
        self._release(owned, owner=key)
        self._delete(key)

    def _release(self, owned: Iterable[str], owner: str | None = None) -> None:
        """Delete claims, intents and named rentals that ``owner`` (default: this run) still owns.

        An intent's name is derived from its owner's, so it is deleted unread; a claim or a named
        rental is read first, lest one that another record wrote since go with ours.
        """
        owner = owner or self.key
        for key in owned:
            if is_intent_of(key, owner) or self.store.get(key).get("owner") == owner:
                self._delete(key)

    def _delete(self, key: str) -> None:
        try:
            self.store.delete(key)
        except Exception:  # an empty value reads as absent; a Variable left behind is harmless
            log.debug("Could not delete the Variable %s; emptying it", key, exc_info=True)
            self.store.set(key, {})

    # ------------------------------------------------------------------ the account

    def claim(self, account: str, rental_id: int) -> str:
        """Record that ``rental_id`` belongs to this task instance and run; returns the claim."""
        key = claim_key(account, rental_id)
        self.store.set(key, {"owner": self.key})
        return key

    def name(
        self, account: str, rental_ids: Iterable[int], appeared_after: datetime, appeared_by: datetime
    ) -> list[str]:
        """Mark rentals nobody claims as named by this run's ambiguity; returns the marks."""
        marks = []
        for rental_id in rental_ids:
            if self.store.get(claim_key(account, rental_id)):
                continue
            value = named_to_json(self.key, appeared_after, appeared_by)
            # This run's own mark, which no other namer writes; then the shared one, read where
            # Variables cannot be listed (there two namers at once can overwrite each other).
            own = namer_key(account, rental_id, self.key)
            self.store.set(own, value)
            marks.append(own)
            key = named_key(account, rental_id)
            if not self.store.get(key):
                self.store.set(key, value)
                marks.append(key)
        return marks

    def _with_record(self, intent: Intent) -> Intent:
        """``intent`` with what its owner's record says of the call: its snapshot, hours and
        renewal (a rental in its snapshot was not made by that call)."""
        try:
            record = record_from_json(self.store.get(intent.owner))
        except ValueError:
            return intent
        if not isinstance(record, Pending) or record.started != intent.started:
            return intent  # done, gone or a newer call: its claim or next intent tells the rest
        return replace(
            intent,
            snapshot=frozenset(row.id for row in record.snapshot),
            rent_time=record.rent_time,
            renewing=record.renewing,
            listing=record.listing,
        )

    def survey(self, account: str, rental_ids: Iterable[int]) -> Survey:
        """What others say about ``rental_ids``: held (claimed, or answered to their calls),
        named in their ambiguities, their unresolved calls, and this run's own noted answer.

        With a store that lists keys, one listing shows every claim and intent. Claims are
        listed again after the intents are read: an owner claims before it withdraws its
        intent, so a rival found gone shows its claim.
        """
        wanted = set(rental_ids)
        mine = self.intent_key(account)
        own_intent = intent_from_json(self.store.get(mine))
        own = own_intent.answered if own_intent else None
        listed = self.store.keys(claim_prefix(account))
        held: set[int] = set()
        rivals: list[Intent] = []
        if listed is not None:
            pending = intent_prefix(account)
            for key in sorted(k for k in listed if k.startswith(pending) and k != mine):
                intent = intent_from_json(self.store.get(key))
                if intent is None:
                    continue
                if intent.answered is not None:
                    held.add(intent.answered)  # its call was answered: that rental is its own
                else:
                    rivals.append(self._with_record(intent))
            listed = self.store.keys(claim_prefix(account))
        present = set(listed) if listed is not None else None
        named: dict[int, NamedMark] = {}
        for rental_id in wanted - {own}:
            claim = claim_key(account, rental_id)
            if present is not None and claim in present:
                # Unread: this run claims only the rental of its own noted answer (``own``).
                held.add(rental_id)
                continue
            if present is None and self.store.get(claim).get("owner"):
                held.add(rental_id)
                continue
            mark_key = named_key(account, rental_id)
            keys = (
                [mark_key]
                if present is None
                else sorted(key for key in present if key == mark_key or key.startswith(mark_key + "__"))
            )
            marks = [named_from_json(self.store.get(key)) for key in keys]
            others = [mark for mark in marks if mark is not None and mark.owner != self.key]
            if others:
                named[rental_id] = _merged(others)
        claimed = None
        if present is not None:
            start = len(claim_prefix(account))
            claimed = frozenset(int(key[start:]) for key in present if key[start:].isdigit())
        return Survey(
            held=frozenset(held & wanted), named=named, rivals=tuple(rivals), own_answer=own, claimed=claimed
        )


def _merged(marks: list[NamedMark]) -> NamedMark:
    """One mark for a rental several failures named: the first namer, and the widest time in
    which it appeared (a wider one overlaps more calls, which only makes reconciliation warier)."""
    afters = [mark.appeared_after for mark in marks if mark.appeared_after is not None]
    bys = [mark.appeared_by for mark in marks if mark.appeared_by is not None]
    return NamedMark(marks[0].owner, min(afters, default=None), max(bys, default=None))
