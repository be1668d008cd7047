# The receiver: a bare ASGI app (no framework), mounted by Airflow's api-server under /smsonline.
# SMS.online posts once and never retries, so it answers at once: it checks the token, reads at
# most MAX_BODY_BYTES of the body as it streams in, parses it with the protocol's one webhook
# parser (a rental's SMS or an activation's code), notes the rental or activation in the worker's
# HintWriter (in memory) and answers 200. Nothing here calls SMS.online or the database on the
# request's path. Anything but HTTP (a WebSocket, …) is closed at once.
"""The ASGI app that hears SMS.online's webhooks and records a hint for the rental or activation."""

from __future__ import annotations

import asyncio
import hmac
import json
import time
from typing import Any

from airflow_provider_smsonline import metrics
from airflow_provider_smsonline.protocol import WebhookCode, WebhookSms, parse_webhook
from airflow_provider_smsonline.webhook import WEBHOOK_PATH
from airflow_provider_smsonline.webhook.hints import ACTIVATION, RENTAL, HintKey, HintWriter
from airflow_provider_smsonline.webhook.logmask import MASK

__all__ = ["BODY_TIMEOUT", "BURST", "MAX_BODY_BYTES", "RATE", "RateLimit", "WebhookReceiver"]

#: The largest body accepted, in bytes (SMS.online's post is a few hundred bytes).
MAX_BODY_BYTES = 4096
#: Seconds a sender may take to send its body.
BODY_TIMEOUT = 5.0
#: Webhooks per second one api-server worker accepts, on average, for rentals or activations
#: not already pending (a post for one already pending costs nothing and is always taken).
RATE = 50.0
#: How many such webhooks may arrive at once above :data:`RATE`.
BURST = 200

Scope = dict[str, Any]


class RateLimit:
    """A token bucket: ``burst`` at once, then ``rate`` per second."""

    def __init__(self, rate: float = RATE, burst: int = BURST, clock: Any = time.monotonic) -> None:
        self.rate = float(rate)
        self.burst = float(burst)
        self._clock = clock
        self._tokens = float(burst)
        self._at = clock()

    def allow(self) -> bool:
        """Take one token; ``False`` when none is left."""
        now = self._clock()
        self._tokens = min(self.burst, self._tokens + (now - self._at) * self.rate)
        self._at = now
        if self._tokens < 1:
            return False
        self._tokens -= 1
        return True


class _TooLarge(Exception):
    pass


class WebhookReceiver:
    """``POST <prefix>/webhook/<token>`` with one of SMS.online's webhook bodies: the rental
    webhook (``rentId``) or the activation webhook (``activationId``), JSON or form-encoded.

    Answers (JSON): 200 ``{"status": "ok"}`` (a hint is noted for the rental or activation); 404
    for any other path or a wrong token (nothing noted); 405 for another method; 429 past the rate
    limit (posts for a rental or activation already pending are not counted: they add nothing);
    413 for a body over :data:`MAX_BODY_BYTES`; 408 for a body slower than :data:`BODY_TIMEOUT`;
    400 for a body that is neither webhook (ids must be 1 to 18 ASCII digits). Before answering it
    replaces the token in the request's path (``scope["path"]``, ``raw_path``) by ``***``, so
    access logs that read the path afterwards print no token. A WebSocket is closed before it is
    accepted (the server answers 403), any other kind of connection left unanswered.

    :param token: the valid token (:func:`~airflow_provider_smsonline.webhook.webhook_token`).
    :param writer: where hints go.
    """

    def __init__(
        self,
        token: str,
        writer: HintWriter,
        *,
        max_body: int = MAX_BODY_BYTES,
        body_timeout: float = BODY_TIMEOUT,
        limit: RateLimit | None = None,
    ) -> None:
        self._token = token.encode("ascii")
        self.writer = writer
        self.max_body = max_body
        self.body_timeout = body_timeout
        self.limit = limit or RateLimit()
        self.counts: dict[int, int] = {}

    def __repr__(self) -> str:  # never shows the token
        return f"WebhookReceiver(max_body={self.max_body})"

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            await _lifespan(receive, send)
            return
        if scope["type"] == "websocket":
            await self._refuse_websocket(scope, receive, send)
            return
        if scope["type"] != "http":
            return
        status, body = await self._answer(scope, receive)
        self.counts[status] = self.counts.get(status, 0) + 1
        metrics.webhook_post(status)
        payload = json.dumps(body).encode()
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(payload)).encode()),
                    (b"cache-control", b"no-store"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": payload})

    async def _answer(self, scope: Scope, receive: Any) -> tuple[int, dict[str, Any]]:
        head, sep, candidate = str(scope.get("path", "")).rpartition(WEBHOOK_PATH)
        if not sep or not candidate:
            return 404, {"error": "not found"}
        _mask_path(scope, head + sep)
        if not hmac.compare_digest(candidate.encode("utf-8", "replace"), self._token):
            return 404, {"error": "not found"}
        if scope.get("method") != "POST":
            return 405, {"error": "only POST is allowed"}
        declared = _content_length(scope)
        if declared is not None and declared > self.max_body:
            return 413, {"error": f"body over {self.max_body} bytes"}
        try:
            body = await asyncio.wait_for(self._read(receive), self.body_timeout)
        except _TooLarge:
            return 413, {"error": f"body over {self.max_body} bytes"}
        except asyncio.TimeoutError:
            return 408, {"error": f"body not received within {self.body_timeout:g} s"}
        try:
            key = _hint_key(parse_webhook(body))
        except ValueError:
            return 400, {
                "error": "body must be one of SMS.online's webhooks, as JSON or form-encoded: "
                '{"rentId": <id>, "sms": {...}} or {"activationId": <id>, "code": ..., ...}, '
                "each id 1 to 18 ASCII digits"
            }
        if self.writer.is_pending(key):  # noted already: this post adds nothing, and costs no rate
            return 200, {"status": "ok"}
        if not self.limit.allow():
            return 429, {"error": "too many webhooks; the waits' poll finds this SMS"}
        if not self.writer.record(key):
            return 429, {"error": "too many rentals pending; the waits' poll finds this SMS"}
        return 200, {"status": "ok"}

    async def _refuse_websocket(self, scope: Scope, receive: Any, send: Any) -> None:
        """Close a WebSocket before accepting it (the server answers 403), the token masked first."""
        head, sep, _ = str(scope.get("path", "")).rpartition(WEBHOOK_PATH)
        if sep:
            _mask_path(scope, head + sep)
        message = await receive()
        if message.get("type") == "websocket.connect":
            await send({"type": "websocket.close", "code": 1008})

    async def _read(self, receive: Any) -> bytes:
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                break
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body:
                raise _TooLarge
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        return b"".join(chunks)


def _hint_key(webhook: WebhookSms | WebhookCode) -> HintKey:
    if isinstance(webhook, WebhookSms):
        return (RENTAL, webhook.rent_id)
    return (ACTIVATION, webhook.activation_id)


def _mask_path(scope: Scope, prefix: str) -> None:
    # The scope is the api-server's own dict (Starlette's Mount updates it in place), so the access
    # log written after the answer reads the masked path.
    scope["path"] = prefix + MASK
    raw = scope.get("raw_path")
    if isinstance(raw, bytes):
        cut = raw.rfind(WEBHOOK_PATH.encode())
        scope["raw_path"] = (raw[: cut + len(WEBHOOK_PATH)] if cut >= 0 else b"") + MASK.encode()


def _content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", ()):
        if name.lower() == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


async def _lifespan(receive: Any, send: Any) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return
