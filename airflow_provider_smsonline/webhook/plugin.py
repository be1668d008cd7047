# The Airflow plugin that mounts the webhook receiver on the api-server. Registered through the
# `airflow.plugins` entry point (it loads whatever [core] lazy_discover_providers says), so every
# Airflow process imports this module: it imports only AirflowPlugin (already loaded by whoever
# loads plugins). The receiver is built the first time Airflow reads `fastapi_apps` in the
# api-server (`airflow api-server`, as the edge3 provider tells it) or in `airflow plugins`, which
# lists what plugins mount; any other process that reads the plugin's attributes (a scheduler, a
# triggerer, a worker, a DAG processor) gets no app.
"""``SmsOnlineWebhookPlugin``: the webhook receiver under ``/smsonline`` on Airflow's api-server."""

from __future__ import annotations

import logging
import sys
from typing import Any

from airflow.plugins_manager import AirflowPlugin

__all__ = ["SmsOnlineWebhookPlugin", "build_apps", "on_api_server"]

log = logging.getLogger(__name__)

_built: list[dict[str, Any]] | None = None


#: The Airflow commands whose process builds the receiver: the api-server mounts it, ``airflow
#: plugins`` lists it.
BUILT_BY = ("api-server", "plugins")


def on_api_server() -> bool:
    """Whether this process is Airflow's api-server (``airflow api-server``; its workers keep the
    command line), the only one that mounts plugin apps, or ``airflow plugins``, which lists them."""
    return len(sys.argv) > 1 and sys.argv[1] in BUILT_BY


def build_apps(config: Any = None) -> list[dict[str, Any]]:
    """The plugin's ``fastapi_apps``: the receiver, or nothing when no secret is configured.

    Built once per process; installs the token's log masking in this process.
    """
    global _built
    if _built is not None:
        return _built
    # built only on the api-server: every Airflow process imports this module (the plugin manager)
    from airflow_provider_smsonline.webhook import (
        URL_PREFIX,
        WebhookConfigError,
        configured_secret,
        webhook_token,
    )

    secret = configured_secret(config)
    if secret is None:
        log.info("SMS.online webhook receiver not mounted: [smsonline] webhook_secret is not set")
        _built = []
        return _built
    try:
        token = webhook_token(secret)
    except WebhookConfigError as error:  # a weak secret: refused, the rule named
        log.error(
            "SMS.online webhook receiver not mounted, the secret is refused: %s. Webhooks get 404 "
            "and the waits only poll until it is changed.",
            error,
        )
        _built = []
        return _built
    from airflow_provider_smsonline.webhook import logmask  # as above, on the api-server only
    from airflow_provider_smsonline.webhook.hints import HintWriter, VariableHintStore
    from airflow_provider_smsonline.webhook.receiver import WebhookReceiver

    logmask.install([token, secret])
    receiver = WebhookReceiver(token, HintWriter(VariableHintStore()))
    _built = [{"app": receiver, "url_prefix": URL_PREFIX, "name": "SMS.online webhook"}]
    return _built


class SmsOnlineWebhookPlugin(AirflowPlugin):
    """Mounts the SMS.online webhook receiver at ``/smsonline/webhook/<token>`` on the api-server,
    and the account page ("SMS.online" under Browse; its routes at ``/smsonline-account``).

    The receiver has no Airflow authentication (the token in the path is the credential), so
    expose only ``/smsonline/webhook/`` through your reverse proxy. The page's data routes take
    Airflow's login.
    """

    name = "smsonline_webhook"

    @property
    def fastapi_apps(self) -> list[dict[str, Any]]:  # type: ignore[override]  # api-server only
        """The receiver (built on first read, without a valid ``[smsonline] webhook_secret`` none)
        and the account page's routes (:mod:`airflow_provider_smsonline.account`), on the
        api-server (and in ``airflow plugins``); ``[]`` in any other process."""
        if not on_api_server():
            return []
        from airflow_provider_smsonline import account

        return build_apps() + account.plugin_fastapi_apps()

    @property
    def react_apps(self) -> list[dict[str, Any]]:  # type: ignore[override]  # api-server only
        """The account page, "SMS.online" under Browse in the navigation."""
        from airflow_provider_smsonline import account

        return account.plugin_react_apps()
