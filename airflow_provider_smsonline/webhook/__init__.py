# Push instead of poll: SMS.online posts each SMS of a rental to the URL given on getRentNumber.
# This package turns those posts into wake-ups of the waits on that rental. This module is the
# light, shared part: the URL and its token (derived from a secret in Airflow's config). The
# receiver (an ASGI app mounted on Airflow's api-server), the hint store and the triggerer's
# shared reader live in the submodules and load only where they run.
"""The webhook URL to give SMS.online, and the token that authenticates its posts.

SMS.online signs nothing, so the URL is the credential: it ends in a token derived (HMAC-SHA256)
from ``[smsonline] webhook_secret`` (``AIRFLOW__SMSONLINE__WEBHOOK_SECRET``). The URL never holds
the secret itself, and the receiver compares tokens in constant time.

::

    from airflow_provider_smsonline.webhook import webhook_url

    url = webhook_url()  # https://airflow.example.com/smsonline/webhook/<token>

or ``RentNumberOperator(..., webhook=True)``. A webhook is a hint, never the truth: the waits on
the rental look at getRentStatus at once, and keep their poll as the safety net.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
from typing import Any
from urllib.parse import urlsplit

__all__ = [
    "CONFIG_SECTION",
    "MIN_SECRET_DISTINCT",
    "MIN_SECRET_LENGTH",
    "URL_PREFIX",
    "WEBHOOK_PATH",
    "WebhookConfigError",
    "configured_secret",
    "secret_problem",
    "webhook_token",
    "webhook_url",
]

#: Airflow's config section of the provider (``[smsonline]``).
CONFIG_SECTION = "smsonline"
#: Where the receiver is mounted on the api-server.
URL_PREFIX = "/smsonline"
#: The receiver's path under :data:`URL_PREFIX`; the token follows it.
WEBHOOK_PATH = "/webhook/"
#: The shortest secret accepted: a short secret could be guessed from its token.
MIN_SECRET_LENGTH = 16
#: The fewest different characters a secret must hold: sixteen ``a`` are sixteen characters, and
#: guessed at once.
MIN_SECRET_DISTINCT = 8

# Tells this token apart from anything else derived from the same secret (a new version of the
# scheme changes it, so that old URLs stop working on purpose rather than by accident).
_TOKEN_PURPOSE = b"airflow-provider-smsonline webhook token v1"
# 24 bytes of the MAC: 192 bits, 32 URL-safe characters.
_TOKEN_BYTES = 24


class WebhookConfigError(ValueError):
    """The webhook cannot be used as configured (the message names the setting)."""


def webhook_token(secret: str) -> str:
    """The URL token for ``secret``: 32 URL-safe characters, HMAC-SHA256 of a fixed purpose.

    Anyone holding the token can post webhooks (hints only), but cannot recover the secret.

    :raises WebhookConfigError: the secret breaks the rule: at least :data:`MIN_SECRET_LENGTH`
        characters, at least :data:`MIN_SECRET_DISTINCT` of them different (surrounding spaces
        are not counted). The message says which part failed, never the secret.
    """
    problem = secret_problem(secret)
    if problem is not None:
        raise WebhookConfigError(problem)
    mac = hmac.new(secret.strip().encode("utf-8"), _TOKEN_PURPOSE, hashlib.sha256).digest()
    return base64.urlsafe_b64encode(mac[:_TOKEN_BYTES]).decode("ascii")


def secret_problem(secret: object) -> str | None:
    """What is wrong with ``secret`` as a webhook secret (``None``: nothing), in words that name
    the setting and the rule but never show the secret."""
    rule = (
        f"[{CONFIG_SECTION}] webhook_secret must be a string of at least {MIN_SECRET_LENGTH} "
        f"characters, at least {MIN_SECRET_DISTINCT} of them different"
    )
    how = "e.g. the output of `python -c 'import secrets; print(secrets.token_urlsafe(32))'`"
    if not isinstance(secret, str):
        return f"{rule}; got a {type(secret).__name__} ({how})"
    text = secret.strip()
    if len(text) < MIN_SECRET_LENGTH or len(set(text)) < MIN_SECRET_DISTINCT:
        return f"{rule}; got {len(text)} characters, {len(set(text))} different ({how})"
    return None


def configured_secret(config: Any = None) -> str | None:
    """``[smsonline] webhook_secret`` from Airflow's config (``None`` when unset or empty)."""
    if config is None:
        config = _airflow_conf()
    try:
        value = config.get(CONFIG_SECTION, "webhook_secret", fallback=None)
    except Exception:  # a section Airflow cannot read: treated as unset
        return None
    return (value.strip() or None) if isinstance(value, str) else None


def webhook_url(base_url: str | None = None) -> str:
    """The URL to pass as getRentNumber's ``url``: ``<base>/smsonline/webhook/<token>``.

    :param base_url: the api-server's public URL as SMS.online reaches it (through your reverse
        proxy); ``None``: Airflow's ``[api] base_url``.
    :raises WebhookConfigError: the secret is unset or too short, or there is no usable base URL.

    The token is registered with Airflow's log masker where one is running (a task), so the URL
    does not show in task logs.
    """
    conf = _airflow_conf()
    secret = configured_secret(conf)
    if secret is None:
        raise WebhookConfigError(
            f"[{CONFIG_SECTION}] webhook_secret is not set: set it (or AIRFLOW__SMSONLINE__WEBHOOK_SECRET) "
            "on the api-server and wherever the webhook URL is built, to the same value"
        )
    token = webhook_token(secret)
    if base_url is None:
        try:
            base_url = conf.get("api", "base_url", fallback=None)
        except Exception:
            base_url = None
    base = _checked_base(base_url)
    _mask(token)
    return f"{base}{URL_PREFIX}{WEBHOOK_PATH}{token}"


def _airflow_conf() -> Any:
    # Airflow's config through _compat, when it is read: every Airflow process imports this
    # package with the plugin (webhook.plugin), and must not pay for the Task SDK there.
    from airflow_provider_smsonline._compat import conf

    return conf


def _checked_base(base_url: object) -> str:
    if not isinstance(base_url, str) or not base_url.strip():
        raise WebhookConfigError(
            "there is no base URL for the webhook: pass base_url= or set [api] base_url to the "
            "api-server's public URL (as SMS.online reaches it)"
        )
    base = base_url.strip().rstrip("/")
    parts = urlsplit(base)
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.query or parts.fragment:
        raise WebhookConfigError(
            "the webhook's base URL must be an http:// or https:// URL with a host and no query, "
            f"got {base!r}"
        )
    return base


def _mask(token: str) -> None:
    try:  # the Task SDK's log (structlog) loads when a URL is built, not with this module
        from airflow.sdk.log import mask_secret
    except ImportError:  # pragma: no cover - every supported Airflow has it
        return
    with contextlib.suppress(Exception):  # no masker to tell (outside a task): nothing to do
        mask_secret(token)
