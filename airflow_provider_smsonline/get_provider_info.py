# What the package registers with Airflow: the hook, the connection form, operators and more.
"""Provider info read by Airflow's providers manager (entry point ``apache_airflow_provider``)."""

from __future__ import annotations

from typing import Any

#: Where the provider's documentation lives: the README of its source repository. The same URL
#: is the package's ``Documentation`` Project-URL, which Airflow 3.3 reads for the providers page.
DOCUMENTATION_URL = (
    "https://github.com/airflow-provider-smsonline/airflow-provider-smsonline/blob/main/README.md"
)

#: README sections that teach a task, as absolute URLs (a provider outside Airflow's own docs
#: tree has no ``/docs/...`` path to give).
HOW_TO_GUIDES = (
    f"{DOCUMENTATION_URL}#operators",
    f"{DOCUMENTATION_URL}#waiting-for-an-sms",
    f"{DOCUMENTATION_URL}#taskflow-the-hook-in-a-task",
    f"{DOCUMENTATION_URL}#connections-from-a-secrets-backend",
    f"{DOCUMENTATION_URL}#one-charging-task-at-a-time-a-pool",
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
                "ui-field-behaviour": {
                    "hidden-fields": ["login", "schema"],
                    "relabeling": {"password": "API key", "host": "Endpoint"},
                    "placeholders": {
                        "host": "https://api.sms.online/stubs/handler_api.php (empty for this default)",
                        "port": "empty for the endpoint's own port",
                        "password": "the API key from your SMS.online profile settings",
                    },
                },
                "conn-fields": {
                    "timeout": {
                        "label": "Timeout (seconds)",
                        "description": "Seconds to wait for each answer (connecting takes at most 10).",
                        "schema": {"type": ["number", "null"], "default": 30, "minimum": 0.1},
                    },
                    "verify_ssl": {
                        "label": "Verify TLS certificates",
                        "description": "Turn off only for a test server: the key travels in every request.",
                        "schema": {"type": ["boolean", "null"], "default": True},
                    },
                    "ca_bundle": {
                        "label": "CA bundle path",
                        "description": "A file of trusted CA certificates, for a TLS-inspecting proxy.",
                        "schema": {"type": ["string", "null"]},
                    },
                    "proxy": {
                        "label": "Proxy URL",
                        "description": "http(s):// or socks5:// proxy for every request.",
                        "schema": {"type": ["string", "null"]},
                    },
                    "server_timezone": {
                        "label": "Server time zone",
                        "description": "IANA zone in which the API writes dates without an offset.",
                        "schema": {"type": ["string", "null"], "default": "UTC"},
                    },
                    "read_retries": {
                        "label": "Retries of reads",
                        "description": "Retries of non-charging calls on server or network errors. "
                        "Charging calls are never retried.",
                        "schema": {"type": ["integer", "null"], "default": 2, "minimum": 0},
                    },
                    "max_response_bytes": {
                        "label": "Largest answer (bytes)",
                        "description": "Answers above this size are refused.",
                        "schema": {"type": ["integer", "null"], "default": 1048576, "minimum": 1024},
                    },
                },
            }
        ],
        # [smsonline]: read by the webhook receiver (api-server), webhook_url() and the triggerer.
        "config": {
            "smsonline": {
                "description": "SMS.online provider: the webhook that wakes the waits on a rental at once.",
                "options": {
                    "webhook_secret": {
                        "description": "Secret from which the webhook URL's token is derived "
                        "(HMAC-SHA256; the URL never holds the secret). At least 16 characters. Set it "
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
                },
            }
        },
    }
