# RentSmsTrigger and the async client, against a tiny HTTP server on 127.0.0.1 that answers
# getRentStatus from a script: what the triggerer sees, what it sends and how politely.
from __future__ import annotations

import asyncio
import importlib.metadata
import json
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta, timezone
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import pytest

from airflow_provider_smsonline import protocol
from airflow_provider_smsonline.exceptions import ServerError, TransportError
from airflow_provider_smsonline.hooks import async_client
from airflow_provider_smsonline.hooks.async_client import AsyncSmsOnlineClient
from airflow_provider_smsonline.protocol import find_sms_match
from airflow_provider_smsonline.triggers import rent as trigger_module
from airflow_provider_smsonline.triggers.rent import RentSmsTrigger
from tests.conftest import CANARY_KEY, assert_no_key, connection_env

SINCE = datetime(2025, 5, 10, 12, 0, 0, tzinfo=timezone.utc)
CODE_PATTERN = r"code:? (\d{4,8})"

Answer = Callable[[dict[str, str]], "tuple[int, str | bytes, dict[str, str]] | tuple[int, str | bytes]"]


def sms_body(*messages: tuple[str, datetime]) -> str:
    """A getRentStatus success body, newest first, as the API writes it."""
    values = {
        str(i): {"phoneFrom": "Telegram", "text": text, "service": "tg", "date": protocol.format_sms_date(at)}
        for i, (text, at) in enumerate(messages)
    }
    return json.dumps({"status": "success", "quantity": str(len(values)), "values": values})


def sequence(*answers: tuple[int, str]) -> Answer:
    """Answer each request with the next of ``answers``; the last one repeats."""
    remaining = list(answers)

    def answer(query: dict[str, str]) -> tuple[int, str]:
        return remaining.pop(0) if len(remaining) > 1 else remaining[0]

    return answer


class FakeSmsOnline:
    """An HTTP/1.1 keep-alive server on 127.0.0.1:0 in the test's event loop.

    :ivar requests: the query of every request, in order.
    :ivar connections: how many TCP connections clients opened.
    """

    def __init__(self, answer: Answer) -> None:
        self.answer = answer
        self.requests: list[dict[str, str]] = []
        self.connections = 0
        self.url = ""
        self._server: asyncio.base_events.Server | None = None

    async def __aenter__(self) -> FakeSmsOnline:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        port = self._server.sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{port}/stubs/handler_api.php"
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while True:
                request_line = await reader.readline()
                if not request_line:
                    return
                while (await reader.readline()) not in (b"\r\n", b"\n", b""):
                    pass
                query = dict(parse_qsl(urlsplit(request_line.split()[1].decode()).query))
                self.requests.append(query)
                status, body, *rest = self.answer(query)
                headers = rest[0] if rest else {}
                data = body.encode() if isinstance(body, str) else body
                head = f"HTTP/1.1 {status} X\r\nContent-Length: {len(data)}\r\n"
                head += "".join(f"{k}: {v}\r\n" for k, v in headers.items())
                writer.write(head.encode() + b"\r\n" + data)
                await writer.drain()
        except (ConnectionError, asyncio.CancelledError):
            return
        finally:
            writer.close()


@pytest.fixture
def use_server(monkeypatch: pytest.MonkeyPatch) -> Callable[[FakeSmsOnline], None]:
    """Point ``smsonline_default`` at a running FakeSmsOnline, with the canary key."""

    def point(server: FakeSmsOnline) -> None:
        monkeypatch.setenv("AIRFLOW_CONN_SMSONLINE_DEFAULT", connection_env(host=server.url, timeout=2))

    return point


@pytest.fixture
def sleeps(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[float]]:
    """The trigger's waits, recorded instead of waited."""
    waited: list[float] = []

    async def record(seconds: float) -> None:
        waited.append(seconds)
        await asyncio.sleep(0)

    from airflow_provider_smsonline.triggers import base

    monkeypatch.setattr(base, "_sleep", record)
    yield waited


def run_trigger(trigger: RentSmsTrigger) -> list[dict[str, Any]]:
    async def collect() -> list[dict[str, Any]]:
        return [event.payload async for event in trigger.run()]

    return asyncio.run(asyncio.wait_for(collect(), timeout=10))


def wait_with(answer: Answer, use_server: Callable[[FakeSmsOnline], None], **kwargs: Any) -> dict[str, Any]:
    """Run one trigger against a server answering ``answer``; its single event's payload."""

    async def main() -> list[dict[str, Any]]:
        async with FakeSmsOnline(answer) as server:
            use_server(server)
            trigger = RentSmsTrigger(**{"rent_id": 7, "smsonline_conn_id": "smsonline_default", **kwargs})
            return [event.payload async for event in trigger.run()]

    events = asyncio.run(asyncio.wait_for(main(), timeout=10))
    assert len(events) == 1
    return events[0]


# ----------------------------------------------------------------------------- serialization


def test_serialize_round_trips_to_the_same_trigger() -> None:
    trigger = RentSmsTrigger(
        7, "sms_conn", pattern=CODE_PATTERN, since=SINCE, poll_interval=3, jitter=0.2, timeout_at=SINCE
    )
    classpath, kwargs = trigger.serialize()

    module, _, name = classpath.rpartition(".")
    rebuilt = getattr(__import__(module, fromlist=[name]), name)(**json.loads(json.dumps(kwargs)))

    assert classpath == "airflow_provider_smsonline.triggers.rent.RentSmsTrigger"
    assert rebuilt.serialize() == (classpath, kwargs)
    assert kwargs["since"] == "2025-05-10T12:00:00+00:00"


def test_serialized_kwargs_hold_the_connection_id_and_never_the_key(smsonline_conn: str) -> None:
    _, kwargs = RentSmsTrigger(7, smsonline_conn, pattern=CODE_PATTERN).serialize()

    assert kwargs["smsonline_conn_id"] == "smsonline_default"
    assert_no_key(json.dumps(kwargs))


@pytest.mark.parametrize(
    ("field", "kwargs"),
    [
        ("rent_id", {"rent_id": -1}),
        ("pattern", {"pattern": "(unclosed"}),
        ("since", {"since": "yesterday"}),
        ("end_date", {"end_date": "soon"}),
        ("poll_interval", {"poll_interval": 0}),
        ("jitter", {"jitter": 1.5}),
        ("timeout_at", {"timeout_at": "never"}),
        ("passed_over", {"passed_over": "2025-05-10T12:00:00"}),
        ("passed_over", {"passed_over": ["yesterday"]}),
    ],
)
def test_bad_trigger_arguments_raise_value_error_naming_the_field(field: str, kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match=rf"^{field} "):
        RentSmsTrigger(**{"rent_id": 7, "smsonline_conn_id": "c", **kwargs})


# ----------------------------------------------------------------------------- the match rule


def _sms(text: str, at: datetime) -> protocol.Sms:
    return protocol.Sms(phone_from="Telegram", text=text, service="tg", date=at)


def test_code_is_the_first_group_of_the_pattern() -> None:
    match = find_sms_match([_sms("Telegram code: 48213", SINCE)], SINCE, CODE_PATTERN)
    assert match is not None and match.code == "48213"


def test_code_is_the_whole_match_when_the_pattern_has_no_group() -> None:
    match = find_sms_match([_sms("your code 4821", SINCE)], SINCE, r"\d{4}")
    assert match is not None and match.code == "4821"


def test_without_a_pattern_any_new_sms_matches_and_the_code_is_none() -> None:
    match = find_sms_match([_sms("hello", SINCE + timedelta(seconds=5))], SINCE, None)
    assert match is not None and match.sms.text == "hello" and match.code is None


def test_the_newest_matching_sms_wins() -> None:
    older = _sms("code: 1111", SINCE + timedelta(seconds=1))
    newer = _sms("code: 2222", SINCE + timedelta(seconds=9))
    match = find_sms_match([older, newer], SINCE, CODE_PATTERN)
    assert match is not None and match.code == "2222"


def test_an_sms_stamped_in_the_same_second_as_since_counts() -> None:
    since = SINCE + timedelta(microseconds=700_000)
    assert find_sms_match([_sms("code: 1234", SINCE)], since, CODE_PATTERN) is not None


def test_an_sms_from_before_since_never_matches() -> None:
    assert find_sms_match([_sms("code: 1234", SINCE - timedelta(seconds=1))], SINCE, CODE_PATTERN) is None


# ----------------------------------------------------------------------------- waiting


def test_yields_success_with_the_sms_and_its_code(use_server: Callable, sleeps: list[float]) -> None:
    at = SINCE + timedelta(minutes=1)
    payload = wait_with(
        sequence((200, sms_body(("Telegram code: 482913", at)))),
        use_server,
        pattern=CODE_PATTERN,
        since=SINCE,
    )

    assert payload == {
        "status": "success",
        "rent_id": 7,
        "code": "482913",
        "sms": {
            "phone_from": "Telegram",
            "text": "Telegram code: 482913",
            "service": "tg",
            "date": at.isoformat(),
        },
    }
    json.dumps(payload)  # JSON-able, as the triggerer stores it


def test_sms_from_before_since_are_ignored_until_a_new_one_arrives(
    use_server: Callable, sleeps: list[float]
) -> None:
    old = ("code: 1111", SINCE - timedelta(minutes=5))
    new = ("code: 2222", SINCE + timedelta(seconds=30))
    payload = wait_with(
        sequence((200, sms_body(old)), (200, sms_body(new, old))),
        use_server,
        pattern=CODE_PATTERN,
        since=SINCE,
    )

    assert payload["code"] == "2222"
    assert len(sleeps) == 1  # it waited once, past the old SMS


@pytest.mark.parametrize("server_offset_hours", [3, -5])
def test_sms_seen_when_the_wait_started_never_count_whatever_their_dates(
    use_server: Callable, sleeps: list[float], server_offset_hours: int
) -> None:
    from airflow_provider_smsonline import protocol

    shifted = SINCE + timedelta(hours=server_offset_hours)
    old = ("code: 1111", shifted + timedelta(minutes=5))  # "after" the start on a UTC+3 server
    new = ("code: 2222", shifted - timedelta(minutes=1))  # "before" it on a server behind UTC
    seen = [protocol.fingerprint(sms) for sms in protocol.parse_rent_status(200, sms_body(old))]
    payload = wait_with(
        sequence((200, sms_body(old)), (200, sms_body(new, old))),
        use_server,
        pattern=CODE_PATTERN,
        seen=seen,
    )

    assert payload["code"] == "2222"
    assert len(sleeps) == 1


def test_sms_that_do_not_match_the_pattern_are_ignored(use_server: Callable, sleeps: list[float]) -> None:
    ad = ("Big sale today!", SINCE + timedelta(seconds=10))
    code = ("code: 5555", SINCE + timedelta(seconds=20))
    payload = wait_with(
        sequence((200, sms_body(ad)), (200, sms_body(code, ad))),
        use_server,
        pattern=CODE_PATTERN,
        since=SINCE,
    )

    assert payload["code"] == "5555"
    assert len(sleeps) == 1


def test_status_wait_code_means_keep_waiting(use_server: Callable, sleeps: list[float]) -> None:
    wait_code = (200, json.dumps({"status": "error", "message": "STATUS_WAIT_CODE"}))
    sms = (200, sms_body(("code: 7777", SINCE + timedelta(seconds=1))))
    payload = wait_with(
        sequence(wait_code, (200, "STATUS_WAIT_CODE"), sms), use_server, pattern=CODE_PATTERN, since=SINCE
    )

    assert payload["status"] == "success" and payload["code"] == "7777"
    assert len(sleeps) == 2


def test_yields_expired_when_the_rental_dies(use_server: Callable, sleeps: list[float]) -> None:
    payload = wait_with(sequence((200, "RENT_DIE")), use_server, pattern=CODE_PATTERN)

    assert payload["status"] == "expired"
    assert payload["code"] == "RENT_DIE"
    assert "rental 7 has ended" in payload["message"]


def test_yields_expired_after_a_last_check_once_end_date_has_passed(
    use_server: Callable, sleeps: list[float]
) -> None:
    ended = datetime.now(timezone.utc) - timedelta(seconds=1)
    payload = wait_with(sequence((200, "STATUS_WAIT_CODE")), use_server, end_date=ended.isoformat())

    assert payload["status"] == "expired" and payload["code"] == "ended"
    assert sleeps == []


def test_yields_timeout_once_timeout_at_has_passed(use_server: Callable, sleeps: list[float]) -> None:
    gave_up = datetime.now(timezone.utc) - timedelta(seconds=1)
    payload = wait_with(sequence((200, "STATUS_WAIT_CODE")), use_server, timeout_at=gave_up.isoformat())

    assert payload["status"] == "timeout" and payload["code"] == "timeout"


def test_a_timeout_says_how_many_sms_were_passed_over_as_older_than_the_run_and_how_to_count_them(
    use_server: Callable, sleeps: list[float]
) -> None:
    gave_up = datetime.now(timezone.utc) - timedelta(seconds=1)
    older = [SINCE - timedelta(minutes=2), SINCE - timedelta(minutes=9)]
    payload = wait_with(
        sequence((200, "STATUS_WAIT_CODE")),
        use_server,
        pattern=CODE_PATTERN,
        seen=["0123456789abcdef"],
        passed_over=[date.isoformat() for date in older],
        timeout_at=gave_up.isoformat(),
    )

    assert payload["status"] == "timeout"
    assert payload["message"].endswith(
        "; 2 SMS matching the pattern were passed over as older than this DAG run (server dates "
        "2025-05-10T11:58:00+00:00, 2025-05-10T11:51:00+00:00, read in the connection's "
        "server_timezone); to count SMS from before the run, pass since, e.g. "
        'since="2025-05-10T11:51:00+00:00" (if those dates look hours off, the connection\'s '
        "server_timezone is not the server's zone)"
    )


def test_a_trigger_serialized_before_passed_over_existed_still_loads_and_waits(
    use_server: Callable, sleeps: list[float]
) -> None:
    # What a deferred task of the previous release left in the triggerer's table.
    old_kwargs = {
        "rent_id": 7,
        "smsonline_conn_id": "smsonline_default",
        "pattern": CODE_PATTERN,
        "since": None,
        "end_date": None,
        "seen": [],
        "poll_interval": 3.0,
        "jitter": 0.1,
        "timeout_at": None,
    }
    trigger = RentSmsTrigger(**old_kwargs)
    assert trigger.serialize()[1] == {**old_kwargs, "passed_over": None}
    payload = wait_with(sequence((200, sms_body(("code: 4242", SINCE)))), use_server, **old_kwargs)
    assert payload["code"] == "4242"


def test_backs_off_exponentially_on_server_errors_then_succeeds(
    use_server: Callable, sleeps: list[float]
) -> None:
    html = (502, "<html>Bad gateway</html>")
    sms = (200, sms_body(("code: 3030", SINCE)))
    payload = wait_with(
        sequence(html, html, (500, "SERVER_ERROR"), sms),
        use_server,
        pattern=CODE_PATTERN,
        since=SINCE,
        poll_interval=1,
        jitter=0,
    )

    assert payload["code"] == "3030"
    assert sleeps == [2.0, 4.0, 8.0]


def test_backoff_never_exceeds_five_minutes(use_server: Callable, sleeps: list[float]) -> None:
    failures = [(503, "")] * 12
    wait_with(
        sequence(*failures, (200, sms_body(("x", SINCE)))),
        use_server,
        since=SINCE,
        poll_interval=10,
        jitter=0,
    )

    assert max(sleeps) == trigger_module.MAX_BACKOFF == 300


def test_polls_at_the_interval_give_or_take_the_jitter(use_server: Callable, sleeps: list[float]) -> None:
    waiting = [(200, "STATUS_WAIT_CODE")] * 30
    wait_with(sequence(*waiting, (200, sms_body(("x", SINCE)))), use_server, poll_interval=10, jitter=0.1)

    assert all(9.0 <= s <= 11.0 for s in sleeps) and len(set(sleeps)) > 1


def test_bad_key_yields_an_error_event_without_the_key(use_server: Callable, sleeps: list[float]) -> None:
    payload = wait_with(sequence((200, "BAD_KEY")), use_server)

    assert payload["status"] == "error" and payload["code"] == "BAD_KEY"
    assert "API key was refused" in payload["message"]
    assert_no_key(json.dumps(payload))


def test_unknown_rental_yields_an_error_event(use_server: Callable, sleeps: list[float]) -> None:
    payload = wait_with(sequence((200, "NO_ID_RENT")), use_server)

    assert payload["status"] == "error" and payload["code"] == "NO_ID_RENT"


@pytest.mark.skipif(
    tuple(int(part) for part in importlib.metadata.version("apache-airflow").split(".")[:2]) < (3, 2),
    reason="Airflow 3.1 asks the task supervisor for a connection not found elsewhere; unit tests have none",
)
def test_a_missing_connection_yields_an_error_event(sleeps: list[float]) -> None:
    events = run_trigger(RentSmsTrigger(7, "no_such_connection"))

    assert events == [
        {
            "status": "error",
            "rent_id": 7,
            "message": "no connection 'no_such_connection'",
            "code": "no_connection",
        }
    ]


def test_the_trigger_sends_the_rental_id_and_the_key_only_in_the_query(
    use_server: Callable, sleeps: list[float]
) -> None:
    seen: list[dict[str, str]] = []

    def answer(query: dict[str, str]) -> tuple[int, str]:
        seen.append(query)
        return 200, sms_body(("code: 1234", SINCE))

    wait_with(answer, use_server, pattern=CODE_PATTERN)

    assert seen == [{"action": "getRentStatus", "id": "7", "page": "0", "size": "20", "api_key": CANARY_KEY}]


# ----------------------------------------------------------------------------- one pool per loop


def test_200_waiting_triggers_share_one_http_client_and_at_most_32_connections(
    use_server: Callable, monkeypatch: pytest.MonkeyPatch
) -> None:
    created: list[object] = []
    real_factory = async_client._new_http_client

    def counting_factory(config: Any) -> Any:
        created.append(config)
        return real_factory(config)

    monkeypatch.setattr(async_client, "_new_http_client", counting_factory)
    polls: dict[str, int] = {}

    def answer(query: dict[str, str]) -> tuple[int, str]:
        polls[query["id"]] = polls.get(query["id"], 0) + 1
        if polls[query["id"]] < 2:
            return 200, "STATUS_WAIT_CODE"
        return 200, sms_body((f"code: {query['id']}", SINCE))

    async def main() -> tuple[list[dict[str, Any]], int]:
        async with FakeSmsOnline(answer) as server:
            use_server(server)
            triggers = [
                RentSmsTrigger(1000 + i, pattern=CODE_PATTERN, poll_interval=0.01) for i in range(200)
            ]
            events = await asyncio.gather(*(_single_event(t) for t in triggers))
            return events, server.connections

    events, connections = asyncio.run(asyncio.wait_for(main(), timeout=15))

    assert [e["code"] for e in events] == [str(1000 + i) for i in range(200)]
    assert len(created) == 1
    assert connections <= async_client.MAX_CONNECTIONS


def test_the_shared_client_closes_after_the_last_trigger_ends(
    use_server: Callable, sleeps: list[float]
) -> None:
    async def main() -> bool:
        async with FakeSmsOnline(sequence((200, sms_body(("x", SINCE))))) as server:
            use_server(server)
            await asyncio.gather(*(_single_event(RentSmsTrigger(i)) for i in range(3)))
            return bool(async_client._POOLS.get(asyncio.get_running_loop()))

    assert asyncio.run(main()) is False


async def _single_event(trigger: RentSmsTrigger) -> dict[str, Any]:
    events = [event.payload async for event in trigger.run()]
    assert len(events) == 1
    return events[0]


# ----------------------------------------------------------------------------- the async client's safety


def _client_for(url: str, **overrides: Any) -> AsyncSmsOnlineClient:
    from airflow_provider_smsonline.policy import ClientConfig

    return AsyncSmsOnlineClient(ClientConfig(endpoint=url, api_key=CANARY_KEY, **overrides))


def _failure_of(url: str, answer: Answer | None = None, **overrides: Any) -> Exception:
    async def main() -> Exception:
        if answer is None:
            client = _client_for(url, **overrides)
        else:
            server = await FakeSmsOnline(answer).__aenter__()
            client = _client_for(server.url, **overrides)
        async with client:
            try:
                await client.get_rent_status(7)
            except Exception as error:
                return error
        raise AssertionError("no error raised")

    return asyncio.run(main())


def test_a_refused_connection_raises_transport_error_without_key_or_aiohttp_cause() -> None:
    error = _failure_of("http://127.0.0.1:1/stubs/handler_api.php")

    assert isinstance(error, TransportError) and error.code == "not_sent"
    assert "could not connect" in str(error)
    assert error.__cause__ is None and error.__context__ is None
    assert_no_key(str(error) + repr(error.__dict__))


def test_a_redirect_is_not_followed() -> None:
    error = _failure_of("", lambda q: (302, "", {"Location": "http://elsewhere.invalid/x"}))

    assert isinstance(error, ServerError) and error.code == "redirect"
    assert "elsewhere.invalid" in str(error)


def test_an_answer_larger_than_max_response_bytes_is_refused() -> None:
    error = _failure_of("", lambda q: (200, b"x" * 5000), max_response_bytes=1024)

    assert isinstance(error, TransportError)
    assert "exceeded 1024 bytes" in str(error)
    assert error.__context__ is None
