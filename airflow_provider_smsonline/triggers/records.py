# Where an asset watch remembers which SMS it has accounted for: one Airflow Variable per watch,
# read and written through the triggerer's supervisor on the trigger's own event loop (the Task
# SDK's Variable breaks Airflow 3.1's triggerer there). No Airflow import until a record is used.
"""The records of :class:`~airflow_provider_smsonline.triggers.events.SmsReceivedTrigger` watches."""

from __future__ import annotations

import hashlib
import json
import re
import sys
from typing import Any, Protocol, cast

__all__ = ["RECORD_PREFIX", "VariableRecords", "WatchRecordError", "WatchRecords", "record_key"]

#: The start of every watch record's Variable name.
RECORD_PREFIX = "smsonline_watch__"

_NOT_READABLE = re.compile(r"[^A-Za-z0-9._-]+")

# Airflow's Variable key column holds 250 characters; the readable part is for people only.
_READABLE_CONN_ID = 60


def record_key(smsonline_conn_id: str, rent_id: int, pattern: str | None) -> str:
    """The Airflow Variable in which the watch of ``rent_id`` with ``pattern`` keeps its record.

    ``smsonline_watch__<rent_id>__<connection id>__<digest>``: the digest (of the connection id,
    the rental id and the pattern) tells apart watches whose readable parts look alike.
    ``poll_interval`` is not part of it, so that changing the interval keeps the record.
    """
    digest = hashlib.sha256(
        json.dumps([smsonline_conn_id, rent_id, pattern or None], separators=(",", ":")).encode()
    ).hexdigest()[:16]
    readable = _NOT_READABLE.sub("-", smsonline_conn_id)[:_READABLE_CONN_ID]
    return f"{RECORD_PREFIX}{rent_id}__{readable}__{digest}"


class WatchRecordError(Exception):
    """The watch record could not be read or written (the message names the Variable)."""


class WatchRecords(Protocol):
    """Where watches keep their records: one JSON object per key (Airflow Variables by default)."""

    async def load(self, key: str) -> dict[str, Any] | None:
        """The record at ``key``, ``None`` when there is none; :class:`WatchRecordError` on failure."""

    async def save(self, key: str, record: dict[str, Any]) -> None:
        """Write ``record`` at ``key`` and make sure it is there; :class:`WatchRecordError` if not."""

    async def delete(self, key: str) -> None:
        """Remove ``key`` (no record: no error); :class:`WatchRecordError` on failure."""


class VariableRecords:
    """Watch records in Airflow Variables (JSON), in the metadata database.

    In the triggerer each read and write is one message to the triggerer's supervisor, sent on
    the trigger's own event loop, as Airflow's triggerer sends its own. The Task SDK's
    ``Variable`` is not used there: on Airflow 3.1, called from a trigger (even in a worker
    thread) it answers on another event loop, which breaks the runner's channel and ends every
    trigger of the triggerer. Elsewhere (no triggerer) the Task SDK's ``Variable`` is used, in a
    thread. In the triggerer the record is read from the database only, never from a secrets
    backend.
    """

    #: The description every record's Variable carries, for whoever lists Variables.
    DESCRIPTION = (
        "airflow-provider-smsonline: which SMS an SmsReceivedTrigger watch has accounted for. "
        "Removed when the rental ends; safe to delete when no asset watches this rental any more."
    )

    async def load(self, key: str) -> dict[str, Any] | None:
        """The record, ``None`` when the Variable is missing (or is not a watch record)."""
        raw = await self._read(key)
        try:
            record = json.loads(raw) if raw else None
        except ValueError:
            return None
        return record if isinstance(record, dict) else None

    async def read_text(self, key: str) -> str | None:
        """The Variable's text as stored (``None`` when it is missing), not parsed."""
        return await self._read(key)

    async def save(self, key: str, record: dict[str, Any]) -> None:
        """Write the Variable, then read it back (a failed write may only have been logged)."""
        text = json.dumps(record, separators=(",", ":"), sort_keys=True)
        channel = _triggerer_channel()
        if channel is None:
            await _in_thread("write", key, _variable_set, key, text, self.DESCRIPTION)
        else:
            # the Task SDK's comms and Variable load when a record is used, not at DAG parse
            from airflow.sdk.execution_time.comms import PutVariable

            await _ask(channel, "write", key, PutVariable(key=key, value=text, description=self.DESCRIPTION))
        if await self._read(key) != text:
            raise WatchRecordError(f"Variable {key!r} did not keep what was written")

    async def delete(self, key: str) -> None:
        """Delete the Variable."""
        channel = _triggerer_channel()
        if channel is None:
            await _in_thread("delete", key, _variable_delete, key)
        else:
            # the Task SDK's comms and Variable load when a record is used, not at DAG parse
            from airflow.sdk.execution_time.comms import DeleteVariable

            await _ask(channel, "delete", key, DeleteVariable(key=key))

    @staticmethod
    async def _read(key: str) -> str | None:
        channel = _triggerer_channel()
        if channel is None:
            return cast("str | None", await _in_thread("read", key, _variable_get, key))
        # the Task SDK's comms and Variable load when a record is used, not at DAG parse
        from airflow.sdk.execution_time.comms import GetVariable

        answer = await _ask(channel, "read", key, GetVariable(key=key))
        value = getattr(answer, "value", None)
        return value if isinstance(value, str) else None


def _triggerer_channel() -> Any:
    """The trigger runner's channel to its supervisor when this runs in a triggerer, else ``None``."""
    # Not imported here: a process that has not loaded it is no triggerer.
    runner = sys.modules.get("airflow.sdk.execution_time.task_runner")
    channel = getattr(runner, "SUPERVISOR_COMMS", None)
    return channel if type(channel).__name__ == "TriggerCommsDecoder" else None


async def _ask(channel: Any, what: str, key: str, message: Any) -> Any:
    """Send ``message`` on this loop; the answer, ``None`` for a Variable that does not exist."""
    # the Task SDK's comms and Variable load when a record is used, not at DAG parse
    from airflow.sdk.execution_time.comms import ErrorResponse

    try:
        answer = await channel.asend(message)
    except Exception as error:
        problem = f"could not {what} Variable {key!r} ({type(error).__name__}: {str(error)[:200]})"
    else:
        if not isinstance(answer, ErrorResponse):
            return answer
        error_type = str(getattr(answer.error, "value", answer.error))
        if error_type.endswith("NOT_FOUND"):
            return None
        problem = f"could not {what} Variable {key!r} ({error_type}: {str(answer.detail)[:200]})"
    raise WatchRecordError(problem)


async def _in_thread(what: str, key: str, function: Any, *args: Any) -> Any:
    # the Task SDK's comms and Variable load when a record is used, not at DAG parse
    from asgiref.sync import sync_to_async

    try:
        return await sync_to_async(function)(*args)
    except Exception as error:
        problem = f"could not {what} Variable {key!r} ({type(error).__name__}: {str(error)[:200]})"
    raise WatchRecordError(problem)


def _variable_get(key: str) -> str | None:
    # the Task SDK's comms and Variable load when a record is used, not at DAG parse
    from airflow.sdk import Variable

    value = Variable.get(key, default=None)
    return value if isinstance(value, str) or value is None else json.dumps(value)


def _variable_set(key: str, text: str, description: str) -> None:
    # the Task SDK's comms and Variable load when a record is used, not at DAG parse
    from airflow.sdk import Variable

    Variable.set(key, text, description=description)


def _variable_delete(key: str) -> None:
    # the Task SDK's comms and Variable load when a record is used, not at DAG parse
    from airflow.sdk import Variable

    Variable.delete(key)
