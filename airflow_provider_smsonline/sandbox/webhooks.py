# Delivering an SMS or a code from the control side, and the webhook post it may call for (the
# rental's URL, or the account's activation webhook): once, never retried (as SMS.online does), in
# a background thread, its outcome counted in the state.
"""SMS and code delivery, and webhook posts (standard library only)."""

from __future__ import annotations

import threading
from typing import Any

from airflow_provider_smsonline.sandbox.control import CodeDelivery, Delivery
from airflow_provider_smsonline.sandbox.state import SandboxState

#: How long a webhook post may take before it counts as failed.
DEFAULT_WEBHOOK_TIMEOUT_SECONDS = 2.0


def deliver_sms(
    state: SandboxState,
    rent_id: object,
    text: object,
    phone_from: object = "SMSonline",
    service: object = None,
    webhook_timeout: float = DEFAULT_WEBHOOK_TIMEOUT_SECONDS,
) -> dict[str, Any]:
    """Deliver an SMS to a rental and post its webhook (in a background thread) if it has one.

    What ``POST /sandbox/rentals/<id>/sms`` does; raises :class:`~.inputs.SandboxError` on refusal.
    """
    delivery = state.deliver_sms(rent_id, text, phone_from, service)
    _send(state, delivery, webhook_timeout, f"rental-{delivery.rental_id}")
    return {
        "rental_id": delivery.rental_id,
        "sms": {
            "phone_from": delivery.sms.phone_from,
            "text": delivery.sms.text,
            "service": delivery.sms.service,
            "date": delivery.sms.date.isoformat(),
        },
        "webhook": delivery.webhook_url is not None,
    }


def deliver_code(
    state: SandboxState,
    activation_id: object,
    code: object,
    text: object = None,
    webhook_timeout: float = DEFAULT_WEBHOOK_TIMEOUT_SECONDS,
) -> dict[str, Any]:
    """Deliver a code to a waiting activation and, when the account has an activation webhook
    URL (``state.activation_webhook``), post SMS.online's activation webhook to it (in a
    background thread). What ``POST /sandbox/activations/<id>/code`` does; the answer is the
    activation, with ``webhook`` saying whether a post was due."""
    answer, delivery = state.code_delivery(activation_id, code, text)
    _send(state, delivery, webhook_timeout, f"activation-{delivery.activation_id}")
    return {**answer, "webhook": delivery.webhook_url is not None}


def _send(state: SandboxState, delivery: Delivery | CodeDelivery, timeout: float, name: str) -> None:
    if delivery.webhook_url is None:
        return
    if state.drop_webhooks:
        state.record_webhook(delivery, False, "dropped")  # lost on the way, as a post can be
        return
    threading.Thread(
        target=_post_webhook,
        args=(state, delivery, timeout),
        name=f"smsonline-sandbox-webhook-{name}",
        daemon=True,
    ).start()


def _post_webhook(state: SandboxState, delivery: Delivery | CodeDelivery, timeout: float) -> None:
    """Post once, never retried (as SMS.online does); the outcome is counted in the state."""
    import urllib.error
    import urllib.request

    assert delivery.webhook_url is not None and delivery.payload is not None
    request = urllib.request.Request(
        delivery.webhook_url,
        data=delivery.payload.encode("utf-8"),
        headers={"Content-Type": "application/json", "User-Agent": "SMSonlineSandbox"},
        method="POST",
    )
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(request, timeout=timeout) as response:
            response.read(65536)
            status = response.status
        ok, detail = 200 <= status < 300, f"HTTP {status}"
    except urllib.error.HTTPError as exc:
        ok, detail = False, f"HTTP {exc.code}"
    except Exception as exc:  # refused, timed out, bad URL: counted, never raised
        ok, detail = False, type(exc).__name__
    state.record_webhook(delivery, ok, detail)
