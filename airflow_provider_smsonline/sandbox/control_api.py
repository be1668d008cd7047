# The /sandbox/ control API without the socket: a method, a path and a body in, a status and a
# JSON-able answer out. Every field is checked (type, range, unknown, missing) before anything
# changes, so a refused request leaves the sandbox exactly as it was.
"""Routing and input checks of the control API (``/sandbox/...``)."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

from airflow_provider_smsonline.sandbox.catalogue import catalogue
from airflow_provider_smsonline.sandbox.inputs import SandboxError, check_fields
from airflow_provider_smsonline.sandbox.state import SandboxState
from airflow_provider_smsonline.sandbox.webhooks import deliver_code, deliver_sms

#: Every control path, as the 404 answer lists them.
PATHS = (
    "/sandbox/state",
    "/sandbox/catalogue",
    "/sandbox/rentals/<id or latest>/sms",
    "/sandbox/activations/<id or latest>/code",
    "/sandbox/profile",
    "/sandbox/faults",
    "/sandbox/reset",
    "/sandbox/clock",
)
_RENTAL_SMS = re.compile(r"^/sandbox/rentals/(\d{1,18}|latest)/sms$")
_ACTIVATION_CODE = re.compile(r"^/sandbox/activations/(\d{1,18}|latest)/code$")
_SMS_FIELDS = ("text", "phone_from", "service")
_CODE_FIELDS = ("code", "text")
_FAULT_FIELDS = ("action", "mode", "count", "delay")
_RANDOM_FIELDS = ("mode", "action", "rate", "modes", "seed", "delays")
_RESET_FIELDS = ("balance", "stock")
_CLOCK_FIELDS = ("advance_seconds",)
_PROFILE_FIELDS = ("activation_webhook",)


def body_too_large(size: int, limit: int) -> SandboxError:
    """The refusal of a body of ``size`` bytes, over ``limit``."""
    return SandboxError(
        f"body must be a JSON object of at most {limit} bytes, got {size} bytes", field="body"
    )


def json_object(body: bytes) -> Mapping[str, Any]:
    """``body`` as a JSON object (an empty body is ``{}``); else a :class:`SandboxError` on ``body``."""
    if not body.strip():
        return {}
    try:
        data = json.loads(body.decode("utf-8"))
    except UnicodeDecodeError:
        raise SandboxError(
            "body must be a JSON object in UTF-8, got bytes that are not UTF-8", field="body"
        ) from None
    except (ValueError, RecursionError):
        raise SandboxError("body must be a JSON object, got text that is not JSON", field="body") from None
    if not isinstance(data, dict):
        raise SandboxError(f"body must be a JSON object, got a JSON {type(data).__name__}", field="body")
    return data


def handle(
    state: SandboxState, method: str, path: str, body: bytes, *, webhook_timeout: float
) -> tuple[int, Any]:
    """Answer one control request: the HTTP status and the JSON-able answer."""
    try:
        return 200, _route(state, method, path.rstrip("/"), body, webhook_timeout)
    except SandboxError as error:
        return error.status, error.to_json()


def _target(state: SandboxState, kind: str, named: str) -> int:
    """The id in a path, or for ``latest`` the newest of ``kind`` (rentals, activations) still
    open: what ``airflow dags test`` of a DAG under development has just rented or bought."""
    if named != "latest":
        return int(named)
    open_ids = [int(item["id"]) for item in state.snapshot()[kind] if item["status"] in ("active", "waiting")]
    if not open_ids:
        raise SandboxError(f"no {kind[:-1]} is open: nothing is latest", status=404)
    return max(open_ids)


def _expect(method: str, *allowed: str) -> None:
    if method not in allowed:
        raise SandboxError(f"{method} is not allowed here; use {' or '.join(allowed)}", status=405)


def _route(state: SandboxState, method: str, path: str, body: bytes, webhook_timeout: float) -> Any:
    match = _RENTAL_SMS.match(path)
    if path == "/sandbox/state":
        _expect(method, "GET")
        return state.snapshot()
    if path == "/sandbox/catalogue":
        _expect(method, "GET")
        return catalogue()
    if match:
        _expect(method, "POST")
        data = json_object(body)
        check_fields(data, _SMS_FIELDS, required=("text",))
        return deliver_sms(
            state,
            _target(state, "rentals", match.group(1)),
            data["text"],
            data.get("phone_from", "SMSonline"),
            data.get("service"),
            webhook_timeout=webhook_timeout,
        )
    code_match = _ACTIVATION_CODE.match(path)
    if code_match:
        _expect(method, "POST")
        data = json_object(body)
        check_fields(data, _CODE_FIELDS, required=("code",))
        activation_id = _target(state, "activations", code_match.group(1))
        return deliver_code(
            state, activation_id, data["code"], data.get("text"), webhook_timeout=webhook_timeout
        )
    if path == "/sandbox/profile":  # the account's settings page: the activation webhook's URL
        _expect(method, "GET", "POST")
        if method == "POST":
            data = json_object(body)
            check_fields(data, _PROFILE_FIELDS, required=_PROFILE_FIELDS)
            state.activation_webhook = data["activation_webhook"]
        return {"activation_webhook": state.activation_webhook}
    if path == "/sandbox/faults":
        _expect(method, "GET", "POST", "DELETE")
        return _faults(state, method, body)
    if path == "/sandbox/reset":
        _expect(method, "POST")
        data = json_object(body)
        check_fields(data, _RESET_FIELDS)
        state.reset(balance=data.get("balance"), stock=data.get("stock"))
        return state.snapshot()
    if path == "/sandbox/clock":
        _expect(method, "GET", "POST")
        if method == "POST":
            data = json_object(body)
            check_fields(data, _CLOCK_FIELDS, required=_CLOCK_FIELDS)
            state.advance_clock(data["advance_seconds"])
        return state.clock()
    raise SandboxError(f"no such control path: {', '.join(PATHS)}", status=404)


def _faults(state: SandboxState, method: str, body: bytes) -> dict[str, Any]:
    answer: dict[str, Any] = {}
    if method == "POST":
        data = json_object(body)
        if data.get("mode") == "random":
            check_fields(data, _RANDOM_FIELDS, required=("action", "rate"))
            plan = state.set_random_faults(
                data["action"], data["rate"], data.get("modes"), data.get("seed"), data.get("delays")
            )
            answer["random"] = plan.to_json()
        else:
            check_fields(data, _FAULT_FIELDS, required=("action", "mode"))
            state.add_fault(data["action"], data["mode"], data.get("count", 1), data.get("delay"))
    elif method == "DELETE":
        state.clear_faults()
    return {"faults": state.faults(), **answer}
