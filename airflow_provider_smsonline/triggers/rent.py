# The trigger that waits for an SMS in the triggerer (pure asyncio, one shared HTTP pool).
# Light at import: the class (and airflow.triggers.base with it) loads on first use.
"""Wait for an SMS on a rental without holding a worker.

:class:`RentSmsTrigger` polls getRentStatus from the triggerer and fires one event. Which SMS
it fires for is :func:`airflow_provider_smsonline.protocol.find_sms_match`'s rule, the one
:class:`~airflow_provider_smsonline.sensors.rent.RentSmsSensor` uses too: of the new SMS, the
newest whose text matches ``pattern``; its code is the pattern's first group that matched, else
the whole match; with no pattern any new SMS matches and the code is ``None``.

Importing this module is cheap: :class:`RentSmsTrigger` subclasses Airflow's ``BaseTrigger``,
whose module defines pydantic models (about 15 ms to import), so the class is loaded from a
private module the first time it is used. ``from airflow_provider_smsonline.triggers.rent import
RentSmsTrigger``, the triggerer's ``import_string`` of the classpath and
:meth:`RentSmsTrigger.serialize` all work as with a class defined here.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from airflow_provider_smsonline.triggers._lazy import lazy_names

if TYPE_CHECKING:
    from airflow_provider_smsonline.triggers._rent import RentSmsTrigger
    from airflow_provider_smsonline.triggers.base import MAX_BACKOFF

__all__ = ["MAX_BACKOFF", "RentSmsTrigger"]

__getattr__, __dir__ = lazy_names(
    globals(),
    {
        "RentSmsTrigger": "airflow_provider_smsonline.triggers._rent",
        "MAX_BACKOFF": "airflow_provider_smsonline.triggers.base",
    },
)
