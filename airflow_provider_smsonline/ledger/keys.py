# The ledger's Variable names, in one place. Every name that depends on user-chosen ids (dag, task,
# run) ends in a digest of a JSON list of those ids, so that no two tasks or runs can share a name
# however their ids are spelled; the readable part before it is for people only.
"""Names of the charge ledger's Airflow Variables, and the account id claims are filed under."""

from __future__ import annotations

import hashlib
import hmac
import json
import re
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

#: Records: one Variable per task instance and run.
PREFIX = "smsonline_charge__"
#: Claims, intents and named rentals, per account.
CLAIM_PREFIX = "smsonline_rental__"
#: Airflow's Variable key column is ``String(ID_LEN)``, ID_LEN = 250 (airflow/models/base.py).
MAX_KEY_LENGTH = 250
#: Characters of the readable part of a record's name (the digests make it unambiguous).
READABLE_LENGTH = 100
_NOT_READABLE = re.compile(r"[^A-Za-z0-9._-]+")
# Before 0.2 the readable part turned "_" into "-" too; a retry across the upgrade reads that name.
_LEGACY_NOT_READABLE = re.compile(r"[^A-Za-z0-9.-]+")
#: A number's digest in the ledger's Variables starts with this (a number itself never does).
DIGEST_MARK = "#"


def _digest(parts: list[object], length: int = 16) -> str:
    text = json.dumps(parts, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode()).hexdigest()[:length]


def account_id(endpoint: str, api_key: str) -> str:
    """Where rental ids are unique: one account on one server, whichever connection holds it.

    A truncated SHA-256 of the endpoint (scheme and host lower-cased, default port dropped) and
    the API key: two connections holding the same key share it, and it does not reveal the key.
    """
    return digest_text(f"{_normal_endpoint(endpoint)}\n{api_key}", 20)


def digest_text(text: str, length: int) -> str:
    """The first ``length`` hex digits of the SHA-256 of ``text``."""
    return hashlib.sha256(text.encode()).hexdigest()[:length]


def _normal_endpoint(endpoint: str) -> str:
    endpoint = endpoint.strip()
    try:
        parts = urlsplit(endpoint)
        host, port = parts.hostname or "", parts.port
    except ValueError:
        return endpoint
    scheme = parts.scheme.lower()
    if port is not None and (scheme, port) not in (("http", 80), ("https", 443)):
        host = f"{host}:{port}"
    return urlunsplit((scheme, host, parts.path or "/", "", ""))


@dataclass(frozen=True)
class TaskRun:
    """One task instance in one run: whose record it is.

    :ivar dag_id: the DAG's id.
    :ivar task_id: the task's id.
    :ivar map_index: the map index, -1 for a task that is not mapped.
    :ivar run_id: the DAG run's id (the same for every try of the run).
    """

    dag_id: str
    task_id: str
    map_index: int
    run_id: str

    def _prefix(self, not_readable: re.Pattern[str]) -> str:
        readable = not_readable.sub("-", f"{self.dag_id}.{self.task_id}")[:READABLE_LENGTH]
        if self.map_index >= 0:
            readable = f"{readable}.{self.map_index}"
        return f"{PREFIX}{readable}__{_digest([self.dag_id, self.task_id, self.map_index])}__"

    @property
    def task_prefix(self) -> str:
        """The start of every record name of this task instance, whatever the run: the DAG's and
        the task's ids as written (characters other than letters, digits, ``.``, ``_`` and ``-``
        become ``-``), so that searching Variables for a DAG id finds its records."""
        return self._prefix(_NOT_READABLE)

    @property
    def record_key(self) -> str:
        """This run's record: ``smsonline_charge__<dag>.<task>[.<map>]__<digest>__<digest>``."""
        return self.task_prefix + self._run_digest

    @property
    def legacy_record_key(self) -> str:
        """The name this run's record had before 0.2 (``_`` written as ``-``), read by a retry
        whose earlier try ran on the release before."""
        return self._prefix(_LEGACY_NOT_READABLE) + self._run_digest

    @property
    def _run_digest(self) -> str:
        return _digest([self.dag_id, self.task_id, self.map_index, self.run_id])

    @property
    def index_key(self) -> str:
        """The list of this task instance's records, kept only where Airflow cannot list Variables."""
        return self.task_prefix[:-2]

    def same_task(self, parts: object) -> bool:
        """Whether ``parts`` (a record's ``task`` field) names this task instance, any run."""
        return isinstance(parts, list) and parts[:3] == [self.dag_id, self.task_id, self.map_index]

    def to_json(self) -> list[object]:
        """The JSON form a record carries: ``[dag_id, task_id, map_index, run_id]``."""
        return [self.dag_id, self.task_id, self.map_index, self.run_id]


def number_digest(secret: str, number: str) -> str:
    """What the ledger keeps of a phone number: a keyed digest (HMAC-SHA256 with the account's API
    key), which tells two numbers apart as well as the numbers do and cannot be turned back into
    one by anyone without the key; :data:`DIGEST_MARK` first. An empty number stays empty."""
    if not number:
        return ""
    mac = hmac.new(secret.encode("utf-8"), number.encode("utf-8"), hashlib.sha256).hexdigest()
    return DIGEST_MARK + mac[:20]


def claim_prefix(account: str) -> str:
    """The start of every claim, intent and named rental of ``account``."""
    return f"{CLAIM_PREFIX}{account}__"


def claim_key(account: str, rental_id: int) -> str:
    """``rental_id`` belongs to the record named in this Variable's ``owner``."""
    return f"{claim_prefix(account)}{rental_id}"


def named_key(account: str, rental_id: int) -> str:
    """``rental_id`` was named in a failure: nobody knows yet whose it is."""
    return f"{claim_prefix(account)}named__{rental_id}"


def namer_key(account: str, rental_id: int, record_key: str) -> str:
    """``rental_id`` was named in the failure of the record named ``record_key``: one per namer,
    so two failures naming one rental at once never overwrite each other's mark."""
    return f"{named_key(account, rental_id)}__{digest_text(record_key, 24)}"


def intent_prefix(account: str) -> str:
    """The start of every intent on ``account``."""
    return f"{claim_prefix(account)}pending__"


def intent_key(account: str, record_key: str) -> str:
    """The intent of the record named ``record_key``: a charging call whose answer is not in yet."""
    return intent_prefix(account) + digest_text(record_key, 24)


def is_intent_of(key: str, record_key: str) -> bool:
    """Whether ``key`` is the intent of the record named ``record_key`` (on any account)."""
    return key.startswith(CLAIM_PREFIX) and key.endswith("__pending__" + digest_text(record_key, 24))
