# The errors the provider raises, grouped by what a caller does about them.
"""Errors raised by the SMS.online provider.

Every error is an :class:`SmsOnlineError` carrying ``.code``: the API's code as sent
(``"NO_NUMBERS"``, ``"BAD_KEY"`` …) or a provider code in lower case for failures that
never reached an API answer (``"transport"``, ``"bad_response"`` …). Catch at the level
you care about::

    SmsOnlineError
    ├── AccountError            the key or the account needs fixing (not retryable)
    │   └── BannedError         ``.banned_until`` says when the ban ends
    ├── InvalidRequestError     an argument needs fixing (not retryable)
    │   ├── MaxHoursExceededError  a renewal past the longest rental (``.max_hours``)
    │   └── PriceLimitError     the price is above the task's ``max_price`` (nothing charged)
    ├── NoNumbersError          out of stock right now (retryable)
    ├── RentalStateError        the rental cannot do that now (not retryable)
    │   ├── RentalNotFoundError
    │   ├── RentalExpiredError
    │   ├── ActivationNotFoundError  ``NO_ACTIVATION``
    │   └── CancelNotAllowedError
    │       └── EarlyCancelDeniedError  ``EARLY_CANCEL_DENIED``: too soon to cancel an activation
    ├── ServerError             the server or the network failed (retryable)
    │   └── TransportError      no usable answer arrived
    ├── OutcomeUnknownError     a charging call may have succeeded: check before retrying
    └── UnknownCodeError        a code this provider does not know (kept in ``.code``)

Messages never contain the API key.
"""

from __future__ import annotations

from datetime import datetime
from typing import ClassVar


class SmsOnlineError(Exception):
    """Base of every error the provider raises.

    :ivar code: the API's code as sent, or a lower-case provider code.
    :ivar http_status: the HTTP status of the answer, when there was one.
    """

    #: Whether a later attempt of the same call can succeed without anything being fixed.
    retryable: ClassVar[bool] = False

    def __init__(self, message: str, *, code: str, http_status: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.http_status = http_status

    def __str__(self) -> str:
        return f"{self.code}: {self.message}"

    def __reduce__(self):  # keep kwargs across pickling (multiprocessing, Airflow)
        return (_rebuild, (type(self), self.__dict__))


def _rebuild(cls: type[SmsOnlineError], state: dict) -> SmsOnlineError:
    error = cls.__new__(cls)
    Exception.__init__(error, state.get("message", ""))
    error.__dict__.update(state)
    return error


class AccountError(SmsOnlineError):
    """The API key or the account needs attention: bad key, inactive, blocked, no balance."""


class BannedError(AccountError):
    """The account is banned until :attr:`banned_until` (server time, ``None`` if unreadable)."""

    def __init__(
        self,
        message: str,
        *,
        code: str = "BANNED",
        banned_until: datetime | None = None,
        http_status: int | None = None,
    ) -> None:
        super().__init__(message, code=code, http_status=http_status)
        self.banned_until = banned_until


class InvalidRequestError(SmsOnlineError):
    """An argument was refused: action, service, country, operator, rent time, id or phone."""


class MaxHoursExceededError(InvalidRequestError):
    """``MAX_HOURS_EXCEED``: the renewal would pass the longest rental allowed; nothing was charged.

    :ivar max_hours: the limit the server gave (its ``info.max``), or ``None``.
    """

    max_hours: int | None = None


class NoNumbersError(SmsOnlineError):
    """No number is available for this service and country right now."""

    retryable = True


class RentalStateError(SmsOnlineError):
    """The rental exists (or existed) but cannot do what was asked in its current state."""


class RentalNotFoundError(RentalStateError):
    """No rental with this id belongs to the account (``NO_ID_RENT``)."""


class ActivationNotFoundError(RentalNotFoundError):
    """No activation with this id (``NO_ACTIVATION``)."""


class RentalExpiredError(RentalStateError):
    """The rental has ended: expired, finished, cancelled or revoked."""


class CancelNotAllowedError(RentalStateError):
    """The rental can no longer be cancelled (the refund window has closed)."""


class ServerError(SmsOnlineError):
    """The server failed or answered something that is not the protocol (HTML, garbage, 5xx)."""

    retryable = True


class TransportError(ServerError):
    """The request failed on the network (refused, reset, timed out) before a usable answer."""


class OutcomeUnknownError(SmsOnlineError):
    """A charging call left, and no usable answer came back: a rental may exist and be paid for.

    Never retry such a call blindly; reconcile first (see ``get_rent_list``).

    :ivar action: the charging action (``getRentNumber`` or ``continueRentNumber``).
    """

    def __init__(self, message: str, *, code: str, action: str, http_status: int | None = None) -> None:
        super().__init__(message, code=code, http_status=http_status)
        self.action = action


class UnknownCodeError(SmsOnlineError):
    """The API answered with a code this provider does not know; ``.code`` keeps it as sent."""

    retryable = True


class EarlyCancelDeniedError(CancelNotAllowedError):
    """An activation cannot be cancelled yet (``EARLY_CANCEL_DENIED``: its first minutes)."""


class PriceLimitError(InvalidRequestError):
    """The price is above the limit the caller set; nothing was charged.

    :ivar price: the price asked (the server's minimum for ``WRONG_MAX_PRICE``), if known.
    :ivar limit: the caller's limit, if known.
    """

    def __init__(
        self,
        message: str,
        *,
        code: str,
        price: object = None,
        limit: object = None,
        http_status: int | None = None,
    ) -> None:
        super().__init__(message, code=code, http_status=http_status)
        self.price = price
        self.limit = limit
