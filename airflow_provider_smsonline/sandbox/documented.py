# SMS.online's documented answers as one table (action -> keys and types), read from its pages at
# sms.online/help/api-docs/<action>, and a checker that lists where an answer departs from it.
"""What SMS.online documents each rent action to answer, and what the sandbox adds beyond it.

:data:`DOCUMENTED` is the sandbox's reference: with ``documented_only`` every action answers
exactly these shapes. Where the pages are silent (an empty list, no SMS yet) the sandbox answers
the leanest form peers show; :attr:`Documented.when_empty` says which. :data:`RICH_EXTRAS` lists
the fields the default (rich) sandbox adds: nothing that must hold on the real service may use
them. :func:`mismatches` compares an answer with a shape.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, TypeAlias

from airflow_provider_smsonline.protocol.actions import GET_HISTORY, GET_RENT_HISTORY

_DOCS = "https://sms.online/help/api-docs/"


@dataclass(frozen=True)
class Text:
    """A JSON string of the form ``pattern`` (a regular expression matched in full)."""

    pattern: str = r"(?s).*"
    form: str = "any text"


@dataclass(frozen=True)
class Number:
    """A JSON number (integer or fraction; never a string, never a bool)."""

    integer: bool = False


@dataclass(frozen=True)
class ListOf:
    """A JSON array whose items all have the shape ``item``."""

    item: Shape


@dataclass(frozen=True)
class KeyedBy:
    """A JSON object whose keys are ``what`` (matching ``pattern``) and whose values are ``value``."""

    what: str
    pattern: str
    value: Shape


@dataclass(frozen=True)
class PlainText:
    """A body that is not JSON: text of the form ``pattern``."""

    pattern: str


#: A shape: one of the classes above, or a dict of exactly these keys to the shapes of their values.
Shape: TypeAlias = Text | Number | ListOf | KeyedBy | PlainText | Mapping[str, "Shape"]

SUCCESS = Text("success", "the word success")
DIGITS = Text(r"\d+", "digits")
AMOUNT = Text(r"\d+(\.\d+)?", "an amount such as 100 or 1.50")
END_DATE = Text(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d", "a date such as 2025-05-10T12:34:56, no zone")
SMS_DATE = Text(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d", "a date such as 2025-05-30 14:04:16, no zone")
INTEGER = Number(integer=True)
RENTAL: Shape = {"status": SUCCESS, "phone": {"id": INTEGER, "endDate": END_DATE, "number": DIGITS}}
#: getRentHistory's and getHistory's rows (the pages: the same shape for both).
HISTORY_ROWS: Shape = ListOf(
    {
        "id": INTEGER,
        "date": SMS_DATE,
        "phone": DIGITS,
        "sms": Text(r"\[.*\]", "a JSON list of texts, as a string"),
        "cost": Number(),
        "status": DIGITS,
    }
)


@dataclass(frozen=True)
class Documented:
    """One action as SMS.online's page documents it.

    :ivar action: the action's name.
    :ivar source: the page.
    :ivar success: the shape of a successful answer.
    :ivar when_empty: what the sandbox answers when there is nothing to list, and on whose word.
    """

    action: str
    source: str
    success: Shape
    when_empty: str = ""


DOCUMENTED: Mapping[str, Documented] = MappingProxyType(
    {
        d.action: d
        for d in (
            Documented("getBalance", _DOCS + "getBalance", PlainText(r"ACCESS_BALANCE:\d+(\.\d+)?")),
            Documented("getRentNumber", _DOCS + "getRentNumber", RENTAL),
            Documented("continueRentNumber", _DOCS + "continueRentNumber", RENTAL),
            Documented(
                "getRentStatus",
                _DOCS + "getRentStatus",
                {
                    "status": SUCCESS,
                    "quantity": DIGITS,
                    "values": KeyedBy(
                        "index 0, 1, ... (newest first)",
                        r"\d+",
                        {"phoneFrom": Text(), "text": Text(), "service": Text(), "date": SMS_DATE},
                    ),
                },
                when_empty='{"status": "error", "message": "STATUS_WAIT_CODE"} (peers; undocumented)',
            ),
            Documented("setRentStatus", _DOCS + "setRentStatus", {"status": SUCCESS}),
            Documented(
                "getRentList",
                _DOCS + "getRentList",
                {
                    "status": SUCCESS,
                    "values": ListOf({"id": DIGITS, "phone": DIGITS, "price": AMOUNT, "hours": DIGITS}),
                },
                when_empty='{"status": "error", "message": "NO_NUMBERS"} (peers; undocumented)',
            ),
            Documented(
                "getContinueRentPrice", _DOCS + "getContinueRentPrice", {"status": SUCCESS, "price": AMOUNT}
            ),
            Documented(
                "getRentPrices",
                _DOCS + "getRentPrices",
                {
                    "status": SUCCESS,
                    "values": KeyedBy(
                        "country id",
                        r"\d+",
                        KeyedBy("service code", r"[a-z0-9_]+", {"cost": Number(), "count": INTEGER}),
                    ),
                },
            ),
            # The page's sample is not valid JSON (a comma is missing; "sms" holds unescaped
            # quotes): read as a bare list whose "sms" is a string holding a JSON list of texts.
            # The meaning of "status" is undocumented; the sandbox writes 0 active, 1 finished,
            # 2 cancelled, 3 expired (an assumption).
            Documented(
                GET_RENT_HISTORY,
                _DOCS + "getRentHistory",
                HISTORY_ROWS,
                when_empty="[] (the leanest form; undocumented)",
            ),
            # getHistory: getRentHistory's parameters and shape (its page says so); the sandbox's
            # status values are a guess too (1 waiting, 3 retry, 4 code, 6 completed, 8 cancelled).
            Documented(
                GET_HISTORY,
                _DOCS + "getHistory",
                HISTORY_ROWS,
                when_empty="[] (the leanest form; undocumented)",
            ),
            # The activation family: names from SMS.online's pages, plain-text answers the shared
            # protocol's (sms-activate, sms-online.pro).
            Documented("getNumber", _DOCS + "getNumber", PlainText(r"ACCESS_NUMBER:\d+:\d+")),
            Documented(
                "getStatus",
                _DOCS + "getStatus",
                # The resend state: STATUS_WAIT_RESEND or the peers' STATUS_WAIT_RETRY (readings.py).
                PlainText(r"STATUS_(WAIT_CODE|CANCEL|OK:.+|WAIT_RETRY:.+|WAIT_RESEND:.+)"),
            ),
            Documented(
                "setStatus", _DOCS + "setStatus", PlainText(r"ACCESS_(READY|RETRY_GET|ACTIVATION|CANCEL)")
            ),
            Documented(
                "getPrices",
                _DOCS + "getPrices",
                KeyedBy(
                    "country id",
                    r"\d+",
                    KeyedBy("service code", r"[a-z0-9_]+", {"cost": Number(), "count": INTEGER}),
                ),
            ),
            Documented(
                "getActiveActivations",
                _DOCS + "getActiveActivations",
                {
                    "status": SUCCESS,
                    "activeActivations": ListOf(
                        {
                            "activationId": DIGITS,
                            "countryCode": DIGITS,
                            "countryName": Text(),
                            "serviceCode": Text(),
                            "phoneNumber": Text(r"[\d*]+", "digits, some masked with *"),
                            "activationCost": Number(),
                            "activationStatus": DIGITS,
                            "smsCode": ListOf(Text()),
                            "activationTime": Text(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d", "a date, no zone"),
                        }
                    ),
                },
                when_empty="NO_ACTIVATIONS (the page names the case, not the code)",
            ),
        )
    }
)

#: Fields the default (rich) sandbox adds to a success, per action, beyond :data:`DOCUMENTED`
#: (``[]``: in every item of a list). ``documented_only`` leaves them out.
RICH_EXTRAS: Mapping[str, frozenset[str]] = MappingProxyType(
    {
        "getRentNumber": frozenset({"phone.cost"}),
        "continueRentNumber": frozenset({"phone.cost"}),
        "getRentList": frozenset({"values[].endDate", "values[].service", "values[].country"}),
    }
)

#: The problem :func:`mismatches` reports for a field the shape does not have.
UNDOCUMENTED = "not documented"


def mismatches(shape: Shape, value: Any, path: str = "") -> list[tuple[str, str]]:
    """Every place where ``value`` (a parsed JSON answer, or text for :class:`PlainText`) departs
    from ``shape``, as ``(path, problem)``; empty when it conforms. Paths read ``phone.cost``,
    ``values[].id`` (any item of a list) or ``values{}.date`` (any value of a keyed object)."""
    where = path or "(answer)"
    if isinstance(shape, PlainText):
        ok = isinstance(value, str) and re.fullmatch(shape.pattern, value) is not None
        return [] if ok else [(where, f"expected plain text {shape.pattern}, got {value!r}")]
    if isinstance(shape, Text):
        if not isinstance(value, str):
            return [(where, f"expected a string ({shape.form}), got {json.dumps(value)}")]
        ok = re.fullmatch(shape.pattern, value) is not None
        return [] if ok else [(where, f"expected {shape.form}, got {value!r}")]
    if isinstance(shape, Number):
        kinds = (int,) if shape.integer else (int, float)
        if isinstance(value, bool) or not isinstance(value, kinds):
            return [
                (
                    where,
                    f"expected a JSON {'integer' if shape.integer else 'number'}, got {json.dumps(value)}",
                )
            ]
        return []
    if isinstance(shape, ListOf):
        if not isinstance(value, list):
            return [(where, f"expected a list, got {type(value).__name__}")]
        return [problem for item in value for problem in mismatches(shape.item, item, f"{path}[]")]
    if isinstance(shape, KeyedBy):
        if not isinstance(value, dict):
            return [(where, f"expected an object keyed by {shape.what}, got {type(value).__name__}")]
        problems = [
            (f"{path}{{}}", f"key {k!r} is not a {shape.what}")
            for k in value
            if not re.fullmatch(shape.pattern, k)
        ]
        return problems + [p for v in value.values() for p in mismatches(shape.value, v, f"{path}{{}}")]
    if not isinstance(value, dict):
        return [(where, f"expected an object, got {type(value).__name__}")]
    prefix = f"{path}." if path else ""
    problems = [(prefix + k, "missing") for k in shape if k not in value]
    problems += [(prefix + k, UNDOCUMENTED) for k in value if k not in shape]
    for key, inner in shape.items():
        if key in value:
            problems += mismatches(inner, value[key], prefix + key)
    return list(dict.fromkeys(problems))  # one line per field, not per list item


def undocumented_fields(action: str, value: Any) -> set[str]:
    """The paths of the fields in ``value`` (an answer of ``action``) that its page does not show."""
    return {
        path for path, problem in mismatches(DOCUMENTED[action].success, value) if problem == UNDOCUMENTED
    }
