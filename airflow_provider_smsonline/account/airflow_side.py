# What the page needs of Airflow itself, in the api-server: which SMS.online connections exist
# (the metadata DB, AIRFLOW_CONN_* variables, and [smsonline] account_page_connections for those
# kept in a secrets backend), a hook that reads its connection as Airflow's own API does, and the
# charge ledger's Variables read through Airflow's ORM. The api-server has no Task SDK supervisor:
# on Airflow 3.1 the Task SDK's lookups fail there once the environment has missed (webhook/hints.py
# reads Variables through the ORM for the same reason).
"""Connections, hooks and charge-ledger records, as the api-server reads them."""

from __future__ import annotations

import json
import os
from typing import TYPE_CHECKING, Any

from airflow_provider_smsonline.hooks.smsonline import SmsOnlineHook

if TYPE_CHECKING:
    from airflow.models.connection import Connection

__all__ = [
    "CONN_TYPE",
    "ApiServerHook",
    "LedgerVariables",
    "configured_connection_ids",
    "connection_of",
    "smsonline_connection_ids",
]

#: The provider's connection type.
CONN_TYPE = "smsonline"
_ENV_PREFIX = "AIRFLOW_CONN_"


def connection_of(conn_id: str) -> Connection:
    """The connection, from the environment, the secrets backend or the metadata DB, looked up
    as Airflow's API looks connections up (its models, not the Task SDK).

    :raises AirflowNotFoundException: no source has it.
    """
    from airflow.models.connection import Connection

    return Connection.get_connection_from_secrets(conn_id)


class ApiServerHook(SmsOnlineHook):
    """:class:`~airflow_provider_smsonline.hooks.smsonline.SmsOnlineHook` reading its connection
    with :func:`connection_of`, which works in the api-server on every supported Airflow."""

    @classmethod
    def get_connection(cls, conn_id: str) -> Any:
        """The connection ``conn_id`` (see :func:`connection_of`)."""
        return connection_of(conn_id)


class LedgerVariables:
    """The charge ledger's store, read-only, on Airflow's ORM: what
    :func:`~airflow_provider_smsonline.ledger.owner.owner_of` reads in the api-server."""

    def get(self, key: str) -> dict[str, Any]:
        """The Variable's JSON object; ``{}`` when missing, not JSON or not an object."""
        from airflow.models.variable import Variable
        from airflow.utils.session import create_session

        with create_session() as session:
            row = session.query(Variable).filter(Variable.key == key).one_or_none()
            raw = row.val if row is not None else None
        try:
            value = json.loads(raw) if raw else {}
        except ValueError:
            value = {}
        return value if isinstance(value, dict) else {}

    def keys(self, prefix: str) -> list[str] | None:
        """Not listed here: each value is looked up by its name."""
        return None


def smsonline_connection_ids(config: Any = None) -> list[str]:
    """The ids of every SMS.online connection this Airflow knows by listing: the metadata DB's,
    ``AIRFLOW_CONN_*`` variables of that type, and ``[smsonline] account_page_connections``."""
    from airflow.models.connection import Connection
    from airflow.utils.session import create_session

    with create_session() as session:
        found = {
            conn_id
            for (conn_id,) in session.query(Connection.conn_id).filter(Connection.conn_type == CONN_TYPE)
        }
    found.update(_from_environment(os.environ))
    found.update(configured_connection_ids(config))
    return sorted(found)


def configured_connection_ids(config: Any = None) -> list[str]:
    """``[smsonline] account_page_connections``: comma-separated ids (for connections kept in a
    secrets backend, which cannot be listed)."""
    if config is None:
        from airflow_provider_smsonline._compat import conf as config
    try:
        value = config.get(CONN_TYPE, "account_page_connections", fallback="") or ""
    except Exception:  # an unreadable section: none
        return []
    return [part.strip() for part in str(value).split(",") if part.strip()]


def _from_environment(environ: dict[str, str] | os._Environ[str]) -> list[str]:
    ids = []
    for name, value in environ.items():
        if name.startswith(_ENV_PREFIX) and _conn_type(value) == CONN_TYPE:
            ids.append(name[len(_ENV_PREFIX) :].lower())
    return ids


def _conn_type(value: str) -> str | None:
    """The connection type of an ``AIRFLOW_CONN_*`` value (JSON or URI), without building it."""
    text = value.strip()
    if text.startswith("{"):
        try:
            conn_type = json.loads(text).get("conn_type")
        except (ValueError, AttributeError):
            return None
        return conn_type if isinstance(conn_type, str) else None
    scheme, sep, _ = text.partition("://")
    return scheme.replace("-", "_").lower() if sep else None
