# Who rented a rental, as the charge ledger recorded it: the one question a wait asks the ledger
# (is every SMS on this rental new to this DAG run?). Reads two Variables; writes nothing.
"""Whether a rental was rented in a given DAG run, from the charge ledger's claim and record."""

from __future__ import annotations

from typing import Any

from airflow_provider_smsonline.ledger.keys import claim_key
from airflow_provider_smsonline.ledger.records import Done, record_from_json

__all__ = ["rented_in_run"]


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
