# Every form the API key can take in a URL or a text, and its removal: one place for both
# transports, the errors they raise and the log filter.
"""The API key's forms and their redaction."""

from __future__ import annotations

from urllib.parse import quote, quote_plus


def secret_forms(secret: str) -> tuple[str, ...]:
    """``secret`` as it may appear anywhere: raw, form-encoded and percent-encoded."""
    if not secret:
        return ()
    return tuple(dict.fromkeys((secret, quote_plus(secret), quote(secret, safe=""))))


def redact(text: str, secret: str | None) -> str:
    """``text`` with every form of ``secret`` replaced by ``***``."""
    for form in secret_forms(secret or ""):
        text = text.replace(form, "***")
    return text
