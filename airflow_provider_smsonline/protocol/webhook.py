# A webhook post (SMS.online's push of one SMS) in, the rental and the SMS out. No I/O.
"""Parsing SMS.online's webhook: JSON or form-encoded, as its page does not say which."""

from __future__ import annotations

import json
from datetime import timezone, tzinfo
from typing import Any
from urllib.parse import parse_qsl

from airflow_provider_smsonline.dates import parse_datetime
from airflow_provider_smsonline.protocol.answers import decode
from airflow_provider_smsonline.protocol.results import Sms, WebhookSms
from airflow_provider_smsonline.validation import as_int


def _webhook_payload(text: str) -> dict[str, Any]:
    """A webhook body as JSON, or form-encoded (``rentId=…&sms[text]=…`` or flat ``text=…``):
    SMS.online's page shows the fields but not the encoding."""
    if text.lstrip().startswith("{"):
        payload = json.loads(text)
        if not isinstance(payload, dict):
            raise TypeError("not an object")
        return payload
    fields = dict(parse_qsl(text, keep_blank_values=True, strict_parsing=True))
    sms = {key[4:-1]: value for key, value in fields.items() if key.startswith("sms[") and key.endswith("]")}
    if not sms:
        sms = {k: v for k, v in fields.items() if k in ("phoneFrom", "text", "service", "date")}
    return {"rentId": fields["rentId"], "sms": sms}


def parse_webhook(body: bytes | str, tz: tzinfo = timezone.utc) -> WebhookSms:
    """Parse a webhook post, JSON or form-encoded, ``phoneFrom`` a number or a string.

    Raises ``ValueError`` if it is not the documented shape.
    """
    try:
        payload = _webhook_payload(decode(body))
        sms = payload["sms"]
        return WebhookSms(
            rent_id=as_int(payload["rentId"]),
            sms=Sms(
                phone_from=_phone(sms.get("phoneFrom")),
                text=str(sms.get("text") or ""),
                service=str(sms.get("service") or ""),
                date=parse_datetime(sms.get("date"), tz),
            ),
        )
    except (ValueError, KeyError, TypeError, AttributeError, RecursionError) as exc:
        raise ValueError(f"not an SMS.online webhook payload: {type(exc).__name__}") from None


def _phone(value: object) -> str:
    # The documented sample writes phoneFrom as a bare JSON number; a float would print "7.9e10".
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value if value is not None else "").strip()
