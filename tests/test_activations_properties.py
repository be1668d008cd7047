# Property tests of the activation family's protocol: whatever status and body arrive, every
# activation parser returns a result or raises an SmsOnlineError; what the sandbox encodes parses
# back to the same value; max_price is accepted or refused with a ValueError naming it.
from __future__ import annotations

import json
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from airflow_provider_smsonline import protocol, validation
from airflow_provider_smsonline.exceptions import SmsOnlineError
from tests.test_protocol_properties import PROPERTY, any_json, plausible_json, plausible_scalars, statuses

PARSERS: dict[str, Callable[[int, bytes | str], object]] = {
    "parse_number": protocol.parse_number,
    "parse_status": protocol.parse_status,
    "parse_set_status(cancel)": lambda s, b: protocol.parse_set_status(s, b, protocol.ACTIVATION_CANCEL),
    "parse_prices": protocol.parse_prices,
    "parse_active_activations": protocol.parse_active_activations,
}

PLAIN = st.sampled_from(
    [
        "ACCESS_NUMBER:1:79990001122",
        "ACCESS_NUMBER:99999999999999999999:7",
        "ACCESS_NUMBER::",
        "STATUS_OK:1234",
        "STATUS_OK:",
        "STATUS_WAIT_RETRY:1",
        "STATUS_CANCEL",
        "ACCESS_CANCEL",
        "WRONG_MAX_PRICE:12.5",
        "WRONG_MAX_PRICE:NaN",
        "WRONG_MAX_PRICE",
        "NO_ACTIVATIONS",
        *protocol.ERROR_TABLE,
    ]
) | st.text(max_size=40)

row_like = st.fixed_dictionaries(
    {},
    optional={
        "activationId": plausible_scalars,
        "countryCode": plausible_scalars,
        "serviceCode": plausible_scalars,
        "phoneNumber": plausible_scalars,
        "activationCost": plausible_scalars,
        "activationStatus": plausible_scalars,
        "phoneNumber2": plausible_json,
    },
)
payload_like = st.one_of(
    st.fixed_dictionaries(
        {"status": st.just("success"), "activeActivations": st.lists(row_like, max_size=3)}
    ),
    st.fixed_dictionaries(
        {},
        optional={
            "activationId": plausible_scalars,
            "phoneNumber": plausible_scalars,
            "activationCost": plausible_scalars,
        },
    ),
    st.dictionaries(
        st.text(max_size=3), st.dictionaries(st.text(max_size=3), plausible_json, max_size=2), max_size=2
    ),
    st.fixed_dictionaries({}, optional={"sms": plausible_json, "verificationType": plausible_scalars}),
)


def _survives(status: int, body: bytes | str) -> None:
    for name, parse in PARSERS.items():
        try:
            parse(status, body)
        except SmsOnlineError:
            pass
        except Exception as error:  # pragma: no cover - the failure message is the point
            pytest.fail(f"{name} raised {type(error).__name__}: {error}")


@PROPERTY
@given(status=statuses, body=st.binary(max_size=200) | st.text(max_size=200))
def test_any_body_gives_a_result_or_an_smsonline_error(status: int, body: bytes | str) -> None:
    _survives(status, body)


@PROPERTY
@given(status=statuses, code=PLAIN)
def test_any_plain_text_answer_gives_a_result_or_an_smsonline_error(status: int, code: str) -> None:
    _survives(status, code)


@PROPERTY
@given(status=statuses, value=any_json | payload_like, to_bytes=st.booleans())
def test_any_json_gives_a_result_or_an_smsonline_error(status: int, value: Any, to_bytes: bool) -> None:
    text = json.dumps(value)
    _survives(status, text.encode() if to_bytes else text)


@PROPERTY
@given(
    activation_id=st.integers(min_value=0, max_value=validation.MAX_RENTAL_ID),
    number=st.text("0123456789", min_size=1, max_size=15),
)
def test_an_encoded_number_parses_back(activation_id: int, number: str) -> None:
    assert protocol.parse_number(200, protocol.encode_number(activation_id, number)) == protocol.Activation(
        activation_id, number
    )


@PROPERTY
@given(
    status=st.sampled_from([protocol.STATUS_OK, protocol.STATUS_WAIT_RETRY]),
    code=st.text(st.characters(blacklist_categories=["Cc", "Cs", "Zs", "Zl", "Zp"]), min_size=1, max_size=20),
)
def test_an_encoded_status_parses_back(status: str, code: str) -> None:
    state = protocol.ActivationStatus(status, code.strip() or "0")
    assert protocol.parse_status(200, protocol.encode_status(state)) == state


@PROPERTY
@given(
    prices=st.lists(
        st.builds(
            protocol.ActivationPrice,
            country=st.integers(min_value=0, max_value=999),
            service=st.text("abcdefghijklmnopqrstuvwxyz", min_size=1, max_size=4),
            cost=st.decimals(min_value=0, max_value=10_000, places=2),
            count=st.integers(min_value=0, max_value=10**6),
        ),
        max_size=5,
        unique_by=lambda p: (p.country, p.service),
    )
)
def test_encoded_prices_parse_back(prices: list[protocol.ActivationPrice]) -> None:
    parsed = protocol.parse_prices(200, protocol.encode_prices(prices))
    assert {(p.country, p.service): (p.cost, p.count) for p in parsed} == {
        (p.country, p.service): (p.cost, p.count) for p in prices
    }


@PROPERTY
@given(
    value=st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=20), st.decimals())
)
def test_max_price_is_a_positive_decimal_or_a_value_error_naming_it(value: object) -> None:
    try:
        limit = validation.validate_max_price(value)
    except ValueError as error:
        assert str(error).startswith("max_price must be")
        return
    assert limit is None or (isinstance(limit, Decimal) and 0 < limit <= validation.MAX_PRICE_LIMIT)
