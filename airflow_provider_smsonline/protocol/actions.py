# What each action sends: the endpoint, the action names and their query parameters. No I/O.
"""The SMS.online actions and their parameters (the API key is added by the request policy)."""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from airflow_provider_smsonline.validation import (
    non_negative_int,
    validate_activation_id,
    validate_activation_type,
    validate_country,
    validate_max_price,
    validate_operator,
    validate_ref,
    validate_rent_id,
    validate_rent_time,
    validate_service,
    validate_webhook_url,
)

DEFAULT_ENDPOINT = "https://api.sms.online/stubs/handler_api.php"
ENDPOINT_PATH = "/stubs/handler_api.php"


GET_BALANCE = "getBalance"
GET_RENT_NUMBER = "getRentNumber"
GET_RENT_STATUS = "getRentStatus"
SET_RENT_STATUS = "setRentStatus"
GET_RENT_LIST = "getRentList"
CONTINUE_RENT_NUMBER = "continueRentNumber"
GET_CONTINUE_RENT_PRICE = "getContinueRentPrice"
GET_RENT_PRICES = "getRentPrices"
GET_RENT_HISTORY = "getRentHistory"
# The activation family (one-time numbers); its parameters are built in activations.py.
GET_NUMBER = "getNumber"
GET_NUMBER_V2 = "getNumberV2"
GET_STATUS = "getStatus"
GET_STATUS_V2 = "getStatusV2"
SET_STATUS = "setStatus"
GET_PRICES = "getPrices"
GET_ACTIVE_ACTIVATIONS = "getActiveActivations"
GET_HISTORY = "getHistory"

#: The parameter names a rental's webhook URL is sent under: SMS.online's webhooks page says
#: ``uri``; its peers (and perhaps its getRentNumber, whose page shows no names) read ``url``. A
#: server reads the one it knows and ignores the other, so both are sent.
WEBHOOK_URL_PARAMS = ("uri", "url")
#: getRentHistory and getHistory: the longest window of one call (the pages: 30 days) and the
#: most rows a page holds.
HISTORY_WINDOW_SECONDS = 30 * 24 * 3600
HISTORY_PAGE_LIMIT = 100

#: Actions that charge money: never re-sent automatically.
CHARGING_ACTIONS = frozenset({GET_RENT_NUMBER, CONTINUE_RENT_NUMBER, GET_NUMBER, GET_NUMBER_V2})

#: setRentStatus values.
RENT_STATUS_FINISH = 1
RENT_STATUS_CANCEL = 2


def get_balance_params() -> dict[str, str]:
    """Parameters of getBalance."""
    return {"action": GET_BALANCE}


def get_rent_number_params(
    service: str,
    country: int,
    operator: str | None = None,
    rent_time: int | None = None,
    webhook_url: str | None = None,
) -> dict[str, str]:
    """Parameters of getRentNumber, validated; omitted optionals are left out."""
    hours = validate_rent_time(rent_time)
    url = validate_webhook_url(webhook_url)
    return _new_number(
        GET_RENT_NUMBER,
        service,
        country,
        operator,
        rent_time=None if hours is None else str(hours),
        **dict.fromkeys(WEBHOOK_URL_PARAMS, url),
    )


def _new_number(
    action: str, service: str, country: int, operator: str | None, **more: str | None
) -> dict[str, str]:
    """The parameters of an action that buys a number (validated; ``None`` values left out)."""
    params = {
        "action": action,
        "service": validate_service(service),
        "country": str(validate_country(country)),
        "operator": validate_operator(operator),
        **more,
    }
    return {name: value for name, value in params.items() if value is not None}


def get_rent_status_params(rent_id: int, page: int = 0, size: int = 10) -> dict[str, str]:
    """Parameters of getRentStatus (``page`` 0 is the newest)."""
    page = non_negative_int("page", page, "0 is the newest page")
    size = non_negative_int("size", size, "SMS per page, at least 1")
    if size < 1:
        raise ValueError(f"size must be at least 1, got {size!r}")
    return {
        "action": GET_RENT_STATUS,
        "id": str(validate_rent_id(rent_id)),
        "page": str(page),
        "size": str(size),
    }


def set_rent_status_params(rent_id: int, status: int) -> dict[str, str]:
    """Parameters of setRentStatus (1 finish, 2 cancel)."""
    if status not in (RENT_STATUS_FINISH, RENT_STATUS_CANCEL):
        raise ValueError(f"status must be 1 (finish) or 2 (cancel), got {status!r}")
    return {"action": SET_RENT_STATUS, "id": str(validate_rent_id(rent_id)), "status": str(status)}


def get_rent_list_params(rent_id: int | None = None) -> dict[str, str]:
    """Parameters of getRentList; ``id`` only when ``rent_id`` is given.

    SMS.online's page contradicts itself: its prose lists every active rental without an id, its
    table and sample send one. A server of the first reading ignores the id.
    """
    params = {"action": GET_RENT_LIST}
    if rent_id is not None:
        params["id"] = str(validate_rent_id(rent_id))
    return params


def history_params(
    action: str, start: int, end: int, offset: int = 0, limit: int = HISTORY_PAGE_LIMIT
) -> dict[str, str]:
    """Parameters of one page of getRentHistory or getHistory: ``start`` and ``end`` in unix
    seconds, at most :data:`HISTORY_WINDOW_SECONDS` apart; ``limit`` 1 to 100 rows from ``offset``."""
    if action not in (GET_RENT_HISTORY, GET_HISTORY):
        raise ValueError(f"action must be {GET_RENT_HISTORY} or {GET_HISTORY}, got {action!r}")
    start = non_negative_int("start", start, "unix seconds")
    end = non_negative_int("end", end, "unix seconds")
    if not 0 <= end - start <= HISTORY_WINDOW_SECONDS:
        raise ValueError(
            f"end must be from start to {HISTORY_WINDOW_SECONDS} seconds (30 days) after it, got start "
            f"{start} and end {end}"
        )
    offset = non_negative_int("offset", offset, "rows to skip")
    limit = non_negative_int("limit", limit, f"1 to {HISTORY_PAGE_LIMIT} rows")
    if not 1 <= limit <= HISTORY_PAGE_LIMIT:
        raise ValueError(f"limit must be from 1 to {HISTORY_PAGE_LIMIT}, got {limit}")
    return {
        "action": action,
        "start": str(start),
        "end": str(end),
        "offset": str(offset),
        "limit": str(limit),
    }


def continue_rent_number_params(rent_id: int, rent_time: int) -> dict[str, str]:
    """Parameters of continueRentNumber (charges money)."""
    return {
        "action": CONTINUE_RENT_NUMBER,
        "id": str(validate_rent_id(rent_id)),
        "rent_time": str(validate_rent_time(rent_time, optional=False)),
    }


def get_continue_rent_price_params(rent_id: int, rent_time: int) -> dict[str, str]:
    """Parameters of getContinueRentPrice."""
    return {
        "action": GET_CONTINUE_RENT_PRICE,
        "id": str(validate_rent_id(rent_id)),
        "rent_time": str(validate_rent_time(rent_time, optional=False)),
    }


def get_rent_prices_params(country: int, rent_time: int | None = None) -> dict[str, str]:
    """Parameters of getRentPrices; ``rent_time`` (peers' field, not on SMS.online's page) is
    sent only when given."""
    params = {"action": GET_RENT_PRICES, "country": str(validate_country(country))}
    hours = validate_rent_time(rent_time)
    if hours is not None:
        params["rent_time"] = str(hours)
    return params


# ----------------------------------------------------------------------------- activations

#: setStatus values: the number is ready (1), ask for another SMS (3), complete (6), cancel (8).
ACTIVATION_READY = 1
ACTIVATION_RETRY = 3
ACTIVATION_COMPLETE = 6
ACTIVATION_CANCEL = 8
#: What setStatus answers for each status it accepts.
SET_STATUS_ANSWERS: Mapping[int, str] = MappingProxyType(
    {
        ACTIVATION_READY: "ACCESS_READY",
        ACTIVATION_RETRY: "ACCESS_RETRY_GET",
        ACTIVATION_COMPLETE: "ACCESS_ACTIVATION",
        ACTIVATION_CANCEL: "ACCESS_CANCEL",
    }
)


def get_number_params(
    service: str,
    country: int,
    operator: str | None = None,
    max_price: object = None,
    *,
    v2: bool = False,
    ref: str | None = None,
    activation_type: int | None = None,
) -> dict[str, str]:
    """Parameters of getNumber (or getNumberV2); ``maxPrice``, ``ref`` (a partner id) and
    ``activationType`` (0 SMS, 1 by number, 2 voice) are sent only when given."""
    limit = validate_max_price(max_price)
    kind = validate_activation_type(activation_type)
    return _new_number(
        GET_NUMBER_V2 if v2 else GET_NUMBER,
        service,
        country,
        operator,
        maxPrice=None if limit is None else format(limit, "f"),
        ref=validate_ref(ref),
        activationType=None if kind is None else str(kind),
    )


def get_status_params(activation_id: int, *, v2: bool = False) -> dict[str, str]:
    """Parameters of getStatus (or getStatusV2)."""
    return {"action": GET_STATUS_V2 if v2 else GET_STATUS, "id": str(validate_activation_id(activation_id))}


def set_status_params(activation_id: int, status: int) -> dict[str, str]:
    """Parameters of setStatus: 1 ready, 3 another SMS, 6 complete, 8 cancel."""
    if isinstance(status, bool) or status not in SET_STATUS_ANSWERS:
        raise ValueError(
            f"status must be 1 (ready), 3 (another SMS), 6 (complete) or 8 (cancel), got {status!r}"
        )
    return {"action": SET_STATUS, "id": str(validate_activation_id(activation_id)), "status": str(status)}


def get_prices_params(service: str, country: int) -> dict[str, str]:
    """Parameters of getPrices: SMS.online's page marks both ``service`` and ``country`` required."""
    return {
        "action": GET_PRICES,
        "service": validate_service(service),
        "country": str(validate_country(country)),
    }


def get_active_activations_params() -> dict[str, str]:
    """Parameters of getActiveActivations."""
    return {"action": GET_ACTIVE_ACTIVATIONS}
