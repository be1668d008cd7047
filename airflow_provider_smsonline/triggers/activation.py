# The trigger that waits for an activation's code in the triggerer, on the rent trigger's async
# path. Light at import: the class (and airflow.triggers.base with it) loads on first use.
"""Wait for an activation's code without holding a worker.

:class:`ActivationCodeTrigger` polls getStatus from the triggerer and fires one event;
:func:`code_of` is the rule it and
:class:`~airflow_provider_smsonline.sensors.activation.ActivationCodeSensor` share.
Importing this module is cheap (see :mod:`airflow_provider_smsonline.triggers.rent`).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from airflow_provider_smsonline.protocol import code_of
    from airflow_provider_smsonline.triggers._activation import ActivationCodeTrigger

__all__ = ["ActivationCodeTrigger", "code_of"]

_LAZY = {
    "ActivationCodeTrigger": "airflow_provider_smsonline.triggers._activation",
    "code_of": "airflow_provider_smsonline.protocol",
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
