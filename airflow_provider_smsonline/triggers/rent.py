# The trigger that waits for an SMS in the triggerer (pure asyncio, one shared HTTP pool), and
# the one rule, shared with the sensor, that picks the SMS a wait is for and reads its code.
# Light at import: the class (and airflow.triggers.base with it) loads on first use.
"""Wait for an SMS on a rental without holding a worker.

:class:`RentSmsTrigger` polls getRentStatus from the triggerer and fires one event.
:func:`find_sms_match` is the rule both it and
:class:`~airflow_provider_smsonline.sensors.rent.RentSmsSensor` use: of the SMS newer than
``since``, the newest whose text matches ``pattern``; its code is the pattern's first group
that matched, else the whole match; with no pattern any new SMS matches and the code is ``None``.

Importing this module is cheap: :class:`RentSmsTrigger` subclasses Airflow's ``BaseTrigger``,
whose module defines pydantic models (about 15 ms to import), so the class is loaded from a
private module the first time it is used. ``from airflow_provider_smsonline.triggers.rent import
RentSmsTrigger``, the triggerer's ``import_string`` of the classpath and
:meth:`RentSmsTrigger.serialize` all work as with a class defined here.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from airflow_provider_smsonline.protocol import (
        MAX_PAGES,
        PAGE_SIZE,
        SmsMatch,
        SmsWalk,
        find_sms_match,
        older_page_needed,
    )
    from airflow_provider_smsonline.triggers._rent import MAX_BACKOFF, RentSmsTrigger

__all__ = [
    "MAX_BACKOFF",
    "MAX_PAGES",
    "PAGE_SIZE",
    "RentSmsTrigger",
    "SmsMatch",
    "SmsWalk",
    "find_sms_match",
    "older_page_needed",
]

# name -> the module it is loaded from on first access
_LAZY = {
    "RentSmsTrigger": "airflow_provider_smsonline.triggers._rent",
    "MAX_BACKOFF": "airflow_provider_smsonline.triggers._rent",
    # the rule the sensor shares, re-exported from protocol
    "MAX_PAGES": "airflow_provider_smsonline.protocol",
    "PAGE_SIZE": "airflow_provider_smsonline.protocol",
    "SmsMatch": "airflow_provider_smsonline.protocol",
    "SmsWalk": "airflow_provider_smsonline.protocol",
    "find_sms_match": "airflow_provider_smsonline.protocol",
    "older_page_needed": "airflow_provider_smsonline.protocol",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY})
