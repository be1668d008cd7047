# The protocol module as a specification: argument checks, parameters, and every body the
# server (or something in front of it) can answer, turned into a result or a typed error.
from __future__ import annotations

import json
import re
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from airflow_provider_smsonline import protocol
from airflow_provider_smsonline.exceptions import (
    AccountError,
    BannedError,
    CancelNotAllowedError,
    InvalidRequestError,
    NoNumbersError,
    RentalExpiredError,
    RentalNotFoundError,
    RentalStateError,
    ServerError,
    SmsOnlineError,
    UnknownCodeError,
)

UTC = timezone.utc
MOSCOW = ZoneInfo("Europe/Moscow")

# ----------------------------------------------------------------------------- the error table

#: protocol.md's table (and the peer codes it lists) → the class a caller catches.
ERROR_CODES: list[tuple[str, type[SmsOnlineError]]] = [
    ("BAD_ACTION", InvalidRequestError),
    ("BAD_KEY", AccountError),
    ("ERROR_SQL", ServerError),
    ("SQL_ERROR", ServerError),
    ("ACCOUNT_INACTIVE", AccountError),
    ("BAD_COUNTRY", InvalidRequestError),
    ("WRONG_COUNTRY", InvalidRequestError),
    ("WRONG_COUNTRY_ID", InvalidRequestError),
    ("BAD_SERVICE", InvalidRequestError),
    ("WRONG_SERVICE", InvalidRequestError),
    ("INVALID_TIME", InvalidRequestError),
    ("BAD_TIME", InvalidRequestError),
    ("NO_BALANCE", AccountError),
    ("NO_NUMBERS", NoNumbersError),
    ("CHANNELS_LIMIT", AccountError),
    ("ACCOUNT_BLOCKED", AccountError),
    # peers' rent codes
    ("NO_ID_RENT", RentalNotFoundError),
    ("INVALID_PHONE", InvalidRequestError),
    ("INCORECT_STATUS", InvalidRequestError),
    ("CANT_CANCEL", CancelNotAllowedError),
    ("ALREADY_FINISH", RentalExpiredError),
    ("ALREADY_CANCEL", RentalExpiredError),
    ("RENT_DIE", RentalExpiredError),
    ("STATUS_FINISH", RentalExpiredError),
    ("STATUS_CANCEL", RentalExpiredError),
    ("STATUS_REVOKE", RentalExpiredError),
    ("STATUS_WAIT_CODE", RentalStateError),
    ("SERVER_ERROR", ServerError),
    ("WRONG_OPERATOR", InvalidRequestError),
    ("BAD_OPERATOR", InvalidRequestError),
]

#: The ways a server writes an error code.
BODY_STYLES: dict[str, Callable[[str], str]] = {
    "plain": lambda code: code,
    "json-message": lambda code: json.dumps({"status": "error", "message": code}),
    "json-msg": lambda code: json.dumps({"status": "error", "msg": code}),
    "json-error": lambda code: json.dumps({"status": "error", "error": code}),
}

#: Every parser that reads an HTTP answer, by the action it serves.
PARSERS: dict[str, Callable[[int, bytes | str], object]] = {
    "getBalance": protocol.parse_balance,
    "getRentNumber": protocol.parse_rental,
    "getRentStatus": protocol.parse_rent_status,
    "setRentStatus(finish)": lambda s, b: protocol.parse_set_rent_status(s, b, protocol.RENT_STATUS_FINISH),
    "setRentStatus(cancel)": lambda s, b: protocol.parse_set_rent_status(s, b, protocol.RENT_STATUS_CANCEL),
    "getRentList": protocol.parse_rent_list,
    "getContinueRentPrice": protocol.parse_price,
    "getRentPrices": protocol.parse_rent_prices,
}


@pytest.mark.parametrize("style", BODY_STYLES)
@pytest.mark.parametrize(("code", "error_class"), ERROR_CODES)
def test_error_code_raises_its_error_class_keeping_the_code(
    code: str, error_class: type[SmsOnlineError], style: str
) -> None:
    with pytest.raises(error_class) as raised:
        protocol.parse_rental(200, BODY_STYLES[style](code))
    assert type(raised.value) is error_class
    assert raised.value.code == code
    assert code in str(raised.value)


@pytest.mark.parametrize("style", BODY_STYLES)
@pytest.mark.parametrize("code", ["BAD_KEY", "NO_BALANCE", "ERROR_SQL", "BANNED:2025-12-31 23:59:59"])
@pytest.mark.parametrize("action", ["getBalance", "getRentList", "getContinueRentPrice", "getRentPrices"])
def test_every_action_reads_error_codes_the_same_way(action: str, code: str, style: str) -> None:
    expected = type(protocol.error_for_code(code))
    with pytest.raises(expected) as raised:
        PARSERS[action](200, BODY_STYLES[style](code))
    assert raised.value.code == code.split(":")[0]


@pytest.mark.parametrize("style", BODY_STYLES)
def test_unknown_code_raises_unknown_code_error_keeping_the_raw_code(style: str) -> None:
    with pytest.raises(UnknownCodeError) as raised:
        protocol.parse_rental(200, BODY_STYLES[style]("SOMETHING_NEW_42"))
    assert raised.value.code == "SOMETHING_NEW_42"
    assert "SOMETHING_NEW_42" in str(raised.value)


def test_lower_case_code_is_read_as_the_code() -> None:
    with pytest.raises(AccountError) as raised:
        protocol.parse_balance(200, json.dumps({"status": "error", "message": "bad_key"}))
    assert raised.value.code == "BAD_KEY"


@pytest.mark.parametrize("status", [200, 400, 401, 403, 404, 429, 500, 502, 503])
@pytest.mark.parametrize("style", BODY_STYLES)
def test_code_body_is_read_whatever_the_http_status(status: int, style: str) -> None:
    with pytest.raises(NoNumbersError) as raised:
        protocol.parse_rental(status, BODY_STYLES[style]("NO_NUMBERS"))
    assert raised.value.code == "NO_NUMBERS"
    assert raised.value.http_status == status


# ----------------------------------------------------------------------------- BANNED

BANNED_FORMS = [
    "BANNED:'2025-12-31 23:59:59'",
    "BANNED:2025-12-31 23:59:59",
    "BANNED:'2025-12-31 23-59-59'",
    "BANNED:2025-12-31 23-59-59",
    'BANNED:"2025-12-31 23:59:59"',
]


@pytest.mark.parametrize("style", BODY_STYLES)
@pytest.mark.parametrize("form", BANNED_FORMS)
def test_banned_gives_the_ban_end_as_a_datetime(form: str, style: str) -> None:
    with pytest.raises(BannedError) as raised:
        protocol.parse_rental(200, BODY_STYLES[style](form))
    assert raised.value.code == "BANNED"
    assert raised.value.banned_until == datetime(2025, 12, 31, 23, 59, 59, tzinfo=UTC)
    assert "2025-12-31" in str(raised.value)


def test_banned_is_an_account_error() -> None:
    with pytest.raises(AccountError):
        protocol.parse_balance(200, "BANNED:'2025-12-31 23:59:59'")


@pytest.mark.parametrize("form", ["BANNED", "BANNED:", "BANNED:soon", "BANNED:'2025-13-45 99:99:99'"])
def test_banned_with_an_unreadable_time_still_raises_banned_without_a_date(form: str) -> None:
    with pytest.raises(BannedError) as raised:
        protocol.parse_rental(200, form)
    assert raised.value.banned_until is None


# ----------------------------------------------------------------------------- not the protocol

NOT_THE_PROTOCOL: dict[str, tuple[int, bytes | str]] = {
    "html-502": (502, "<html><head><title>502 Bad Gateway</title></head><body>nginx</body></html>"),
    "html-200": (200, "<!DOCTYPE html><html><body>maintenance</body></html>"),
    "empty": (200, b""),
    "empty-502": (502, ""),
    "whitespace": (200, " \r\n\t \n"),
    "garbage": (200, "this is not an answer at all"),
    "garbage-lines": (200, "BAD_KEY\nand some more text"),
    "broken-json": (200, '{"status": "success", "phone": {'),
    "json-list": (200, '[1, 2, "NO_NUMBERS"]'),
    "json-without-status": (200, '{"phone": {"id": 1}}'),
    "json-error-without-code": (200, '{"status": "error"}'),
    "json-string": (200, '"NO_NUMBERS"'),
    "binary": (200, bytes(range(256))),
    "utf16": (200, "ACCESS_BALANCE:1".encode("utf-16")),
    "deep-json": (200, "[" * 100_000),
    "json-success-at-500": (500, '{"status": "success", "price": "1"}'),
}


@pytest.mark.parametrize("action", PARSERS)
@pytest.mark.parametrize("case", NOT_THE_PROTOCOL)
def test_answer_that_is_not_the_protocol_raises_a_server_error(action: str, case: str) -> None:
    status, body = NOT_THE_PROTOCOL[case]
    with pytest.raises(SmsOnlineError) as raised:
        PARSERS[action](status, body)
    assert isinstance(raised.value, ServerError)
    assert raised.value.retryable


def test_html_page_is_named_in_the_error() -> None:
    with pytest.raises(ServerError, match="HTML") as raised:
        protocol.parse_rental(502, NOT_THE_PROTOCOL["html-502"][1])
    assert raised.value.code == "bad_response"
    assert raised.value.http_status == 502


def test_empty_body_is_named_in_the_error() -> None:
    with pytest.raises(ServerError, match="empty body"):
        protocol.parse_balance(200, b"")


UNREADABLE_SUCCESS: list[tuple[str, str]] = [
    ("getBalance", '{"status": "success"}'),
    ("getBalance", '{"status": "success", "balance": "lots"}'),
    ("getBalance", "ACCESS_BALANCE:lots"),
    ("getRentNumber", '{"status": "success"}'),
    ("getRentNumber", '{"status": "success", "phone": "79990001122"}'),
    ("getRentNumber", '{"status": "success", "phone": {"id": "x", "endDate": "2025-01-01", "number": "1"}}'),
    ("getRentNumber", '{"status": "success", "phone": {"id": 1, "endDate": "tomorrow", "number": "1"}}'),
    ("getRentNumber", '{"status": "success", "phone": {"id": 1, "endDate": "2025-02-30", "number": "1"}}'),
    ("getRentNumber", '{"status": "success", "phone": {"id": 1, "endDate": "2025-01-01", "number": ""}}'),
    ("getRentNumber", '{"status": "success", "phone": {"id": true, "endDate": "2025-01-01", "number": "1"}}'),
    ("getRentStatus", '{"status": "success", "values": 5}'),
    ("getRentStatus", '{"status": "success", "values": [1]}'),
    ("getRentStatus", '{"status": "success", "values": {"0": {"date": "never"}}}'),
    ("getRentList", '{"status": "success", "values": 5}'),
    ("getRentList", '{"status": "success", "values": ["12345"]}'),
    ("getRentList", '{"status": "success", "values": [{"id": "abc"}]}'),
    ("getRentList", '{"status": "success", "values": [{"id": "1", "price": "a lot"}]}'),
    ("getRentList", '{"status": "success", "values": [{"id": "1", "hours": "four"}]}'),
    ("getContinueRentPrice", '{"status": "success"}'),
    ("getContinueRentPrice", '{"status": "success", "price": "one hundred"}'),
    ("getRentPrices", '{"status": "success"}'),
    ("getRentPrices", '{"status": "success", "values": {"0": "tg"}}'),
    ("getRentPrices", '{"status": "success", "values": {"0": {"tg": 5}}}'),
    ("getRentPrices", '{"status": "success", "values": {"0": {"tg": {"cost": "x"}}}}'),
    ("getRentPrices", '{"status": "success", "values": {"ru": {"tg": {"cost": 1}}}}'),
]


@pytest.mark.parametrize(("action", "body"), UNREADABLE_SUCCESS)
def test_success_with_an_unreadable_shape_raises_a_bad_response(action: str, body: str) -> None:
    with pytest.raises(ServerError) as raised:
        PARSERS[action](200, body)
    assert raised.value.code == "bad_response"


# ----------------------------------------------------------------------------- getRentNumber

SEED: dict[str, Any] = {
    "status": "success",
    "phone": {"id": 1, "endDate": "2025-05-10T12:34:56", "number": "79999876543"},
}


def rental_body(**phone: Any) -> str:
    return json.dumps({"status": "success", "phone": {**SEED["phone"], **phone}})


def test_seed_rental_is_parsed() -> None:
    rental = protocol.parse_rental(200, json.dumps(SEED))
    assert rental.id == 1
    assert rental.number == "79999876543"
    assert rental.end_date == datetime(2025, 5, 10, 12, 34, 56, tzinfo=UTC)


def test_rental_id_sent_as_a_string_is_an_int() -> None:
    rental = protocol.parse_rental(200, rental_body(id="1049"))
    assert rental.id == 1049


def test_rental_number_sent_as_an_int_is_a_string() -> None:
    assert protocol.parse_rental(200, rental_body(number=79999876543)).number == "79999876543"


@pytest.mark.parametrize(
    ("written", "expected"),
    [
        ("2025-05-10T12:34:56", datetime(2025, 5, 10, 12, 34, 56, tzinfo=UTC)),
        ("2025-09-30 00:36:18", datetime(2025, 9, 30, 0, 36, 18, tzinfo=UTC)),
        ("2025-09-30T00:36:18+03:00", datetime(2025, 9, 29, 21, 36, 18, tzinfo=UTC)),
        ("2025-09-30 00:36:18+0300", datetime(2025, 9, 29, 21, 36, 18, tzinfo=UTC)),
        ("2025-09-30T00:36:18Z", datetime(2025, 9, 30, 0, 36, 18, tzinfo=UTC)),
        ("2025-09-30T00:36:18.250-02:00", datetime(2025, 9, 30, 2, 36, 18, 250000, tzinfo=UTC)),
    ],
)
def test_end_date_in_every_form_is_an_aware_datetime(written: str, expected: datetime) -> None:
    end = protocol.parse_rental(200, rental_body(endDate=written)).end_date
    assert end.tzinfo is not None
    assert end == expected


def test_end_date_without_offset_is_read_in_the_server_time_zone() -> None:
    end = protocol.parse_rental(200, rental_body(endDate="2025-05-10 12:34:56"), MOSCOW).end_date
    assert end.utcoffset() == timedelta(hours=3)
    assert end == datetime(2025, 5, 10, 9, 34, 56, tzinfo=UTC)


def test_end_date_with_offset_ignores_the_server_time_zone() -> None:
    end = protocol.parse_rental(200, rental_body(endDate="2025-05-10T12:34:56+00:00"), MOSCOW).end_date
    assert end == datetime(2025, 5, 10, 12, 34, 56, tzinfo=UTC)


def test_extra_fields_of_a_rental_are_kept() -> None:
    body = json.dumps({"status": "success", "phone": {**SEED["phone"], "cost": "12.50"}, "balance": "87.5"})
    rental = protocol.parse_rental(200, body)
    assert rental.extra["cost"] == "12.50"
    assert rental.extra["balance"] == "87.5"
    assert "id" not in rental.extra and "status" not in rental.extra


def test_rental_to_xcom_is_json_with_an_iso_end_date() -> None:
    rental = protocol.parse_rental(200, rental_body(id="7", endDate="2025-05-10 12:34:56"))
    xcom = rental.to_xcom()
    assert xcom == {"id": 7, "number": "79999876543", "end_date": "2025-05-10T12:34:56+00:00"}
    assert json.loads(json.dumps(xcom)) == xcom


def test_rental_body_as_bytes_with_a_bom_is_parsed() -> None:
    rental = protocol.parse_rental(200, b"\xef\xbb\xbf" + json.dumps(SEED).encode())
    assert rental.id == 1


def test_rental_id_is_recovered_from_an_answer_that_failed_to_parse() -> None:
    assert protocol.rental_id_in('{"status": "success", "phone": {"id": "55", "endDate": "?"}}') == 55
    assert protocol.rental_id_in("<html>") is None


# ----------------------------------------------------------------------------- getBalance


def test_balance_is_a_decimal() -> None:
    assert protocol.parse_balance(200, "ACCESS_BALANCE:123.45") == Decimal("123.45")


def test_balance_with_surrounding_whitespace_is_parsed() -> None:
    assert protocol.parse_balance(200, b"  ACCESS_BALANCE:0\r\n") == Decimal("0")


def test_balance_in_json_is_parsed() -> None:
    assert protocol.parse_balance(200, '{"status": "success", "balance": "9.99"}') == Decimal("9.99")


def test_plain_text_code_other_than_access_balance_is_an_error() -> None:
    with pytest.raises(AccountError):
        protocol.parse_balance(200, "BAD_KEY")


# ----------------------------------------------------------------------------- getRentStatus


def sms_item(text: str, date: str = "2020-01-30 14:31:58") -> dict[str, str]:
    return {"phoneFrom": "79180230628", "text": text, "service": "ot", "date": date}


def test_rent_status_values_keyed_by_index_come_back_in_index_order() -> None:
    values = {str(i): sms_item(f"sms {i}") for i in (10, 2, 0, 1)}
    body = json.dumps({"status": "success", "quantity": "4", "values": values})
    messages = protocol.parse_rent_status(200, body)
    assert [m.text for m in messages] == ["sms 0", "sms 1", "sms 2", "sms 10"]


def test_rent_status_sms_fields_are_parsed() -> None:
    body = json.dumps({"status": "success", "quantity": "1", "values": {"0": sms_item("5")}})
    (sms,) = protocol.parse_rent_status(200, body)
    assert (sms.phone_from, sms.text, sms.service) == ("79180230628", "5", "ot")
    assert sms.date == datetime(2020, 1, 30, 14, 31, 58, tzinfo=UTC)


def test_rent_status_sms_date_is_read_in_the_server_time_zone() -> None:
    body = json.dumps({"status": "success", "values": {"0": sms_item("5")}})
    (sms,) = protocol.parse_rent_status(200, body, MOSCOW)
    assert sms.date.utcoffset() == timedelta(hours=3)


def test_rent_status_values_as_a_list_keep_their_order() -> None:
    body = json.dumps({"status": "success", "values": [sms_item("b"), sms_item("a")]})
    assert [m.text for m in protocol.parse_rent_status(200, body)] == ["b", "a"]


@pytest.mark.parametrize("style", BODY_STYLES)
def test_rent_status_wait_code_means_no_sms_yet(style: str) -> None:
    assert protocol.parse_rent_status(200, BODY_STYLES[style]("STATUS_WAIT_CODE")) == []


@pytest.mark.parametrize("values", [{}, [], None, ""])
def test_rent_status_without_values_is_no_sms(values: object) -> None:
    body = json.dumps({"status": "success", "quantity": "0", "values": values})
    assert protocol.parse_rent_status(200, body) == []


def test_rent_status_of_an_unknown_rental_raises_not_found() -> None:
    with pytest.raises(RentalNotFoundError):
        protocol.parse_rent_status(200, "NO_ID_RENT")


@pytest.mark.parametrize("key", ["²", "①", "٣x"])
def test_rent_status_with_digit_like_keys_puts_them_after_the_indexes(key: str) -> None:
    body = json.dumps({"status": "success", "values": {key: sms_item("odd"), "0": sms_item("first")}})
    messages = protocol.parse_rent_status(200, body)
    assert [m.text for m in messages] == ["first", "odd"]


# ----------------------------------------------------------------------------- setRentStatus


@pytest.mark.parametrize("wanted", [protocol.RENT_STATUS_FINISH, protocol.RENT_STATUS_CANCEL])
def test_set_rent_status_success_returns_none(wanted: int) -> None:
    protocol.parse_set_rent_status(200, '{"status": "success"}', wanted)


@pytest.mark.parametrize("style", BODY_STYLES)
def test_finishing_a_finished_rental_is_success(style: str) -> None:
    protocol.parse_set_rent_status(200, BODY_STYLES[style]("ALREADY_FINISH"), protocol.RENT_STATUS_FINISH)


@pytest.mark.parametrize("style", BODY_STYLES)
def test_cancelling_a_cancelled_rental_is_success(style: str) -> None:
    protocol.parse_set_rent_status(200, BODY_STYLES[style]("ALREADY_CANCEL"), protocol.RENT_STATUS_CANCEL)


def test_finishing_a_cancelled_rental_raises_expired() -> None:
    with pytest.raises(RentalExpiredError) as raised:
        protocol.parse_set_rent_status(200, "ALREADY_CANCEL", protocol.RENT_STATUS_FINISH)
    assert raised.value.code == "ALREADY_CANCEL"


def test_cancelling_a_finished_rental_raises_expired() -> None:
    with pytest.raises(RentalExpiredError):
        protocol.parse_set_rent_status(200, "ALREADY_FINISH", protocol.RENT_STATUS_CANCEL)


@pytest.mark.parametrize("style", BODY_STYLES)
def test_cancel_after_the_refund_window_raises_cancel_not_allowed(style: str) -> None:
    with pytest.raises(CancelNotAllowedError) as raised:
        protocol.parse_set_rent_status(200, BODY_STYLES[style]("CANT_CANCEL"), protocol.RENT_STATUS_CANCEL)
    assert raised.value.code == "CANT_CANCEL"


# ----------------------------------------------------------------------------- getRentList


def test_rent_list_of_strings_is_parsed_into_typed_entries() -> None:
    body = json.dumps(
        {
            "status": "success",
            "values": [
                {"id": "12345", "phone": "79181234567", "price": "100", "hours": "4", "endDate": "x"},
                {"id": 7, "phone": "79181234568"},
            ],
        }
    )
    first, second = protocol.parse_rent_list(200, body)
    assert (first.id, first.number, first.price, first.hours) == (12345, "79181234567", Decimal("100"), 4)
    assert first.extra == {"endDate": "x"}
    assert (second.id, second.price, second.hours) == (7, None, None)


def test_rent_list_keyed_by_index_is_parsed() -> None:
    body = json.dumps({"status": "success", "values": {"0": {"id": "1", "phone": "7"}}})
    assert [e.id for e in protocol.parse_rent_list(200, body)] == [1]


@pytest.mark.parametrize("values", [[], {}, None])
def test_empty_rent_list_is_an_empty_list(values: object) -> None:
    assert protocol.parse_rent_list(200, json.dumps({"status": "success", "values": values})) == []


@pytest.mark.parametrize("style", BODY_STYLES)
def test_rent_list_no_numbers_is_an_empty_list(style: str) -> None:
    assert protocol.parse_rent_list(200, BODY_STYLES[style]("NO_NUMBERS")) == []


# ----------------------------------------------------------------------------- prices


@pytest.mark.parametrize("price", ["100", 100, 1.5, "0.25"])
def test_continue_rent_price_is_a_decimal(price: object) -> None:
    assert protocol.parse_price(200, json.dumps({"status": "success", "price": price})) == Decimal(str(price))


def test_continue_rent_price_missing_is_a_server_error() -> None:
    with pytest.raises(ServerError, match="price"):
        protocol.parse_price(200, '{"status": "success"}')


def test_rent_prices_give_one_entry_per_country_and_service() -> None:
    body = json.dumps(
        {
            "status": "success",
            "values": {"0": {"tg": {"cost": 12.5, "count": 40}, "wa": {"cost": "3", "count": "0"}}},
        }
    )
    prices = protocol.parse_rent_prices(200, body)
    assert sorted((p.country, p.service, p.cost, p.count) for p in prices) == [
        (0, "tg", Decimal("12.5"), 40),
        (0, "wa", Decimal("3"), 0),
    ]


def test_rent_prices_for_a_bad_country_raise_invalid_request() -> None:
    with pytest.raises(InvalidRequestError):
        protocol.parse_rent_prices(200, "BAD_COUNTRY")


# ----------------------------------------------------------------------------- webhook


def test_webhook_of_the_docs_is_parsed() -> None:
    body = {
        "rentId": 123456,
        "sms": {"phoneFrom": "79999999999", "text": "Sms text", "date": "2025-01-01 12:00:00"},
    }
    hook = protocol.parse_webhook(json.dumps(body).encode())
    assert hook.rent_id == 123456
    assert (hook.sms.phone_from, hook.sms.text) == ("79999999999", "Sms text")
    assert hook.sms.date == datetime(2025, 1, 1, 12, 0, tzinfo=UTC)


def test_webhook_date_is_read_in_the_server_time_zone() -> None:
    body = {"rentId": "1", "sms": {"text": "x", "date": "2025-01-01 12:00:00"}}
    assert protocol.parse_webhook(json.dumps(body), MOSCOW).sms.date.utcoffset() == timedelta(hours=3)


@pytest.mark.parametrize(
    "body",
    [
        "",
        "not json",
        "[]",
        "{}",
        '{"rentId": 1}',
        '{"rentId": "x", "sms": {}}',
        '{"rentId": 1, "sms": "hi"}',
        '{"rentId": 1, "sms": {"date": "soon"}}',
        "[" * 100_000,
        b"\xff\xfe",
    ],
)
def test_webhook_that_is_not_the_documented_shape_raises_value_error(body: str | bytes) -> None:
    with pytest.raises(ValueError, match=r"not an SMS\.online webhook payload"):
        protocol.parse_webhook(body)


def test_webhook_encoded_by_the_sandbox_parses_back() -> None:
    sms = protocol.Sms("79990000000", "code 1234", "", datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC))
    parsed = protocol.parse_webhook(protocol.encode_webhook(77, sms))
    assert parsed == protocol.WebhookSms(rent_id=77, sms=sms)


# ----------------------------------------------------------------------------- parameters


def test_rent_number_params_leave_out_omitted_optionals() -> None:
    assert protocol.get_rent_number_params("tg", 0) == {
        "action": "getRentNumber",
        "service": "tg",
        "country": "0",
    }


def test_rent_number_params_leave_out_empty_optionals() -> None:
    params = protocol.get_rent_number_params("tg", 0, operator=" ", rent_time="", webhook_url="")  # type: ignore[arg-type]
    assert set(params) == {"action", "service", "country"}


def test_rent_number_params_send_given_optionals() -> None:
    params = protocol.get_rent_number_params(" tg ", "12", "mts", "24", "https://example.com/hook")  # type: ignore[arg-type]
    assert params == {
        "action": "getRentNumber",
        "service": "tg",
        "country": "12",
        "operator": "mts",
        "rent_time": "24",
        "uri": "https://example.com/hook",
        "url": "https://example.com/hook",
    }


def test_rent_status_params_default_to_the_newest_page() -> None:
    assert protocol.get_rent_status_params(5) == {
        "action": "getRentStatus",
        "id": "5",
        "page": "0",
        "size": "10",
    }


def test_set_rent_status_params_carry_the_status() -> None:
    assert protocol.set_rent_status_params(5, 2) == {"action": "setRentStatus", "id": "5", "status": "2"}


def test_other_params_builders() -> None:
    assert protocol.get_balance_params() == {"action": "getBalance"}
    assert protocol.get_rent_list_params() == {"action": "getRentList"}
    assert protocol.continue_rent_number_params(5, 8) == {
        "action": "continueRentNumber",
        "id": "5",
        "rent_time": "8",
    }
    assert protocol.get_continue_rent_price_params("5", "8") == {  # type: ignore[arg-type]
        "action": "getContinueRentPrice",
        "id": "5",
        "rent_time": "8",
    }
    assert protocol.get_rent_prices_params(3) == {"action": "getRentPrices", "country": "3"}


ALLOWED_RENT_TIMES = "4, 8, 12, 24, 72, 168, 360, 720, 2160"

BAD_PARAMS: list[tuple[str, Callable[[], object], str]] = [
    ("service-empty", lambda: protocol.get_rent_number_params("", 0), "service must be a non-empty string"),
    ("service-none", lambda: protocol.get_rent_number_params(None, 0), "service must be a non-empty string"),  # type: ignore[arg-type]
    ("country-negative", lambda: protocol.get_rent_number_params("tg", -1), "country must be a non-negative"),
    ("country-word", lambda: protocol.get_rent_number_params("tg", "ru"), "country must be a non-negative"),  # type: ignore[arg-type]
    ("country-bool", lambda: protocol.get_rent_number_params("tg", True), "country must be a non-negative"),
    ("operator-int", lambda: protocol.get_rent_number_params("tg", 0, 5), "operator must be a string"),  # type: ignore[arg-type]
    (
        "rent-time-5",
        lambda: protocol.get_rent_number_params("tg", 0, rent_time=5),
        f"rent_time must be one of {ALLOWED_RENT_TIMES}",
    ),
    (
        "rent-time-word",
        lambda: protocol.get_rent_number_params("tg", 0, rent_time="week"),  # type: ignore[arg-type]
        f"rent_time must be one of {ALLOWED_RENT_TIMES}",
    ),
    (
        "webhook-ftp",
        lambda: protocol.get_rent_number_params("tg", 0, webhook_url="ftp://example.com/h"),
        "webhook_url must be an http:// or https:// URL",
    ),
    (
        "continue-without-time",
        lambda: protocol.continue_rent_number_params(1, None),  # type: ignore[arg-type]
        f"rent_time is required: one of {ALLOWED_RENT_TIMES}",
    ),
    (
        "continue-bad-time",
        lambda: protocol.continue_rent_number_params(1, 48),
        f"rent_time must be one of {ALLOWED_RENT_TIMES}",
    ),
    ("rent-id-negative", lambda: protocol.set_rent_status_params(-1, 1), "rent_id must be a non-negative"),
    ("status-3", lambda: protocol.set_rent_status_params(1, 3), "status must be 1 (finish) or 2 (cancel)"),
    ("page-negative", lambda: protocol.get_rent_status_params(1, page=-1), "page must be a non-negative"),
    ("size-zero", lambda: protocol.get_rent_status_params(1, size=0), "size must be at least 1"),
    ("prices-country", lambda: protocol.get_rent_prices_params("x"), "country must be a non-negative"),  # type: ignore[arg-type]
]


@pytest.mark.parametrize(("case", "build", "message"), BAD_PARAMS, ids=[c[0] for c in BAD_PARAMS])
def test_bad_argument_raises_value_error_naming_the_field_and_what_is_allowed(
    case: str, build: Callable[[], object], message: str
) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        build()


@pytest.mark.parametrize("hours", [4, 8, 12, 24, 72, 168, 360, 720, 2160])
def test_every_documented_rent_time_is_accepted(hours: int) -> None:
    assert protocol.get_rent_number_params("tg", 0, rent_time=hours)["rent_time"] == str(hours)


# ----------------------------------------------------------------------------- encoders round-trip


def test_encoded_rental_parses_back() -> None:
    end = datetime(2025, 5, 10, 12, 34, 56, tzinfo=UTC)
    rental = protocol.parse_rental(200, protocol.encode_rental(9, "79990001122", end, cost="1.00"))
    assert (rental.id, rental.number, rental.end_date, rental.extra["cost"]) == (
        9,
        "79990001122",
        end,
        "1.00",
    )


def test_encoded_rent_status_parses_back_in_order() -> None:
    messages = [
        protocol.Sms("a", f"text {i}", "tg", datetime(2025, 1, 1, 0, 0, i, tzinfo=UTC)) for i in range(12)
    ]
    assert protocol.parse_rent_status(200, protocol.encode_rent_status(messages)) == messages


def test_encoded_errors_parse_back() -> None:
    for json_style in (False, True):
        with pytest.raises(NoNumbersError):
            protocol.parse_rental(200, protocol.encode_error("NO_NUMBERS", json_style=json_style))


@pytest.mark.parametrize("rent_id", ["-5", str(2**53), "1" + "0" * 40])
def test_a_rental_id_out_of_range_is_a_protocol_error(rent_id: str) -> None:
    phone = f'{{"id": {rent_id}, "endDate": "2025-05-10T12:34:56", "number": "7999"}}'
    body = f'{{"status": "success", "phone": {phone}}}'
    with pytest.raises(ServerError, match="rental id out of range") as raised:
        protocol.parse_rental(200, body)
    assert raised.value.code == "bad_response"
    row = f'{{"id": "{rent_id}", "phone": "7999", "price": "1", "hours": "4"}}'
    listed = f'{{"status": "success", "values": [{row}]}}'
    with pytest.raises(ServerError, match=r"rental id out of range|unreadable id"):
        protocol.parse_rent_list(200, listed)
    assert protocol.rental_id_in(body) is None


@pytest.mark.parametrize("parse", [protocol.parse_rental, protocol.parse_price])
def test_max_hours_exceed_is_a_refusal_that_keeps_the_servers_limit(parse: Callable[..., object]) -> None:
    from airflow_provider_smsonline.exceptions import MaxHoursExceededError

    body = '{"status": "error", "message": "MAX_HOURS_EXCEED", "info": {"max": 1440}}'
    with pytest.raises(MaxHoursExceededError, match="at most 1440 hours") as raised:
        parse(200, body)
    assert raised.value.max_hours == 1440 and raised.value.code == "MAX_HOURS_EXCEED"
    assert not raised.value.retryable


@pytest.mark.parametrize(
    "body",
    [
        '{"rentId": 123456, "sms": {"phoneFrom": 79999999999, "text": "Sms text", '
        '"date": "2025-01-01 12:00:00"}}',
        '{"rentId": "123456", "sms": {"phoneFrom": "79999999999", "text": "Sms text", '
        '"date": "2025-01-01 12:00:00"}}',
        "rentId=123456&sms%5BphoneFrom%5D=79999999999&sms%5Btext%5D=Sms+text&sms%5Bdate%5D=2025-01-01+12%3A00%3A00",
        "rentId=123456&phoneFrom=79999999999&text=Sms+text&date=2025-01-01+12%3A00%3A00",
    ],
    ids=["json-number", "json-string", "form-nested", "form-flat"],
)
def test_a_webhook_is_read_as_json_or_form_with_phone_from_a_number_or_a_string(body: str) -> None:
    hook = protocol.parse_webhook(body)
    assert hook.rent_id == 123456
    assert (hook.sms.phone_from, hook.sms.text) == ("79999999999", "Sms text")
    assert hook.sms.date == datetime(2025, 1, 1, 12, 0, tzinfo=timezone.utc)
