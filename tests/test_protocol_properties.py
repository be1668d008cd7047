# Property tests of the protocol: whatever status and body arrive, every parser returns a
# result or raises an SmsOnlineError (never a KeyError, a JSONDecodeError, a TypeError ...).
from __future__ import annotations

import contextlib
import json
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any
from zoneinfo import ZoneInfo

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from airflow_provider_smsonline import protocol
from airflow_provider_smsonline.exceptions import SmsOnlineError

#: CI runs at least 1,000 examples per property; no database is written into the repository.
PROPERTY = settings(
    max_examples=1000,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

MOSCOW = ZoneInfo("Europe/Moscow")

#: Every parser of an HTTP answer.
PARSERS: dict[str, Callable[[int, bytes | str], object]] = {
    "parse_balance": protocol.parse_balance,
    "parse_rental": protocol.parse_rental,
    "parse_rental(Moscow)": lambda s, b: protocol.parse_rental(s, b, MOSCOW),
    "parse_rent_status": protocol.parse_rent_status,
    "parse_rent_status(Moscow)": lambda s, b: protocol.parse_rent_status(s, b, MOSCOW),
    "parse_set_rent_status(finish)": lambda s, b: protocol.parse_set_rent_status(s, b, 1),
    "parse_set_rent_status(cancel)": lambda s, b: protocol.parse_set_rent_status(s, b, 2),
    "parse_rent_list": protocol.parse_rent_list,
    "parse_price": protocol.parse_price,
    "parse_rent_prices": protocol.parse_rent_prices,
}

statuses = st.integers(min_value=100, max_value=599)

#: Codes, dates, numbers and words the real server writes, so that bodies reach deep code.
PLAUSIBLE_STRINGS = [
    "success",
    "error",
    *protocol.ERROR_TABLE,
    "BANNED:'2025-12-31 23:59:59'",
    "BANNED:2025-12-31 23-59-59",
    "ACCESS_BALANCE:1.5",
    "2025-05-10T12:34:56",
    "2025-09-30 00:36:18",
    "2025-09-30T00:36:18+03:00",
    "2025-02-30 25:61:61",
    "1049",
    "-1",
    "0",
    "100.50",
    "NaN",
    "Infinity",
    "1e999999",
    "79999876543",
    "",
    " ",
    "²",
]
PLAUSIBLE_KEYS = [
    "status",
    "message",
    "msg",
    "error",
    "phone",
    "id",
    "endDate",
    "number",
    "values",
    "quantity",
    "phoneFrom",
    "text",
    "service",
    "date",
    "price",
    "hours",
    "balance",
    "cost",
    "count",
    "rentId",
    "sms",
    "0",
    "1",
    "10",
    "²",
]

json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=10),
)
any_json = st.recursive(
    json_scalars,
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=6), children, max_size=3)
    ),
    max_leaves=10,
)
plausible_scalars = st.one_of(
    st.sampled_from(PLAUSIBLE_STRINGS),
    st.integers(min_value=-(10**20), max_value=10**20),
    st.none(),
    st.booleans(),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=8),
)
plausible_json = st.recursive(
    plausible_scalars,
    lambda children: (
        st.lists(children, max_size=3)
        | st.dictionaries(st.sampled_from(PLAUSIBLE_KEYS) | st.text(max_size=3), children, max_size=4)
    ),
    max_leaves=12,
)
#: Error-shaped objects: any status, and codes of any type under the keys servers use.
error_like = st.fixed_dictionaries(
    {},
    optional={
        "status": st.sampled_from(["error", "success", "SUCCESS", ""]) | plausible_scalars,
        "message": plausible_scalars,
        "msg": plausible_scalars,
        "error": plausible_scalars,
    },
)
#: Success-shaped objects whose fields hold anything: the parsers' deepest paths.
index_keys = st.sampled_from(["0", "1", "2", "10", "00", "²", "①", "٣", "1" * 30]) | st.text(max_size=3)
leaf = plausible_scalars | plausible_json
sms_like = st.fixed_dictionaries(
    {}, optional={"phoneFrom": leaf, "text": leaf, "service": leaf, "date": plausible_scalars}
)
item_like = st.fixed_dictionaries(
    {},
    optional={
        "id": plausible_scalars,
        "phone": plausible_scalars,
        "price": plausible_scalars,
        "hours": plausible_scalars,
        "cost": plausible_scalars,
        "count": plausible_scalars,
    },
)
entry_like = sms_like | item_like | plausible_json
success_like = st.fixed_dictionaries(
    {"status": st.just("success")},
    optional={
        "phone": st.fixed_dictionaries(
            {}, optional={"id": plausible_scalars, "endDate": plausible_scalars, "number": plausible_scalars}
        )
        | plausible_json,
        "values": st.dictionaries(index_keys, entry_like | st.dictionaries(index_keys, item_like), max_size=4)
        | st.lists(entry_like, max_size=4)
        | plausible_scalars,
        "price": plausible_scalars,
        "balance": plausible_scalars,
        "quantity": plausible_scalars,
    },
)

webhook_like = (
    st.fixed_dictionaries({}, optional={"rentId": plausible_scalars, "sms": plausible_json}) | any_json
)


def as_body(value: Any, to_bytes: bool) -> bytes | str:
    text = json.dumps(value)
    return text.encode() if to_bytes else text


def parse_all(status: int, body: bytes | str) -> None:
    """Run every parser; anything but a result or an SmsOnlineError fails the property."""
    for name, parse in PARSERS.items():
        try:
            parse(status, body)
        except SmsOnlineError:
            pass
        except Exception as error:  # pragma: no cover - this is the failure being tested for
            raise AssertionError(f"{name} raised {type(error).__name__}: {error}") from error


@PROPERTY
@given(status=statuses, body=st.binary(max_size=300))
def test_any_bytes_give_a_result_or_an_smsonline_error(status: int, body: bytes) -> None:
    parse_all(status, body)


@PROPERTY
@given(status=statuses, body=st.text(max_size=300))
def test_any_text_gives_a_result_or_an_smsonline_error(status: int, body: str) -> None:
    parse_all(status, body)


@PROPERTY
@given(status=statuses, value=any_json, to_bytes=st.booleans())
def test_any_json_gives_a_result_or_an_smsonline_error(status: int, value: Any, to_bytes: bool) -> None:
    parse_all(status, as_body(value, to_bytes))


@PROPERTY
@given(status=statuses, value=error_like, to_bytes=st.booleans())
def test_error_shaped_json_of_any_types_gives_a_result_or_an_smsonline_error(
    status: int, value: dict[str, Any], to_bytes: bool
) -> None:
    parse_all(status, as_body(value, to_bytes))


@PROPERTY
@given(status=statuses, value=success_like, to_bytes=st.booleans())
def test_success_shaped_json_of_any_types_gives_a_result_or_an_smsonline_error(
    status: int, value: dict[str, Any], to_bytes: bool
) -> None:
    parse_all(status, as_body(value, to_bytes))


@PROPERTY
@given(status=statuses, code=st.sampled_from(PLAUSIBLE_STRINGS) | st.text(max_size=40))
def test_any_plain_text_code_gives_a_result_or_an_smsonline_error(status: int, code: str) -> None:
    parse_all(status, code)
    parse_all(status, json.dumps({"status": "error", "message": code}))


@PROPERTY
@given(body=st.one_of(st.binary(max_size=200), st.text(max_size=200), webhook_like.map(json.dumps)))
def test_webhook_of_any_body_gives_a_result_or_a_value_error(body: bytes | str) -> None:
    with contextlib.suppress(ValueError):
        protocol.parse_webhook(body)


@PROPERTY
@given(
    rent_id=st.integers(min_value=0, max_value=2**53 - 1),
    number=st.integers(min_value=10**6, max_value=10**15).map(str),
    end=st.integers(min_value=946_684_800, max_value=4_102_444_800).map(
        lambda seconds: datetime.fromtimestamp(seconds, timezone.utc)
    ),
    cost=st.integers(min_value=0, max_value=10**8).map(lambda cents: f"{cents // 100}.{cents % 100:02d}"),
)
def test_an_encoded_rental_parses_back_to_the_same_rental(
    rent_id: int, number: str, end: datetime, cost: str
) -> None:
    rental = protocol.parse_rental(200, protocol.encode_rental(rent_id, number, end, cost=cost))
    assert (rental.id, rental.number, rental.end_date, rental.extra["cost"]) == (rent_id, number, end, cost)
