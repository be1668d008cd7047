# The trigger that waits for an activation's code in the triggerer, on the rent trigger's loop.
# Light at import: the class (and airflow.triggers.base with it) loads on first use.
"""Wait for an activation's code without holding a worker.

:class:`ActivationCodeTrigger` polls getStatus from the triggerer and fires one event; which
code it fires for is :func:`airflow_provider_smsonline.protocol.code_of`'s rule, the one
:class:`~airflow_provider_smsonline.sensors.activation.ActivationCodeSensor` uses too.
Importing this module is cheap (see :mod:`airflow_provider_smsonline.triggers.rent`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from airflow_provider_smsonline.triggers._lazy import lazy_names

if TYPE_CHECKING:
    from airflow_provider_smsonline.triggers._activation import ActivationCodeTrigger

__all__ = ["ActivationCodeTrigger"]

__getattr__, __dir__ = lazy_names(
    globals(), {"ActivationCodeTrigger": "airflow_provider_smsonline.triggers._activation"}
)
