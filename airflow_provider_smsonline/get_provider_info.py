# What the package registers with Airflow: the hook, the connection form, operators and more.
"""Provider info read by Airflow's providers manager (entry point ``apache_airflow_provider``)."""

from __future__ import annotations

from typing import Any

#: Where the provider's documentation lives: the Sphinx docs built from ``docs/`` (``make docs``),
#: published on Read the Docs. The same URL is the package's ``Documentation`` Project-URL, which
#: Airflow 3.3 reads for the providers page.
DOCUMENTATION_URL = "https://airflow-provider-smsonline.readthedocs.io/en/stable/"

#: The how-to guides (``docs/howto/``), one per example DAG, as absolute URLs (a provider outside
#: Airflow's own docs tree has no ``/docs/...`` path to give).
HOW_TO_GUIDES = tuple(
    f"{DOCUMENTATION_URL}howto/{page}.html"
    for page in (
        "smsonline_rent_manual",
        "smsonline_verification_code",
        "smsonline_keep_number",
        "smsonline_one_time_code",
        "smsonline_inbox",
        "smsonline_taskflow",
    )
)


def get_provider_info() -> dict[str, Any]:
    """Return the provider-info dict Airflow reads (kebab-case keys), shaped as official providers
    shape theirs: ``versions`` lists this release, ``documentation-url`` the docs, and each
    integration names its external docs, how-to guides and tags."""
    from airflow_provider_smsonline import __version__

    return {
        "package-name": "airflow-provider-smsonline",
        "name": "SMS.online",
        "description": "Rent SMS.online virtual numbers, read their SMS, renew and release them.",
        "versions": [__version__],
        "documentation-url": DOCUMENTATION_URL,
        "integrations": [
            {
                "integration-name": "SMS.online",
                "external-doc-url": "https://sms.online/help/api-docs/getRentNumber",
                "how-to-guide": list(HOW_TO_GUIDES),
                "tags": ["service"],
            }
        ],
        "hooks": [
            {
                "integration-name": "SMS.online",
                "python-modules": ["airflow_provider_smsonline.hooks.smsonline"],
            }
        ],
        "operators": [
            {
                "integration-name": "SMS.online",
                "python-modules": [
                    "airflow_provider_smsonline.operators.rent",
                    "airflow_provider_smsonline.operators.activation",
                ],
            }
        ],
        "sensors": [
            {
                "integration-name": "SMS.online",
                "python-modules": [
                    "airflow_provider_smsonline.sensors.rent",
                    "airflow_provider_smsonline.sensors.activation",
                ],
            }
        ],
        "triggers": [
            {
                "integration-name": "SMS.online",
                "python-modules": [
                    "airflow_provider_smsonline.triggers.rent",
                    "airflow_provider_smsonline.triggers.activation",
                    "airflow_provider_smsonline.triggers.events",
                ],
            }
        ],
        "connection-types": [
            {
                "connection-type": "smsonline",
                "hook-class-name": "airflow_provider_smsonline.hooks.smsonline.SmsOnlineHook",
                "hook-name": "SMS.online",
                # Every text here is also in docs/connection.rst, word for word (tests/test_docs.py).
                "ui-field-behaviour": {
                    "hidden-fields": ["login", "schema"],
                    "relabeling": {"password": "API key", "host": "Endpoint"},
                    "placeholders": {
                        "host": "empty for https://api.sms.online/stubs/handler_api.php",
                        # Airflow 3.3.2's Test button sends port 0 for a connection without one
                        # and is refused (apache/airflow PR 73298 fixed it after 3.3.2).
                        "port": "443 (store a port: the Test button of Airflow 3.3.2 needs one)",
                        "password": "the API key from your SMS.online profile settings",
                    },
                },
                "conn-fields": {
                    "timeout": {
                        "label": "Timeout (seconds)",
                        "description": "Seconds a whole call may take, 0.1 to 3600: connecting (at most 10 "
                        "of them), sending, the status line, the headers and the body.",
                        "schema": {
                            "type": ["number", "null"],
                            "default": 30,
                            "minimum": 0.1,
                            "maximum": 3600,
                        },
                    },
                    "verify_ssl": {
                        "label": "Verify TLS certificates",
                        "description": "Turn off only for a test server: the key travels in every request, "
                        "and every hook logs a warning while it is off.",
                        "schema": {"type": ["boolean", "null"], "default": True},
                    },
                    "ca_bundle": {
                        "label": "CA bundle path",
                        "description": "A CA file to verify with instead of certifi's (e.g. behind a "
                        "TLS-inspecting proxy); it must exist, and contradicts turning verification off.",
                        "schema": {"type": ["string", "null"]},
                    },
                    "proxy": {
                        "label": "Proxy URL",
                        "description": "An http://, https:// or socks5:// proxy URL for every request.",
                        "schema": {"type": ["string", "null"]},
                    },
                    "server_timezone": {
                        "label": "Server time zone",
                        "description": "IANA zone the API's dates without an offset are read in (results "
                        "are always time-zone aware).",
                        "schema": {"type": ["string", "null"], "default": "UTC"},
                    },
                    "read_retries": {
                        "label": "Retries of reads",
                        "description": "0 to 10 retries of non-charging calls on server or network errors; "
                        "charging calls are never retried.",
                        "schema": {"type": ["integer", "null"], "default": 2, "minimum": 0, "maximum": 10},
                    },
                    "max_response_bytes": {
                        "label": "Largest answer (bytes)",
                        "description": "1024 to 67108864; larger answers are refused.",
                        "schema": {
                            "type": ["integer", "null"],
                            "default": 1048576,
                            "minimum": 1024,
                            "maximum": 67108864,
                        },
                    },
                },
            }
        ],
        # [smsonline]: read by the webhook receiver (api-server), webhook_url() and the triggerer.
        "config": {
            "smsonline": {
                "description": "SMS.online provider: the webhook that wakes the waits on a rental at once, "
                "and the SMS.online page in the UI.",
                "options": {
                    "webhook_secret": {
                        "description": "Secret from which the webhook URL's token is derived "
                        "(HMAC-SHA256; the URL never holds the secret). At least 16 characters, at "
                        "least 8 of them different (a weaker one is refused where it is read). Set it "
                        "on the api-server (which then mounts the receiver at /smsonline/webhook/), "
                        "the triggerer (which then reads the webhook's hints) and wherever the URL is "
                        "built (RentNumberOperator(webhook=True) on the workers). Empty: no webhook, "
                        "the waits poll.",
                        "version_added": "0.2.0",
                        "type": "string",
                        "example": "a-long-random-string-from-secrets.token_urlsafe",
                        "default": None,
                        "sensitive": True,
                    },
                    "account_page": {
                        "description": "Whether the api-server shows the page Browse > SMS.online (the "
                        "balance, rentals, activations and spend of each SMS.online connection a user may "
                        "read) and mounts its routes at /smsonline-account.",
                        "version_added": "0.2.0",
                        "type": "boolean",
                        "example": "False",
                        "default": "True",
                    },
                    "account_page_connections": {
                        "description": "Connection ids the SMS.online page shows besides those Airflow "
                        "lists (the metadata DB's and AIRFLOW_CONN_* variables of type smsonline), "
                        "comma-separated: for connections kept in a secrets backend.",
                        "version_added": "0.2.0",
                        "type": "string",
                        "example": "smsonline_team_a,smsonline_team_b",
                        "default": "",
                    },
                    "charge_lease": {
                        "description": "Charging calls on one SMS.online account take turns across "
                        "workers (a lease in an Airflow Variable, taken just before each charging call and "
                        "given back when its outcome is known), so that answers lost together never leave "
                        "task instances a person must sort out. False: charge without turns (the charge "
                        "ledger still never pays twice).",
                        "version_added": "0.2.0",
                        "type": "boolean",
                        "example": "False",
                        "default": "True",
                    },
                    "charge_lease_wait": {
                        "description": "Seconds a charging task waits for its account's turn before it "
                        "fails, charging nothing (a retryable failure: the task's retries apply).",
                        "version_added": "0.2.0",
                        "type": "float",
                        "example": "300",
                        "default": "120",
                    },
                },
            }
        },
    }
