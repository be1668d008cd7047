# A webhook post in, what it says out: the rental webhook (one post per SMS of a rental made with
# a URL) or the activation webhook (one post per code, one URL for the whole account). No I/O.
"""Parsing SMS.online's two webhooks: JSON or form-encoded, as its page does not say which.

* rentals: ``{"rentId": 123456, "sms": {"phoneFrom": 79999999999, "text": "...", "date": "..."}}``
  → :class:`~.results.WebhookSms`;
* activations: ``{"activationId": 123456, "service": "go", "text": "...", "code": "12345",
  "country": 0, "receivedAt": "..."}`` → :class:`~.results.WebhookCode`.

An id is 1 to :data:`MAX_ID_DIGITS` ASCII digits: a JSON integer, or a string of those digits
(``1.5``, ``true``, ``"-5"``, ``"+7"``, ``" 7"`` and other scripts' digits are refused).
"""

from __future__ import annotations

import json
import re
from datetime import timezone, tzinfo
from typing import Any
from urllib.parse import parse_qsl

from airflow_provider_smsonline.dates import parse_datetime
from airflow_provider_smsonline.protocol.answers import decode
from airflow_provider_smsonline.protocol.results import Sms, WebhookCode, WebhookSms

__all__ = ["MAX_ID_DIGITS", "parse_webhook", "webhook_id"]

#: The most digits a webhook's id may have (10**18 - 1 fits any 64-bit integer column).
MAX_ID_DIGITS = 18

_ID_TEXT = re.compile(rf"[0-9]{{1,{MAX_ID_DIGITS}}}")
_ACTIVATION_FIELDS = ("activationId", "service", "text", "code", "country", "receivedAt")


def webhook_id(value: object) -> int:
    """``value`` as an id: a JSON integer from 0 to 10**18 - 1, or a string of 1 to 18 ASCII
    digits; ``ValueError`` for anything else (a bool, a fraction, a sign, a space, other digits)."""
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 10**MAX_ID_DIGITS:
        return value
    if isinstance(value, str) and _ID_TEXT.fullmatch(value):
        return int(value)
    raise ValueError("not an id of 1 to 18 ASCII digits")


def _payload(text: str) -> dict[str, Any]:
    """A webhook body as JSON, or form-encoded (``rentId=…&sms[text]=…``, flat ``text=…``, or the
    activation's fields): SMS.online's page shows the fields but not the encoding."""
    if text.lstrip().startswith("{"):
        payload = json.loads(text)
        if not isinstance(payload, dict):
            raise TypeError("not an object")
        return payload
    fields = dict(parse_qsl(text, keep_blank_values=True, strict_parsing=True))
    if "activationId" in fields:
        return {key: value for key, value in fields.items() if key in _ACTIVATION_FIELDS}
    sms = {key[4:-1]: value for key, value in fields.items() if key.startswith("sms[") and key.endswith("]")}
    if not sms:
        sms = {k: v for k, v in fields.items() if k in ("phoneFrom", "text", "service", "date")}
    return {"rentId": fields["rentId"], "sms": sms}


def parse_webhook(body: bytes | str, tz: tzinfo = timezone.utc) -> WebhookSms | WebhookCode:
    """Parse a webhook post, JSON or form-encoded: a rental's SMS or an activation's code.

    ``phoneFrom`` may be a number or a string. Raises ``ValueError`` if the body is neither
    documented shape (or names both a rental and an activation, or an id that is not 1 to 18
    ASCII digits).
    """
    try:
        payload = _payload(decode(body))
        if "activationId" in payload:
            if "rentId" in payload:
                raise KeyError("both rentId and activationId")
            return _activation(payload, tz)
        sms = payload["sms"]
        return WebhookSms(
            rent_id=webhook_id(payload["rentId"]),
            sms=Sms(
                phone_from=_phone(sms.get("phoneFrom")),
                text=str(sms.get("text") or ""),
                service=str(sms.get("service") or ""),
                date=parse_datetime(sms.get("date"), tz),
            ),
        )
    except (ValueError, KeyError, TypeError, AttributeError, RecursionError) as exc:
        raise ValueError(f"not an SMS.online webhook payload: {type(exc).__name__}") from None


def _activation(payload: dict[str, Any], tz: tzinfo) -> WebhookCode:
    code = payload["code"]
    if isinstance(code, bool) or not isinstance(code, (str, int)) or not str(code).strip():
        raise ValueError("no code")
    country = payload.get("country")
    received = payload.get("receivedAt")
    return WebhookCode(
        activation_id=webhook_id(payload["activationId"]),
        code=str(code).strip(),
        text=str(payload.get("text") or ""),
        service=str(payload.get("service") or ""),
        country=webhook_id(country) if country not in (None, "") else None,
        received_at=parse_datetime(received, tz) if received not in (None, "") else None,
    )


def _phone(value: object) -> str:
    # The documented sample writes phoneFrom as a bare JSON number; a float would print "7.9e10".
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value if value is not None else "").strip()
