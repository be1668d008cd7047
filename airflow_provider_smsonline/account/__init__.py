# The SMS.online account page in Airflow's UI: a React page in the navigation (Browse > SMS.online)
# and the routes it reads, mounted on the api-server only. Every Airflow process imports the
# plugin (webhook/plugin.py), which imports this module: it holds names and the two plugin entries
# only; the FastAPI app (app.py), the readers and the cache load when the api-server mounts them.
"""The page "SMS.online" in Airflow's navigation: balance, rentals, activations, spend.

Read-only: nothing on the page charges or releases. Its data routes take Airflow's own login
(the UI's token) and show a connection only to users who may read it; the page and its answers
never hold the API key. SMS.online is read at most once per :data:`SUMMARY_TTL` (balance and
activations) and :data:`RENTALS_TTL` (rentals and spend) per connection and api-server worker,
however many people look (see ``docs/account-page.rst``).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

__all__ = [
    "BUNDLE",
    "PAGE_NAME",
    "RENTALS_TTL",
    "SUMMARY_TTL",
    "URL_PREFIX",
    "URL_ROUTE",
    "page_enabled",
    "plugin_fastapi_apps",
    "plugin_react_apps",
]

#: Where the page's app is mounted on the api-server (beside the webhook's ``/smsonline``).
URL_PREFIX = "/smsonline-account"
#: The page's name in the navigation, and the global its bundle sets.
PAGE_NAME = "SMS.online"
#: The page's path in the UI: ``<base_url>/plugin/smsonline``.
URL_ROUTE = "smsonline"
#: The page's code, served by the app (plain JavaScript: no build step).
BUNDLE = "smsonline-account.js"
#: Seconds the balance and the active activations are kept before SMS.online is read again.
SUMMARY_TTL = 60.0
#: Seconds the rentals and the spend are kept before SMS.online is read again.
RENTALS_TTL = 300.0


def page_enabled(config: Any = None) -> bool:
    """``[smsonline] account_page`` (default ``True``): ``False`` mounts neither the page nor its routes."""
    if config is None:
        from airflow_provider_smsonline._compat import conf as config  # Airflow's config, when read
    try:
        return bool(config.getboolean("smsonline", "account_page", fallback=True))
    except Exception:  # an unreadable value: the default
        return True


_apps: list[dict[str, Any]] | None = None


def plugin_fastapi_apps() -> list[dict[str, Any]]:
    """The plugin's ``fastapi_apps`` entry for the page's routes (built once per process, on
    the api-server), or ``[]`` with ``[smsonline] account_page = False``."""
    global _apps
    if _apps is None:
        if not page_enabled():
            _apps = []
        else:
            from airflow_provider_smsonline.account.app import create_app

            _apps = [{"app": create_app(), "url_prefix": URL_PREFIX, "name": "SMS.online account page"}]
    return _apps


def plugin_react_apps(config: Any = None) -> list[dict[str, Any]]:
    """The plugin's ``react_apps`` entry: the page under Browse in the navigation; ``[]`` with
    ``[smsonline] account_page = False``.

    The code's URL is an absolute path under ``[api] base_url``'s path: Airflow 3.1.0's UI
    imports it as given (a relative one fails there), later ones resolve it against the page.
    """
    if config is None:
        from airflow_provider_smsonline._compat import conf as config  # Airflow's config, when read
    if not page_enabled(config):
        return []
    try:
        base_url = config.get("api", "base_url", fallback="/") or "/"
    except Exception:  # an unreadable value: the root
        base_url = "/"
    base_path = urlsplit(base_url).path.rstrip("/")
    return [
        {
            "name": PAGE_NAME,
            "bundle_url": f"{base_path}{URL_PREFIX}/static/{BUNDLE}",
            "destination": "nav",
            "category": "browse",
            "url_route": URL_ROUTE,
        }
    ]
