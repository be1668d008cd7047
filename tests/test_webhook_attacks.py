# The receiver under its own token, as someone who learned its URL would attack it, and the
# activation webhook beside the rental one: ids of 1 to 18 ASCII digits only; the hint Variable
# bounded, read off the trigger loop and only when it changed; looks driven by hints that never
# stack; a flood for one id that leaves the rate to the others; WebSockets closed without an
# error; weak secrets refused; the token masked in every field of a log line; the receiver built
# on the api-server only. Each test fails when its fix is taken out.
from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlencode

import pytest

from airflow_provider_smsonline.sandbox import Sandbox
from airflow_provider_smsonline.sandbox.documented import INTEGER, SMS_DATE, Text, mismatches
from airflow_provider_smsonline.webhook import WebhookConfigError, news, webhook_token
from airflow_provider_smsonline.webhook.hints import (
    ACTIVATION,
    HINT_RING,
    MAX_HINTS_BYTES,
    RENTAL,
    HintWriter,
    encode_hints,
    merge_hints,
)
from airflow_provider_smsonline.webhook.logmask import TokenMaskFilter, install
from airflow_provider_smsonline.webhook.receiver import RateLimit, WebhookReceiver
from tests.test_webhook import BODY, SECRET, TOKEN, Hook, MemoryStore, post

ACTIVATION_BODY = {
    "activationId": 700123,
    "service": "go",
    "text": "Your code 12345",
    "code": "12345",
    "country": 0,
    "receivedAt": "2025-01-01 12:00:00",
}


@contextlib.contextmanager
def kept_logs(name: str, level: int = logging.INFO) -> Iterator[list[str]]:
    """The lines ``name`` logs in the block (a handler of its own: Airflow's logging setup may
    replace the root's handlers when its config first loads)."""
    lines: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            lines.append(record.getMessage())

    logger, keep = logging.getLogger(name), Keep(level)
    saved = logger.level
    logger.addHandler(keep)
    logger.setLevel(min(level, saved or level))
    try:
        yield lines
    finally:
        logger.removeHandler(keep)
        logger.setLevel(saved)


@pytest.fixture
def store() -> MemoryStore:
    return MemoryStore()


@pytest.fixture
def app(store: MemoryStore) -> WebhookReceiver:
    return WebhookReceiver(TOKEN, HintWriter(store, interval=0.01))


# ----------------------------------------------------------------------------- the activation webhook


def test_the_activation_webhook_as_documented_records_a_hint_for_its_activation(
    app: WebhookReceiver, store: MemoryStore
) -> None:
    status, answer, _, _ = post(app, json.dumps(ACTIVATION_BODY).encode())
    assert (status, answer) == (200, {"status": "ok"})
    assert store.adds == [{(ACTIVATION, 700123)}]


def test_the_activation_webhook_form_encoded_is_accepted_too(
    app: WebhookReceiver, store: MemoryStore
) -> None:
    assert post(app, urlencode(ACTIVATION_BODY).encode())[0] == 200
    assert store.adds == [{(ACTIVATION, 700123)}]


@pytest.mark.parametrize(
    "body",
    [
        {**ACTIVATION_BODY, "rentId": 1},  # both: which is it?
        {k: v for k, v in ACTIVATION_BODY.items() if k != "code"},  # a post per code, without one
        {**ACTIVATION_BODY, "code": ""},
    ],
)
def test_an_activation_webhook_without_its_shape_is_400(
    app: WebhookReceiver, store: MemoryStore, body: dict[str, Any]
) -> None:
    status, answer, _, _ = post(app, json.dumps(body).encode())
    assert status == 400 and "activationId" in answer["error"] and store.adds == []


# ----------------------------------------------------------------------------- ids: 1 to 18 ASCII digits


def _rent_body(raw_id: str) -> str:
    """A rental webhook whose rentId is ``raw_id``, written into the JSON as is."""
    sms = '{"phoneFrom": 7, "text": "x", "date": "2025-01-01 12:00:00"}'
    return f'{{"rentId": {raw_id}, "sms": {sms}}}'


BAD_IDS = [
    "1.5",  # a fraction
    "true",  # a bool
    '"-5"',  # a sign
    '"+7"',
    "-5",
    '" 7"',  # a space
    '"7 "',
    '"\u0661\u0662\u0663"',  # Arabic-Indic digits: int() reads them as 123
    '"\uff11\uff12\uff13"',  # full-width digits
    '"\u00b2"',  # a superscript two
    "1" * 19,  # 19 digits
    "1" * 4000,  # 4,000 digits: each would grow the hint Variable by 4 KB
    '"' + "1" * 4000 + '"',
    '""',
    "null",
    "1e3",
]


@pytest.mark.parametrize("field", ["rentId", "activationId"])
@pytest.mark.parametrize("raw", BAD_IDS)
def test_an_id_that_is_not_1_to_18_ascii_digits_is_400_and_records_nothing(
    app: WebhookReceiver, store: MemoryStore, field: str, raw: str
) -> None:
    if field == "rentId":
        body = _rent_body(raw)
    else:
        body = json.dumps({**ACTIVATION_BODY, "activationId": 0})
        body = body.replace('"activationId": 0', f'"activationId": {raw}')
    status, _, _, _ = post(app, body.encode())
    assert status in (400, 413) and store.adds == []  # 413: 4,000 digits and the rest pass 4 KiB


@pytest.mark.parametrize("field", ["rentId", "activationId"])
@pytest.mark.parametrize("raw", ["-5", "+7", "1.5", "\u0661\u0662", "1" * 19])
def test_a_form_encoded_id_that_is_not_1_to_18_ascii_digits_is_400(
    app: WebhookReceiver, store: MemoryStore, field: str, raw: str
) -> None:
    fields = {**ACTIVATION_BODY} if field == "activationId" else {"rentId": 1, "sms[text]": "x"}
    fields |= {"sms[date]": "2025-01-01 12:00:00"} if field == "rentId" else {}
    fields[field] = raw
    assert post(app, urlencode(fields).encode())[0] == 400 and store.adds == []


@pytest.mark.parametrize(("raw", "expected"), [("0", 0), ('"42"', 42), ('"007"', 7), ("9" * 18, 10**18 - 1)])
def test_ids_of_1_to_18_ascii_digits_are_taken(
    app: WebhookReceiver, store: MemoryStore, raw: str, expected: int
) -> None:
    body = _rent_body(raw)
    assert post(app, body.encode())[0] == 200 and store.adds == [{(RENTAL, expected)}]


def test_the_hint_document_of_the_longest_ids_stays_within_its_byte_bound() -> None:
    document = None
    for start in range(0, 3 * HINT_RING, 500):  # far more hints than the ring keeps
        keys = [(ACTIVATION if n % 2 else RENTAL, 10**18 - 1 - n) for n in range(start, start + 500)]
        document = merge_hints(document, keys, at=1_733_140_000.123)
    assert len(encode_hints(document)) <= MAX_HINTS_BYTES
    assert merge_hints(None, [(RENTAL, 10**18)], at=1.0)["hints"] == []  # past 18 digits: left out


# ----------------------------------------------------------------------------- the triggerer's reader


class Text_:
    """A hint Variable's text, counting reads."""

    def __init__(self, text: str | None) -> None:
        self.text = text
        self.reads = 0

    async def __call__(self) -> str | None:
        self.reads += 1
        return self.text


async def _watch_for(seconds: float, reader: news.HintReader, rent_id: int = 1) -> None:
    task = asyncio.create_task(reader.wait(rent_id, seconds, sleep=asyncio.sleep))
    await asyncio.sleep(seconds)
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


def test_a_variable_over_the_byte_bound_is_not_parsed_and_read_again_only_after_a_pause() -> None:
    # 8 MB, as 50 s of 4,000-digit ids made it: the triggerer used to parse it twice a second.
    huge = Text_(json.dumps({"v": 1, "seq": 1, "hints": [[1, int("9" * 4000), 1.0]] * 2000}))
    reader = news.HintReader(huge, interval=0.05)
    with kept_logs(news.__name__, logging.WARNING) as lines:
        asyncio.run(_watch_for(1.0, reader))
    assert reader.parsed == 0 and huge.reads == 1  # the next read is OVERSIZED_PAUSE away
    assert any("not read (delete it" in line for line in lines) and news.OVERSIZED_PAUSE >= 10


def test_the_reader_parses_off_the_event_loop_and_only_a_text_that_changed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    source = Text_(encode_hints(merge_hints(None, [(RENTAL, 5)], time.time())))
    parsed_on: list[int] = []
    real = news.read_hints

    def spy(text: str | None) -> Any:
        parsed_on.append(threading.get_ident())
        return real(text)

    monkeypatch.setattr(news, "read_hints", spy)
    reader = news.HintReader(source, interval=0.05)
    asyncio.run(_watch_for(1.0, reader))
    assert source.reads >= 10  # read twenty times a second here...
    assert len(parsed_on) == 1  # ...parsed once: it never changed
    assert threading.get_ident() not in parsed_on  # in a thread, not on the loop


# ----------------------------------------------------------------------------- looks driven by hints


@pytest.fixture
def flood(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    monkeypatch.setattr(news, "RECHECKS", (0.2, 0.5))
    holder: dict[str, Any] = {"document": None}

    async def source() -> str | None:
        return None if holder["document"] is None else encode_hints(holder["document"])

    def hint(*keys: tuple[str, int]) -> None:
        holder["document"] = merge_hints(holder["document"], keys, time.time())

    news.configure(enabled=True, source=source, interval=0.02)
    yield hint
    news.configure()


async def _looks(rent_id: int, seconds: float, during: Any) -> int:
    """How many times a wait on ``rent_id`` that never finds anything is woken in ``seconds``."""
    await news.wait_for_news(rent_id, 0.001)  # the wait is registered
    woken = 0
    started = time.monotonic()
    feeder = asyncio.create_task(during())
    while (left := seconds - (time.monotonic() - started)) > 0:
        if await news.wait_for_news(rent_id, left):
            woken += 1
    feeder.cancel()
    return woken


def test_one_forged_post_costs_a_wait_at_most_three_looks(flood: Any) -> None:
    async def once() -> None:
        flood((RENTAL, 9))

    assert asyncio.run(_looks(9, 1.2, once)) == 3  # at once, then the two re-checks, then none


def test_a_flood_of_forged_posts_for_one_rental_never_stacks_looks(flood: Any) -> None:
    async def forever() -> None:
        while True:
            flood((RENTAL, 9))
            await asyncio.sleep(0.01)

    looks = asyncio.run(_looks(9, 2.0, forever))
    # Episodes of at most 3 looks, each lasting the last re-check (0.5 s here): at most 3 per 0.5 s.
    assert looks <= 3 * (2.0 / 0.5 + 1), looks


def test_a_look_that_found_the_sms_ends_the_episode_and_the_next_post_looks_at_once(flood: Any) -> None:
    async def main() -> list[float]:
        await news.wait_for_news(4, 0.001)
        flood((RENTAL, 4))
        started = time.monotonic()
        assert await news.wait_for_news(4, 1.0)
        wakes = []
        flood((RENTAL, 4))  # a second SMS right after the first was found
        if await news.wait_for_news(4, 1.0, found=True):
            wakes.append(time.monotonic() - started)
        return wakes

    wakes = asyncio.run(main())
    assert len(wakes) == 1 and wakes[0] < 0.2  # not held back by the first episode


def test_a_post_that_came_while_the_look_was_made_is_looked_at_once_it_is_reported(flood: Any) -> None:
    # SMS 1's look found it; SMS 2's post came while the wait was still firing and recording
    # SMS 1 (before it said found=True): the next look must not wait for the 600 s poll.
    async def main() -> tuple[bool, float]:
        await news.wait_for_news(4, 0.001)
        flood((RENTAL, 4))
        assert await news.wait_for_news(4, 1.0)  # SMS 1's look
        flood((RENTAL, 4))  # SMS 2's post, read while SMS 1 is being fired
        await asyncio.sleep(0.3)  # past the first re-check, before the last: the wait was busy
        started = time.monotonic()
        woke = await news.wait_for_news(4, 5.0, found=True)  # SMS 1 found and recorded
        return woke, time.monotonic() - started

    woke, took = asyncio.run(main())
    assert woke and took < 0.1


def test_a_post_that_joined_an_episode_gets_re_checks_of_its_own(flood: Any) -> None:
    # A second SMS's post came during the first's episode; its SMS may show only after that
    # episode's last re-check: the last re-check starts its episode, with its own re-checks.
    async def main() -> list[float]:
        await news.wait_for_news(6, 0.001)
        flood((RENTAL, 6))
        started = time.monotonic()
        wakes = []

        async def second_post() -> None:
            await asyncio.sleep(0.3)
            flood((RENTAL, 6))

        poster = asyncio.create_task(second_post())
        while (left := 1.3 - (time.monotonic() - started)) > 0:
            if await news.wait_for_news(6, left):
                wakes.append(round(time.monotonic() - started, 2))
        await poster
        return wakes

    wakes = asyncio.run(main())
    assert len([t for t in wakes if t > 0.55]) >= 2, wakes  # 0.7 and 1.0: the second post's re-checks


def test_forged_posts_for_a_watched_rental_cost_at_most_one_episode_of_get_rent_status(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from airflow_provider_smsonline.triggers import events
    from airflow_provider_smsonline.triggers.events import SmsReceivedTrigger
    from tests.conftest import CANARY_KEY, connection_env
    from tests.test_webhook_waits import MemoryRecords, polls, rent, until

    holder: dict[str, Any] = {"document": None}

    async def source() -> str | None:
        return None if holder["document"] is None else encode_hints(holder["document"])

    with Sandbox(port=0, api_key=CANARY_KEY) as sandbox:
        monkeypatch.setenv("AIRFLOW_CONN_SMSONLINE_DEFAULT", connection_env(host=sandbox.url, timeout=5))
        monkeypatch.setattr(events, "_records", MemoryRecords())
        news.configure(enabled=True, source=source, interval=0.1)
        rent_id = rent(sandbox)

        async def main() -> int:
            async def watch() -> None:
                async for _ in SmsReceivedTrigger(rent_id=rent_id, poll_interval=600).run():
                    raise AssertionError("a forged post fired an event")

            task = asyncio.create_task(watch())
            await until(lambda: polls(sandbox, rent_id) >= 1, 10)
            await asyncio.sleep(0.5)
            before, started = polls(sandbox, rent_id), time.monotonic()
            while time.monotonic() - started < 4.5:  # 45 forged posts within one episode (5 s)
                holder["document"] = merge_hints(holder["document"], [(RENTAL, rent_id)], time.time())
                await asyncio.sleep(0.1)
            task.cancel()
            return polls(sandbox, rent_id) - before

        try:
            looks = asyncio.run(asyncio.wait_for(main(), 60))
        finally:
            news.configure()
    assert looks == 2  # at once and the 1.5 s re-check; the 5 s one was not due yet


# ----------------------------------------------------------------------------- the rate under a flood


async def _post_many(app: WebhookReceiver, bodies: list[bytes]) -> list[int]:
    """Posts on one event loop, as one api-server worker takes them (the writer keeps running)."""
    statuses = []
    path = f"/smsonline/webhook/{TOKEN}"
    for body in bodies:
        sent: list[dict[str, Any]] = []
        chunks = iter([body])

        async def receive(chunks: Iterator[bytes] = chunks) -> dict[str, Any]:
            return {"type": "http.request", "body": next(chunks, b""), "more_body": False}

        async def send(message: dict[str, Any], sent: list[dict[str, Any]] = sent) -> None:
            sent.append(message)

        scope = {"type": "http", "method": "POST", "path": path, "raw_path": path.encode(), "headers": []}
        await app(scope, receive, send)
        statuses.append(sent[0]["status"])
    await app.writer.drain()
    return statuses


def test_a_flood_of_posts_for_one_rental_leaves_the_rate_to_the_real_webhooks(store: MemoryStore) -> None:
    app = WebhookReceiver(TOKEN, HintWriter(store, interval=0.5), limit=RateLimit(rate=0.001, burst=5))
    flood = [BODY] * 2000  # rental 1049, as fast as one worker takes them, with the token
    real = [BODY.replace(b"1049", str(n).encode()) for n in (2001, 2002, 2003)]
    statuses = asyncio.run(_post_many(app, flood + real))
    assert statuses[-3:] == [200, 200, 200]
    assert set().union(*store.adds) == {(RENTAL, 1049), (RENTAL, 2001), (RENTAL, 2002), (RENTAL, 2003)}


# ----------------------------------------------------------------------------- WebSockets


def test_a_websocket_to_the_receiver_is_closed_with_403_and_no_error_log(
    caplog: pytest.LogCaptureFixture, store: MemoryStore
) -> None:
    import uvicorn

    from tests.airflow_server import free_port

    pytest.importorskip("websockets", reason="uvicorn speaks WebSocket with the websockets package")

    port = free_port()
    app = WebhookReceiver(TOKEN, HintWriter(store))
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="info", lifespan="on"))
    thread = threading.Thread(target=server.run, daemon=True)
    answers = []
    with caplog.at_level(logging.INFO):
        thread.start()
        deadline = time.monotonic() + 10
        while not server.started and time.monotonic() < deadline:
            time.sleep(0.02)
        try:
            for path in (f"/smsonline/webhook/{TOKEN}", "/smsonline/anything"):
                with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
                    sock.sendall(
                        f"GET {path} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                        "Sec-WebSocket-Version: 13\r\n\r\n".encode()
                    )
                    answers.append(sock.recv(200).split(b"\r\n", 1)[0])
        finally:
            server.should_exit = True
            thread.join(timeout=10)
    assert answers == [b"HTTP/1.1 403 Forbidden"] * 2
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR], caplog.text
    assert TOKEN not in caplog.text


# ----------------------------------------------------------------------------- the secret


@pytest.mark.parametrize("secret", ["a" * 16, "a" * 64, "ab" * 20, "0123456" * 5, "abcdefg" + "a" * 9])
def test_a_weak_secret_is_refused_saying_the_rule(secret: str) -> None:
    with pytest.raises(WebhookConfigError) as refused:
        webhook_token(secret)
    message = str(refused.value)
    assert "[smsonline] webhook_secret must be a string of at least 16 characters" in message
    assert "at least 8 of them different" in message and secret not in message


@pytest.mark.parametrize("secret", ["abcdefgh" * 2, SECRET, "0123456789abcdef"])
def test_a_secret_of_16_characters_8_of_them_different_is_taken(secret: str) -> None:
    assert len(webhook_token(secret)) == 32


def test_the_api_server_refuses_a_weak_secret_at_start_with_the_rule_in_its_log(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from airflow_provider_smsonline.webhook import plugin

    monkeypatch.setattr(sys, "argv", ["airflow", "api-server"])
    monkeypatch.setenv("AIRFLOW__SMSONLINE__WEBHOOK_SECRET", "a" * 16)
    monkeypatch.setattr(plugin, "_built", None)
    with kept_logs(plugin.__name__, logging.ERROR) as lines:
        apps = plugin.SmsOnlineWebhookPlugin().fastapi_apps
    assert [app for app in apps if app["url_prefix"] == "/smsonline"] == []  # no receiver (the page aside)
    [line] = lines
    assert "the secret is refused" in line and "at least 8 of them different" in line
    assert "a" * 16 not in line


def test_the_triggerer_reads_no_hints_with_a_weak_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIRFLOW__SMSONLINE__WEBHOOK_SECRET", "a" * 16)
    news.configure()
    try:
        assert asyncio.run(_reader_of_this_loop()) is None
    finally:
        news.configure()


async def _reader_of_this_loop() -> news.HintReader | None:
    return news.reader()


# ----------------------------------------------------------------------------- the token in logs


def test_the_token_in_an_x_request_id_is_masked_in_airflows_access_log() -> None:
    # Airflow 3.2+'s access middleware binds X-Request-Id as request_id in structlog's context,
    # merged into each event by the first processor: the mask must come after it.
    import structlog

    access_log = pytest.importorskip(
        "airflow.api_fastapi.common.http_access_log", reason="Airflow 3.2+ (3.1 logs through uvicorn)"
    )
    HttpAccessLogMiddleware = access_log.HttpAccessLogMiddleware

    captured: list[dict[str, Any]] = []

    def renderer(logger: Any, method: str, event_dict: Any) -> Any:
        captured.append(dict(event_dict))
        raise structlog.DropEvent

    before = structlog.get_config()
    structlog.configure(processors=[structlog.contextvars.merge_contextvars, renderer])
    app = WebhookReceiver(TOKEN, HintWriter(MemoryStore(), interval=0.01))
    try:
        install([TOKEN])
        path = f"/smsonline/webhook/{TOKEN}"
        scope = {
            "type": "http",
            "method": "POST",
            "path": path,
            "raw_path": path.encode(),
            "query_string": f"t={TOKEN}".encode(),
            "headers": [(b"x-request-id", TOKEN.encode())],
            "client": ("127.0.0.1", 5000),
        }
        chunks = iter([BODY])

        async def receive() -> dict[str, Any]:
            return {"type": "http.request", "body": next(chunks, b""), "more_body": False}

        async def send(message: dict[str, Any]) -> None:
            pass

        async def main() -> None:
            await HttpAccessLogMiddleware(app)(scope, receive, send)
            await app.writer.drain()

        asyncio.run(main())
    finally:
        structlog.configure(**before)
    [event] = [e for e in captured if e.get("event") == "request finished"]
    assert TOKEN not in json.dumps(event, default=str)
    assert event["request_id"] == "***" and event["path"] == "/smsonline/webhook/***"


def test_the_token_is_masked_in_a_stdlib_records_extras_and_traceback() -> None:
    record = logging.LogRecord("uvicorn.error", logging.ERROR, __file__, 1, "failed", None, None)
    record.request_id = TOKEN
    record.headers = [(b"x-request-id", TOKEN.encode())]
    try:
        raise RuntimeError(f"at /smsonline/webhook/{TOKEN}")
    except RuntimeError:
        record.exc_info = sys.exc_info()
    TokenMaskFilter([TOKEN]).filter(record)
    line = logging.Formatter("%(message)s %(request_id)s %(headers)s").format(record)
    assert TOKEN not in line and "/smsonline/webhook/***" in line


# ----------------------------------------------------------------------------- where the receiver is built

PLUGIN_PROBE = """
import sys
sys.argv = [sys.argv[0], sys.argv[1]]  # the command this process plays
from airflow import plugins_manager
for name in sorted(dir(plugins_manager)):  # everything a process may ask the plugin manager
    function = getattr(plugins_manager, name)
    if callable(function) and name.startswith(("get_", "integrate_", "ensure_", "initialize_", "load_")):
        try:
            function()
        except TypeError:
            pass
from airflow_provider_smsonline.webhook import plugin
print(plugin._built is not None, "airflow_provider_smsonline.webhook.receiver" in sys.modules)
"""


@pytest.mark.parametrize(
    ("command", "built"),
    [
        ("scheduler", False),
        ("triggerer", False),
        ("dag-processor", False),
        ("celery", False),
        ("api-server", True),
        ("plugins", True),  # it lists what plugins mount
    ],
)
def test_the_receiver_is_built_by_the_api_server_only(tmp_path: Any, command: str, built: bool) -> None:
    from airflow_provider_smsonline.testing import LocalAirflow

    env = LocalAirflow(home=tmp_path / "home", dags_folder=tmp_path).environ()
    env["AIRFLOW__SMSONLINE__WEBHOOK_SECRET"] = SECRET
    done = subprocess.run(
        [sys.executable, "-c", PLUGIN_PROBE, command],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().splitlines()[-1] == f"{built} {built}"


# ----------------------------------------------------------------------------- the sandbox posts it

ACTIVATION_WEBHOOK_SHAPE = {
    "activationId": INTEGER,
    "service": Text(),
    "text": Text(),
    "code": Text(),
    "country": INTEGER,
    "receivedAt": SMS_DATE,
}


def _settled(sandbox: Sandbox) -> dict[str, Any]:
    deadline = time.monotonic() + 10
    while sandbox.state()["webhooks"]["pending"] and time.monotonic() < deadline:
        time.sleep(0.05)
    return sandbox.state()["webhooks"]


def _activate(sandbox: Sandbox) -> int:
    import urllib.request

    query = urlencode({"api_key": sandbox.api_key, "action": "getNumber", "service": "tg", "country": 0})
    with urllib.request.urlopen(f"{sandbox.url}?{query}", timeout=10) as answer:
        return int(answer.read().decode().split(":")[1])


def test_the_sandbox_posts_the_documented_activation_webhook_once_per_code_to_the_profiles_url() -> None:
    import requests

    with Hook() as hook, Sandbox(port=0, utc_offset=3) as sandbox:
        activation = _activate(sandbox)
        sandbox.deliver_code(activation, "1111")  # no URL in the profile yet: nothing posted
        profile = requests.post(
            f"{sandbox.base_url}/sandbox/profile", json={"activation_webhook": hook.url}, timeout=5
        )
        assert profile.status_code == 200 and profile.json() == {"activation_webhook": hook.url}
        other = _activate(sandbox)
        answer = requests.post(
            f"{sandbox.base_url}/sandbox/activations/{other}/code",
            json={"code": "482913", "text": "Your code is 482913"},
            timeout=5,
        )
        assert answer.status_code == 200 and answer.json()["webhook"] is True
        webhooks = _settled(sandbox)
    assert webhooks["sent"] == 1 and webhooks["deliveries"][0]["activation_id"] == other
    [posted] = [json.loads(body) for body in hook.bodies]
    assert mismatches(ACTIVATION_WEBHOOK_SHAPE, posted) == []  # exactly the page's fields and types
    assert (posted["activationId"], posted["code"]) == (other, "482913")
    assert posted["text"] == "Your code is 482913"


def test_the_sandbox_profile_refuses_a_bad_url_and_drops_activation_webhooks_on_request() -> None:
    import requests

    with Hook() as hook, Sandbox(port=0, activation_webhook=hook.url, drop_webhooks=True) as sandbox:
        refused = requests.post(
            f"{sandbox.base_url}/sandbox/profile", json={"activation_webhook": "ftp://x"}, timeout=5
        )
        sandbox.deliver_code(_activate(sandbox), "2222")
        webhooks = _settled(sandbox)
        assert sandbox.activation_webhook == hook.url
    assert refused.status_code == 400 and refused.json()["field"] == "activation_webhook"
    assert (webhooks["sent"], webhooks["failed"], hook.bodies) == (0, 1, [])


def test_the_sandbox_command_line_takes_the_activation_webhook() -> None:
    from airflow_provider_smsonline.sandbox.__main__ import build_parser

    url = "http://127.0.0.1:8080/smsonline/webhook/x"
    assert build_parser().parse_args(["--activation-webhook", url]).activation_webhook == url
    assert build_parser().parse_args([]).activation_webhook is None
    with pytest.raises(SystemExit):
        build_parser().parse_args(["--activation-webhook", "not a url"])


def test_the_webhook_url_prints_in_one_line(tmp_path: Any) -> None:
    from airflow_provider_smsonline.testing import LocalAirflow

    env = LocalAirflow(home=tmp_path / "home", dags_folder=tmp_path).environ()
    env |= {"AIRFLOW__SMSONLINE__WEBHOOK_SECRET": SECRET, "AIRFLOW__API__BASE_URL": "https://af.example.com"}

    def run(**more: str) -> subprocess.CompletedProcess[str]:
        command = [sys.executable, "-m", "airflow_provider_smsonline.webhook"]
        return subprocess.run(command, env=env | more, capture_output=True, text=True, timeout=120)

    done = run()
    assert done.returncode == 0
    assert done.stdout.splitlines()[-1] == f"https://af.example.com/smsonline/webhook/{TOKEN}"
    weak = run(AIRFLOW__SMSONLINE__WEBHOOK_SECRET="a" * 16)
    assert weak.returncode == 1 and "at least 8 of them different" in weak.stderr
