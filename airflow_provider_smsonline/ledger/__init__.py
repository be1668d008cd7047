# Charging calls carry no idempotency key: this package makes "at most one paid rental (or renewal)
# per task instance and run" hold across lost answers, task retries and killed workers.
"""The charge ledger: a durable record per task instance and run around every charging call.

Before a charging call the operator writes a *pending* record holding a snapshot of the
account's rentals (getRentList: id, phone, hours); after the answer it writes *done* with the
rental. A later try of the same task instance and run reads the record first:

* *done*: the rental was paid for already; it is returned again, nothing is charged (a new
  rental that has left getRentList since is rented anew). A try that asks for something else
  than the record's (another service, country, operator, hours or rental: a mapped task's list
  can change after a clear) gets ``ChargeConflictError`` naming the rental instead: nothing is
  charged, nothing released. Records of older releases are compared on what they hold.
* *pending*: the earlier try's outcome is unknown; :func:`~.decide.decide` reads getRentList,
  using only its documented fields:

  - new rental: the rows that appeared since the snapshot with the hours asked for, less
    those others hold (see *account*). None: nothing was rented, the call is made again; one:
    adopted; several, or one carrying the number of a rental that left the list meanwhile (a
    renewal under a new id looks like that), or one that another unresolved call may have
    made: the task fails without retry, naming them.
  - renewal of rental R: R with ``hours`` grown by ``rent_time`` was renewed; R with its
    hours unchanged was not (the call is made again); R gone and one new row with R's number:
    renewed under that new id (sms-activate documents it), which is adopted and claimed;
    anything else fails without retry, naming R.

  An adopted rental's end date is the earliest the list allows (the try's start plus its
  hours): getRentList documents no end date.

Airflow Variables, and how many:

* ``smsonline_charge__<dag>.<task>[.<map_index>]__<d1>__<d2>``: one record per task instance
  and run, written only by that run's tries, so no two runs ever rewrite one Variable. ``d1``
  and ``d2`` are digests of the JSON lists ``[dag_id, task_id, map_index]`` and
  ``[dag_id, task_id, map_index, run_id]``: names of different tasks or runs never collide,
  whatever ``__`` their ids hold. Keys stay under Airflow's 250 characters. A run's first
  charging try prunes its task instance's records to the :data:`RUNS_KEPT` (20) most recently
  written, deleting older ones with their claims, intents and named rentals: at most 20 per
  task instance (dag, task, map index), plus those of runs in flight. Where the Task SDK cannot list Variables
  (``Variable.keys`` is in Airflow 3.3, not 3.1 or 3.2), the list of a task instance's
  records is kept in ``smsonline_charge__<dag>.<task>[.<map_index>]__<d1>``; two runs of one
  task instance writing it at once can drop an entry, which leaves that record behind (to
  delete by hand), never loses one.
* Per account (``<account>``: :func:`~.keys.account_id`, a truncated SHA-256 of the
  endpoint and the API key, so every connection holding the same key shares it and the key
  cannot be read back from it): ``smsonline_rental__<account>__<rental_id>`` claims a rental
  for the record named in it; ``smsonline_rental__<account>__pending__<d>`` announces a
  record's call while it is unresolved (its window: until its connect and read timeouts and a
  margin have passed; marked *looked* once a look after a lost answer found nothing, and
  *answered* with the rental id as soon as an answer arrives); and
  ``smsonline_rental__<account>__named__<rental_id>__<d>`` marks a rental a failure named,
  with when it appeared (one per namer, so two failures at once never overwrite each other's;
  the first also writes ``…__named__<rental_id>``, read where Variables cannot be listed).
  They go when their record goes (done replaces pending, the record is cleared or pruned), so
  there are at most a few per record, plus one claim per rental.

Reconciliation skips rentals others claimed or were answered with, so a retry neither adopts
their rentals nor fails for them, and a retry after a kill finds its own answered rental. A
rental nobody claims while another call whose window overlaps ours is unresolved may be that
one's: it is waited for, then left to it (when our own call was already looked for) or
reported as ambiguous, never adopted. Named rentals are skipped unless our window overlaps
when they appeared; one that did appeared while its namer's call was unresolved, so it is
treated the same way (left to its namer, or ambiguous), never adopted. Where Variables cannot
be listed, intents are not seen and only claims apply.

Many writers (several workers, one account): a rival's record tells what its call can have
made: not a rental its snapshot holds, nor one of other hours. A rental only our call can have
made is adopted though rivals are unresolved, and a rival with a rental only it can have made
explains no other; a rental absent from the snapshot of a call made after our window closed is
never ours. Times other task instances wrote come from their machines' clocks and are widened
by ``CLOCK_SKEW`` (5 s) before comparison. A retry whose record is pending waits until that
call's window (and the skew) has passed, reading the record again: an earlier try thought lost
may still be answered. Concurrent charging calls on one
account can end in ChargeAmbiguousError (safe: never a double, the rentals are named); one
charging task at a time per account (e.g. an Airflow pool of one slot) avoids that.
"""

from __future__ import annotations

from airflow_provider_smsonline.ledger.charge import (
    RIVAL_POLL_SECONDS,
    WINDOW_MARGIN,
    ChargeAmbiguousError,
    ChargeConflictError,
    account_of,
    charge_once,
)
from airflow_provider_smsonline.ledger.decide import decide
from airflow_provider_smsonline.ledger.keys import CLAIM_PREFIX, PREFIX, TaskRun, account_id
from airflow_provider_smsonline.ledger.records import Done, Listed, Pending, Survey
from airflow_provider_smsonline.ledger.store import RUNS_KEPT, ChargeLedger, VariableStore

__all__ = [
    "CLAIM_PREFIX",
    "PREFIX",
    "RIVAL_POLL_SECONDS",
    "RUNS_KEPT",
    "WINDOW_MARGIN",
    "ChargeAmbiguousError",
    "ChargeConflictError",
    "ChargeLedger",
    "Done",
    "Listed",
    "Pending",
    "Survey",
    "TaskRun",
    "VariableStore",
    "account_id",
    "account_of",
    "charge_once",
    "decide",
]
