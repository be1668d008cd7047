# Who paid for a rental or an activation, as the charge ledger recorded it: its claim names the
# record of the task instance and run that paid, and that record names the task. Read-only: for
# a wait (is every SMS on this rental new to this DAG run?) and for whatever shows a rental next
# to the DAG that pays for it.
"""The task instance and run that paid for a rental or an activation, from the charge ledger."""

from __future__ import annotations

from typing import Any

from airflow_provider_smsonline.ledger.keys import TaskRun, claim_key
from airflow_provider_smsonline.ledger.records import Done, record_from_json

__all__ = ["owner_of", "rented_in_run"]


def owner_of(store: Any, account: str, item_id: int, *, activation: bool = False) -> TaskRun | None:
    """The task instance and run whose charging call paid for rental ``item_id`` (or activation,
    with ``activation=True``) on ``account`` (:func:`~.keys.account_id`), as its claim and record
    say; ``None`` when no record of this ledger claims it (rented by hand, or pruned).

    :param store: where the ledger's values live (``VariableStore()`` in Airflow).
    """
    if activation:
        # the activation ledger's module imports the hook's types: loaded on use
        from airflow_provider_smsonline.ledger.activation import claim_key as activation_claim_key

        key = activation_claim_key(account, item_id)
    else:
        key = claim_key(account, item_id)
    owner = store.get(key).get("owner")
    if not isinstance(owner, str):
        return None
    task = store.get(owner).get("task")
    if not (isinstance(task, list) and len(task) == 4):
        return None
    dag_id, task_id, map_index, run_id = task
    if not (isinstance(dag_id, str) and isinstance(task_id, str) and isinstance(run_id, str)):
        return None
    if isinstance(map_index, bool) or not isinstance(map_index, int):
        return None
    return TaskRun(dag_id, task_id, map_index, run_id)


def rented_in_run(store: Any, account: str, rent_id: int, dag_id: str, run_id: str) -> bool:
    """Whether rental ``rent_id`` of ``account`` was rented by a task of DAG run ``run_id`` of
    ``dag_id``: its claim names a record of that run that paid for it as a new rental.

    A renewal does not count (the rental, and its SMS, are older than the renewal), nor does a
    rental the ledger never saw (rented outside the provider's operators, or in another run).

    :param store: the ledger's store (:class:`~.store.VariableStore`).
    :param account: :func:`~.charge.account_of` the connection's hook.
    """
    owner = store.get(claim_key(account, rent_id)).get("owner")
    if not isinstance(owner, str) or not owner:
        return False
    data = store.get(owner)
    task = data.get("task")
    if not isinstance(task, list) or len(task) != 4 or task[0] != dag_id or task[3] != run_id:
        return False
    try:
        record = record_from_json(data)
    except ValueError:
        return False
    return isinstance(record, Done) and record.renewing is None and record.rental.id == rent_id
