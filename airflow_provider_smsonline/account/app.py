# The account page's FastAPI app, mounted by the api-server at /smsonline-account. Its data routes
# declare Airflow's own user dependency (the UI's token: the _token cookie, or a Bearer header), so
# an anonymous caller gets 401 although the app sits beside the public webhook receiver; each
# connection is shown only to a user Airflow's auth manager lets read it, and the DAG that paid for
# a rental only to a user who may read that DAG. The page's code holds no data and is served to
# anyone, as Airflow serves its own UI's.
"""The routes behind the page "SMS.online": its code, the connections, and their accounts."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from airflow.api_fastapi.core_api.security import GetUserDep
from fastapi import FastAPI, HTTPException
from fastapi.responses import FileResponse, JSONResponse

from airflow_provider_smsonline.account import BUNDLE, RENTALS_TTL, SUMMARY_TTL
from airflow_provider_smsonline.account.airflow_side import (
    ApiServerHook,
    LedgerVariables,
    connection_of,
    smsonline_connection_ids,
)
from airflow_provider_smsonline.account.cache import Cached, EndedRentals, PartCache
from airflow_provider_smsonline.account.reading import (
    AccountSummary,
    RentalsView,
    payer_json,
    read_rentals,
    read_summary,
)

if TYPE_CHECKING:
    from airflow_provider_smsonline.hooks.smsonline import SmsOnlineHook
    from airflow_provider_smsonline.ledger import TaskRun

__all__ = ["STATIC", "create_app"]

log = logging.getLogger(__name__)

#: The files the app serves under ``/static/``, with their media types.
STATIC = {BUNDLE: "text/javascript"}
_STATIC_DIR = Path(__file__).resolve().parent / "static"
_NO_STORE = {"Cache-Control": "no-store"}


def create_app(summary_ttl: float = SUMMARY_TTL, rentals_ttl: float = RENTALS_TTL) -> FastAPI:
    """The app: ``GET /static/<file>``, ``GET /api/connections``,
    ``GET /api/connections/<conn_id>/summary`` and ``GET /api/connections/<conn_id>/rentals``.

    :param summary_ttl: seconds a balance and activations reading is served.
    :param rentals_ttl: seconds a rentals and spend reading is served.
    """
    app = FastAPI(title="SMS.online account", docs_url=None, redoc_url=None, openapi_url=None)
    ended = EndedRentals()
    summaries: PartCache[AccountSummary] = PartCache(
        lambda conn_id: _with_hook(conn_id, read_summary), summary_ttl, _describe
    )
    rentals: PartCache[RentalsView] = PartCache(
        lambda conn_id: _with_hook(conn_id, lambda hook, owner: read_rentals(hook, owner, ended.of(conn_id))),
        rentals_ttl,
        _describe,
    )
    app.state.summaries, app.state.rentals = summaries, rentals

    @app.get("/static/{name}")
    def static(name: str) -> FileResponse:
        if name not in STATIC:
            raise HTTPException(404, "not found")
        return FileResponse(
            _STATIC_DIR / name, media_type=STATIC[name], headers={"Cache-Control": "no-cache"}
        )

    @app.get("/api/connections")
    def connections(user: GetUserDep) -> JSONResponse:
        visible = [conn_id for conn_id in smsonline_connection_ids() if _may_read_connection(user, conn_id)]
        return JSONResponse(
            {"connections": visible, "summary_ttl": summary_ttl, "rentals_ttl": rentals_ttl},
            headers=_NO_STORE,
        )

    @app.get("/api/connections/{conn_id}/summary")
    def summary(conn_id: str, user: GetUserDep) -> JSONResponse:
        _check_connection(user, conn_id)
        cached = summaries.get(conn_id)
        dags = _DagAccess(user)
        body: dict[str, Any] = {**_meta(conn_id, cached), "balance": None, "activations": []}
        if cached.value is not None:
            body["balance"] = str(cached.value.balance)
            body["activations"] = [
                {**row.to_json(), "paid_by": dags.payer(row.paid_by)} for row in cached.value.activations
            ]
        return JSONResponse(body, headers=_NO_STORE)

    @app.get("/api/connections/{conn_id}/rentals")
    def rentals_of(conn_id: str, user: GetUserDep) -> JSONResponse:
        _check_connection(user, conn_id)
        cached = rentals.get(conn_id)
        dags = _DagAccess(user)
        body: dict[str, Any] = {
            **_meta(conn_id, cached),
            "rentals": [],
            "days": [],
            "spend": [],
            "unchecked": 0,
        }
        view = cached.value
        if view is not None:
            body["rentals"] = [{**row.to_json(), "paid_by": dags.payer(row.paid_by)} for row in view.rentals]
            body["days"] = list(view.days)
            body["spend"] = dags.spend(view)
            body["unchecked"] = view.unchecked
        return JSONResponse(body, headers=_NO_STORE)

    return app


# ----------------------------------------------------------------------------- reading


def _with_hook(
    conn_id: str, read: Callable[[SmsOnlineHook, Callable[[int, bool], TaskRun | None]], Any]
) -> Any:
    """``read(hook, owner)`` on a fresh hook of ``conn_id`` (closed after)."""
    # the ledger loads on the first reading, in the api-server only
    from airflow_provider_smsonline.ledger import account_of
    from airflow_provider_smsonline.ledger.owner import owner_of

    with ApiServerHook(smsonline_conn_id=conn_id) as hook:
        account = account_of(hook)
        store = LedgerVariables()
        failed: list[Exception] = []

        def owner(item_id: int, activation: bool) -> TaskRun | None:
            if failed:  # the metadata DB failed once in this reading: the rest shows no owner
                return None
            try:
                return owner_of(store, account, item_id, activation=activation)
            except Exception as error:
                failed.append(error)
                log.warning("Could not read the charge ledger for %s: %s", conn_id, type(error).__name__)
                return None

        return read(hook, owner)


def _describe(conn_id: str, error: Exception) -> str:
    """What a failed reading shows: the provider's error (its messages never hold the key), a
    connection's problem, or only the failure's kind; any form of the key is removed."""
    from airflow_provider_smsonline.exceptions import SmsOnlineError

    if isinstance(error, (SmsOnlineError, ValueError, LookupError)) or "NotFound" in type(error).__name__:
        text = str(error)
    else:
        log.warning("Reading SMS.online account %s failed: %s", conn_id, type(error).__name__)
        text = f"{type(error).__name__} (see the api-server's log)"
    return _redacted(conn_id, text)


def _redacted(conn_id: str, text: str) -> str:
    from airflow_provider_smsonline.policy import redact

    try:
        key = connection_of(conn_id).password
    except Exception:  # no connection: no key to remove
        return text
    return redact(text, key) if key else text


# ----------------------------------------------------------------------------- access


def _may_read_connection(user: Any, conn_id: str) -> bool:
    from airflow.api_fastapi.app import get_auth_manager
    from airflow.api_fastapi.auth.managers.models.resource_details import ConnectionDetails

    return bool(
        get_auth_manager().is_authorized_connection(
            method="GET", details=ConnectionDetails(conn_id=conn_id), user=user
        )
    )


def _check_connection(user: Any, conn_id: str) -> None:
    """404 for a connection that is not an SMS.online one or that the user may not read (the
    same answer: nobody learns which connections exist)."""
    if not _may_read_connection(user, conn_id) or conn_id not in smsonline_connection_ids():
        raise HTTPException(404, f"no SMS.online connection {conn_id!r} you may read")


class _DagAccess:
    """Which DAGs the user may read, asked once per DAG per request."""

    def __init__(self, user: Any) -> None:
        self.user = user
        self._seen: dict[str, bool] = {}

    def may_read(self, dag_id: str) -> bool:
        if dag_id not in self._seen:
            from airflow.api_fastapi.app import get_auth_manager
            from airflow.api_fastapi.auth.managers.models.resource_details import DagDetails

            self._seen[dag_id] = bool(
                get_auth_manager().is_authorized_dag(
                    method="GET", details=DagDetails(id=dag_id), user=self.user
                )
            )
        return self._seen[dag_id]

    def payer(self, run: TaskRun | None) -> dict[str, Any] | None:
        """Who paid, or ``{"hidden": true}`` when the user may not read that DAG."""
        if run is not None and not self.may_read(run.dag_id):
            return {"hidden": True}
        return payer_json(run)

    def spend(self, view: RentalsView) -> list[dict[str, Any]]:
        """The spend rows, those of DAGs the user may not read summed per day as ``hidden``."""
        rows: list[dict[str, Any]] = []
        hidden: dict[str, Any] = {}
        for row in view.spend:
            if row.dag_id is not None and not self.may_read(row.dag_id):
                hidden[row.day] = hidden.get(row.day, 0) + row.amount
            else:
                rows.append({**row.to_json(), "hidden": False})
        rows += [
            {"day": day, "dag_id": None, "amount": str(amount), "hidden": True}
            for day, amount in hidden.items()
        ]
        return rows


def _meta(conn_id: str, cached: Cached[Any]) -> dict[str, Any]:
    return {
        "conn_id": conn_id,
        "read_at": cached.read_at.isoformat(timespec="seconds"),
        "error": cached.error,
    }
