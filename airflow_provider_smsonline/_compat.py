# Names that moved between the Airflow versions this provider supports (3.1 to 3.3), and the
# one connection lookup for event loops that works on all of them.
"""Airflow task exceptions and ``conf`` from ``airflow.sdk`` (3.2+) or their 3.1 homes, and
:func:`aget_connection`, the connection lookup for triggers."""

from __future__ import annotations

from typing import Any

try:
    from airflow.sdk.exceptions import (
        AirflowFailException,
        AirflowNotFoundException,
        AirflowSensorTimeout,
        AirflowSkipException,
        TaskDeferred,
    )
except ImportError:  # Airflow 3.1
    from airflow.exceptions import (  # type: ignore[no-redef]
        AirflowFailException,
        AirflowNotFoundException,
        AirflowSensorTimeout,
        AirflowSkipException,
        TaskDeferred,
    )

try:
    from airflow.sdk import conf
except ImportError:  # Airflow 3.1
    from airflow.configuration import conf  # type: ignore[no-redef, assignment]

__all__ = [
    "AirflowFailException",
    "AirflowNotFoundException",
    "AirflowSensorTimeout",
    "AirflowSkipException",
    "TaskDeferred",
    "aget_connection",
    "conf",
]


async def aget_connection(conn_id: str) -> dict[str, Any]:
    """Look up the Airflow connection ``conn_id`` from a coroutine, on Airflow 3.1 to 3.3.

    Returns ``{"conn_id", "host", "port", "password", "extras"}`` (``extras`` a dict). Every
    source Airflow reads is searched, in Airflow's order: environment variables, the configured
    secrets backend, then the metadata DB (through the supervisor, the Execution API or the
    DB itself, whichever the process has). The password and extras are registered with the
    log masker.

    Why not ``BaseHook.aget_connection``: before Airflow 3.3.2 it masks secrets with a
    synchronous supervisor call on the event loop (``DeadlockImminentError`` or a hang), and
    in ``airflow dags test`` (every version so far) its supervisor has no async channel, so
    a connection stored in the metadata DB is not found. Airflow's synchronous lookup, run in
    a worker thread, works everywhere: asgiref's ``sync_to_async`` (not ``asyncio.to_thread``)
    lets the supervisor round trip of Airflow 3.1/3.2's triggerer run back on this event loop.

    :param conn_id: the connection's id.
    :raises AirflowNotFoundException: no source has the connection.
    :raises ValueError: the connection's extra is not a JSON object (nothing else is read).
    """
    # loaded on a lookup, not at DAG parse (asgiref, the Task SDK's log, the policy)
    from asgiref.sync import sync_to_async

    # Thread-sensitive (asgiref's default): lookups take turns on one thread, so this provider never
    # has two synchronous supervisor calls in flight, which 3.1/3.2's channel cannot take
    # (apache/airflow#64620).
    return await sync_to_async(_connection_fields, thread_sensitive=True)(conn_id)


def _connection_fields(conn_id: str) -> dict[str, Any]:
    """The blocking half of :func:`aget_connection`: never call it on an event loop."""
    # loaded on a lookup, not at DAG parse (asgiref, the Task SDK's log, the policy)
    from airflow.sdk import BaseHook
    from airflow.sdk.log import mask_secret

    try:
        conn = BaseHook.get_connection(conn_id)
    except ImportError:
        # Airflow 3.1 outside a task or triggerer: once the environment and the secrets backend
        # have missed, the SDK imports the supervisor channel, which such a process lacks.
        raise AirflowNotFoundException(f"The conn_id `{conn_id}` isn't defined") from None
    # loaded on a lookup, not at DAG parse (asgiref, the Task SDK's log, the policy)
    from airflow_provider_smsonline.policy import connection_extras

    extras = connection_extras(conn)
    if extras:
        mask_secret(extras)
    return {
        "conn_id": conn_id,
        "host": conn.host,
        "port": conn.port,
        "password": conn.password,
        "extras": extras,
    }
