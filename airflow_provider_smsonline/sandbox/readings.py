# Where SMS.online's pages contradict themselves (or a peer), the sandbox plays one reading at a
# time; each is a switch, its default the strictest documented one, so that nothing passes on the
# reading that happens to suit the client. Plain data, standard library only.
"""The readings of SMS.online's self-contradicting pages that the sandbox can play.

.. list-table::
   :header-rows: 1

   * - switch
     - readings (default first)
   * - ``webhook_param``: the name getRentNumber reads a rental's webhook URL under
     - ``uri`` (the webhooks page: "as a ``uri`` parameter"); ``url`` (the peers' name; the
       getRentNumber page shows no names)
   * - ``rent_list``: what getRentList needs and answers
     - ``id-one`` (the parameter table: an id is required, and only that rental is listed);
       ``id-all`` (an id is required, the whole list is answered); ``no-id`` (the prose: every
       active rental, no id needed)
   * - ``resend_status``: getStatus's "waiting for SMS to be resent"
     - ``STATUS_WAIT_RESEND`` (a public SMS.online client's spelling); ``STATUS_WAIT_RETRY`` (the peers')
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

from airflow_provider_smsonline.sandbox.inputs import one_of

#: Each switch's readings, the default (the strictest documented one) first.
CHOICES: dict[str, tuple[str, ...]] = {
    "webhook_param": ("uri", "url"),
    "rent_list": ("id-one", "id-all", "no-id"),
    "resend_status": ("STATUS_WAIT_RESEND", "STATUS_WAIT_RETRY"),
}


@dataclass(frozen=True)
class Readings:
    """Which reading of each contradiction the sandbox plays (see the module's table).

    :ivar webhook_param: ``uri`` or ``url``.
    :ivar rent_list: ``id-one``, ``id-all`` or ``no-id``.
    :ivar resend_status: ``STATUS_WAIT_RESEND`` or ``STATUS_WAIT_RETRY``.
    """

    webhook_param: str = CHOICES["webhook_param"][0]
    rent_list: str = CHOICES["rent_list"][0]
    resend_status: str = CHOICES["resend_status"][0]

    def __post_init__(self) -> None:
        for name, choices in CHOICES.items():
            one_of(getattr(self, name), name, choices)

    @property
    def rent_list_needs_id(self) -> bool:
        """Whether getRentList without an id is refused."""
        return self.rent_list != "no-id"

    def to_json(self) -> dict[str, Any]:
        """The readings as JSON-able data."""
        return {f.name: getattr(self, f.name) for f in fields(self)}

    @classmethod
    def of(cls, value: Readings | dict[str, Any] | None) -> Readings:
        """``value`` as readings: ``None`` the defaults, a dict of some switches, or readings."""
        if value is None:
            return cls()
        if isinstance(value, Readings):
            return value
        unknown = set(value) - set(CHOICES)
        if unknown:
            raise ValueError(
                f"readings has no switch {sorted(unknown)[0]!r} (switches: {', '.join(CHOICES)})"
            )
        return cls(**value)


#: The strictest documented reading of every switch: the sandbox's default.
STRICTEST = Readings()
