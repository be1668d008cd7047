# The push path: the webhook URL and its token, the receiver's answers to good and bad posts, the
# token kept out of logs, the hint document and its coalescing writer, the triggerer's shared
# reader (bounded reads, wakes only the waits on the hinted rental, re-checks), the waits woken by
# it, and the sandbox's documented webhook and its switch to drop them.
from __future__ import annotations

import asyncio
import json
import logging
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlencode

import pytest

from airflow_provider_smsonline import webhook
from airflow_provider_smsonline.sandbox import Sandbox
from airflow_provider_smsonline.webhook import WebhookConfigError, news, webhook_token, webhook_url
from airflow_provider_smsonline.webhook import hints as hints_module
from airflow_provider_smsonline.webhook.hints import (
    HINT_RING,
    HintWriter,
    decode_hints,
    encode_hints,
    merge_hints,
)
from airflow_provider_smsonline.webhook.logmask import TokenMaskFilter, install
from airflow_provider_smsonline.webhook.receiver import RateLimit, WebhookReceiver

SECRET = "0123456789abcdef-the-webhook-secret"


def rental(rent_id: int) -> tuple[str, int]:
    return (hints_module.RENTAL, rent_id)


def activation(activation_id: int) -> tuple[str, int]:
    return (hints_module.ACTIVATION, activation_id)


TOKEN = webhook_token(SECRET)
BODY = json.dumps(
    {"rentId": 1049, "sms": {"phoneFrom": 79999999999, "text": "Sms text", "date": "2025-01-01 12:00:00"}}
).encode()


# ----------------------------------------------------------------------------- the token and the URL


def test_the_token_is_32_url_safe_characters_fixed_per_secret_and_never_the_secret() -> None:
    assert webhook_token(SECRET) == TOKEN and len(TOKEN) == 32
    assert set(TOKEN) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")
    assert webhook_token(SECRET + "x") != TOKEN
    assert SECRET not in TOKEN and SECRET[:16] not in TOKEN


@pytest.mark.parametrize("secret", ["", "short", " " * 40])
def test_a_short_secret_is_refused_naming_the_setting(secret: str) -> None:
    with pytest.raises(WebhookConfigError, match=r"\[smsonline\] webhook_secret must be .* at least 16"):
        webhook_token(secret)


def test_the_url_is_the_base_the_mount_and_the_token(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIRFLOW__SMSONLINE__WEBHOOK_SECRET", SECRET)
    url = webhook_url("https://airflow.example.com/")
    assert url == f"https://airflow.example.com/smsonline/webhook/{TOKEN}"
    assert SECRET not in url


def test_the_url_defaults_to_the_api_base_url(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIRFLOW__SMSONLINE__WEBHOOK_SECRET", SECRET)
    monkeypatch.setenv("AIRFLOW__API__BASE_URL", "https://af.example.com/airflow")
    assert webhook_url() == f"https://af.example.com/airflow/smsonline/webhook/{TOKEN}"


def test_no_secret_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AIRFLOW__SMSONLINE__WEBHOOK_SECRET", raising=False)
    with pytest.raises(WebhookConfigError, match=r"\[smsonline\] webhook_secret is not set"):
        webhook_url("https://airflow.example.com")


@pytest.mark.parametrize("base", ["", "ftp://example.com", "example.com", "https://x.com/?a=1"])
def test_a_bad_base_url_is_a_clear_error(monkeypatch: pytest.MonkeyPatch, base: str) -> None:
    monkeypatch.setenv("AIRFLOW__SMSONLINE__WEBHOOK_SECRET", SECRET)
    with pytest.raises(WebhookConfigError, match="base URL"):
        webhook_url(base)


# ----------------------------------------------------------------------------- the receiver


class MemoryStore:
    def __init__(self) -> None:
        self.adds: list[set[int]] = []

    def add(self, rent_ids: Any, at: float) -> None:
        self.adds.append(set(rent_ids))


def post(
    app: WebhookReceiver,
    body: bytes = BODY,
    *,
    token: str = TOKEN,
    method: str = "POST",
    headers: list[tuple[bytes, bytes]] | None = None,
    chunks: Iterator[bytes] | None = None,
    delay: float = 0.0,
) -> tuple[int, dict[str, Any], dict[str, Any], int]:
    """One request straight into the ASGI app: (status, JSON answer, the scope after, chunks read)."""
    path = f"/smsonline/webhook/{token}"
    scope = {
        "type": "http",
        "method": method,
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": b"",
        "headers": headers if headers is not None else [(b"content-length", str(len(body)).encode())],
    }
    stream = chunks if chunks is not None else iter([body])
    read = 0
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        nonlocal read
        await asyncio.sleep(delay)  # a network read yields to the loop
        chunk = next(stream, None)
        if chunk is None:
            return {"type": "http.request", "body": b"", "more_body": False}
        read += 1
        return {"type": "http.request", "body": chunk, "more_body": True}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    async def main() -> None:
        await app(scope, receive, send)
        await app.writer.drain()

    asyncio.run(main())
    return sent[0]["status"], json.loads(sent[1]["body"]), scope, read


@pytest.fixture
def store() -> MemoryStore:
    return MemoryStore()


@pytest.fixture
def app(store: MemoryStore) -> WebhookReceiver:
    return WebhookReceiver(TOKEN, HintWriter(store, interval=0.01))


def test_a_webhook_as_documented_is_accepted_and_records_a_hint_for_its_rental(
    app: WebhookReceiver, store: MemoryStore
) -> None:
    status, answer, _, _ = post(app)
    assert (status, answer) == (200, {"status": "ok"})
    assert store.adds == [{rental(1049)}]


def test_a_form_encoded_webhook_is_accepted_too(app: WebhookReceiver, store: MemoryStore) -> None:
    form = urlencode(
        {"rentId": 7, "sms[phoneFrom]": "79999999999", "sms[text]": "hi", "sms[date]": "2025-01-01 12:00:00"}
    )
    assert post(app, form.encode())[0] == 200
    assert store.adds == [{rental(7)}]


def test_a_wrong_token_is_404_and_records_nothing(app: WebhookReceiver, store: MemoryStore) -> None:
    status, answer, _, read = post(app, token=TOKEN[:-1] + ("A" if TOKEN[-1] != "A" else "B"))
    assert (status, answer) == (404, {"error": "not found"})
    assert store.adds == [] and app.writer.pending == 0 and read == 0


def test_another_path_is_404(app: WebhookReceiver, store: MemoryStore) -> None:
    status, _, _, _ = post(app, token="")
    assert status == 404 and store.adds == []


def test_a_get_with_the_right_token_is_405(app: WebhookReceiver, store: MemoryStore) -> None:
    assert post(app, method="GET")[0] == 405 and store.adds == []


def test_a_declared_oversized_body_is_413_without_reading_it(
    app: WebhookReceiver, store: MemoryStore
) -> None:
    status, answer, _, read = post(
        app, headers=[(b"content-length", b"2147483648")], chunks=iter([b"x"] * 10)
    )
    assert status == 413 and "4096" in answer["error"]
    assert read == 0 and store.adds == []


def test_a_streamed_oversized_body_is_413_after_reading_just_past_the_cap(
    app: WebhookReceiver, store: MemoryStore
) -> None:
    endless = iter(lambda: b"{" * 1024, None)  # a 2 GB body, as far as the receiver can tell
    status, _, _, read = post(app, headers=[], chunks=endless)
    assert status == 413 and read == 5 and store.adds == []


@pytest.mark.parametrize(
    "body",
    [b"{not json", b"[1, 2]", b'{"sms": {"text": "x"}}', b'{"rentId": "abc", "sms": {}}', b"rentId", b""],
)
def test_a_malformed_body_is_400_and_records_nothing(
    app: WebhookReceiver, store: MemoryStore, body: bytes
) -> None:
    status, answer, _, _ = post(app, body)
    assert status == 400 and "rentId" in answer["error"]
    assert store.adds == []


def test_a_negative_rent_id_is_400(app: WebhookReceiver, store: MemoryStore) -> None:
    assert post(app, BODY.replace(b"1049", b"-5"))[0] == 400 and store.adds == []


def test_a_burst_past_the_limit_is_429(store: MemoryStore) -> None:
    app = WebhookReceiver(TOKEN, HintWriter(store, interval=0.01), limit=RateLimit(rate=0.001, burst=3))
    assert [post(app)[0] for _ in range(5)] == [200, 200, 200, 429, 429]


def test_a_body_slower_than_the_deadline_is_408(store: MemoryStore) -> None:
    app = WebhookReceiver(TOKEN, HintWriter(store, interval=0.01), body_timeout=0.2)
    status, _, _, _ = post(app, headers=[], chunks=iter([b"{"] * 100), delay=0.05)
    assert status == 408 and store.adds == []


def test_the_rate_limit_refills_at_its_rate() -> None:
    now = [0.0]
    limit = RateLimit(rate=10, burst=2, clock=lambda: now[0])
    assert [limit.allow() for _ in range(3)] == [True, True, False]
    now[0] += 0.1
    assert limit.allow() and not limit.allow()


def test_the_answer_does_not_wait_for_the_database(store: MemoryStore) -> None:
    class SlowStore(MemoryStore):
        def add(self, rent_ids: Any, at: float) -> None:
            time.sleep(1.0)
            super().add(rent_ids, at)

    slow = SlowStore()
    app = WebhookReceiver(TOKEN, HintWriter(slow, interval=0.01))
    answered: list[float] = []

    async def main() -> None:
        scope = {"type": "http", "method": "POST", "path": f"/smsonline/webhook/{TOKEN}", "headers": []}
        chunks = iter([BODY])

        async def receive() -> dict[str, Any]:
            return {"type": "http.request", "body": next(chunks, b""), "more_body": False}

        async def send(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.body":
                answered.append(time.monotonic() - started)

        started = time.monotonic()
        await app(scope, receive, send)
        await app.writer.drain()

    asyncio.run(main())
    assert answered[0] < 0.5 and slow.adds == [{rental(1049)}]


# ----------------------------------------------------------------------------- the token in logs


def test_the_token_in_the_path_is_masked_before_any_access_log_reads_it(app: WebhookReceiver) -> None:
    for token in (TOKEN, "forged-token-0000000000000000000"):
        _, _, scope, _ = post(app, token=token)
        assert scope["path"] == "/smsonline/webhook/***" and token.encode() not in scope["raw_path"]


def test_the_log_filter_masks_uvicorns_access_record() -> None:
    record = logging.LogRecord(
        "uvicorn.access",
        logging.INFO,
        __file__,
        1,
        '%s - "%s %s HTTP/%s" %d',
        ("127.0.0.1:5000", "POST", f"/smsonline/webhook/{TOKEN}", "1.1", 200),
        None,
    )
    assert TokenMaskFilter([TOKEN]).filter(record)
    line = record.getMessage()
    assert TOKEN not in line and "/smsonline/webhook/*** HTTP/1.1" in line


def test_the_structlog_processor_masks_the_access_event() -> None:
    event = {"event": "request finished", "path": f"/smsonline/webhook/{TOKEN}", "status_code": 404}
    masked = TokenMaskFilter([TOKEN])(None, "info", event)
    assert masked["path"] == "/smsonline/webhook/***" and masked["status_code"] == 404


def test_install_masks_the_access_loggers_of_this_process() -> None:
    lines: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            lines.append(record.getMessage())

    keep = Keep()
    loggers = [logging.getLogger(name) for name in ("uvicorn.access", "uvicorn.error")]
    saved = [(logger.level, logger.disabled) for logger in loggers]
    for logger in loggers:
        logger.addHandler(keep)
        logger.setLevel(logging.INFO)
        logger.disabled = False
    try:
        install([TOKEN])
        loggers[0].info('%s - "%s %s"', "x", "POST", f"/smsonline/webhook/{TOKEN}")
        loggers[1].info("Exception in ASGI application at /smsonline/webhook/%s", TOKEN)
    finally:
        for logger, (level, disabled) in zip(loggers, saved, strict=True):
            logger.removeHandler(keep)
            logger.setLevel(level)
            logger.disabled = disabled
    assert len(lines) == 2 and all(TOKEN not in line and "/smsonline/webhook/***" in line for line in lines)


def test_install_masks_airflows_structlog_access_events_even_of_loggers_bound_before() -> None:
    import structlog

    captured: list[dict[str, Any]] = []

    def capture(logger: Any, method: str, event_dict: Any) -> Any:
        captured.append(dict(event_dict))
        raise structlog.DropEvent

    before = structlog.get_config()
    structlog.configure(processors=[capture], cache_logger_on_first_use=True)
    try:
        access = structlog.get_logger(logger_name="http.access")
        access.info("request finished", path="/warm-up")  # bound and cached before the plugin loads
        install([TOKEN])
        access.info("request finished", path=f"/smsonline/webhook/{TOKEN}", status_code=200)
    finally:
        structlog.configure(**before)
    assert captured[-1]["path"] == "/smsonline/webhook/***"


# ----------------------------------------------------------------------------- the hint document, the writer


def test_hints_carry_a_sequence_and_the_ring_keeps_the_newest() -> None:
    document = merge_hints(None, [rental(3), rental(1), rental(3), activation(1)], at=100.0)
    assert document == {"v": 1, "seq": 3, "hints": [[1, 1, 100.0, "a"], [2, 1, 100.0], [3, 3, 100.0]]}
    document = merge_hints(document, map(rental, range(HINT_RING + 5)), at=101.0)
    seq, hints = decode_hints(json.loads(json.dumps(document)))
    assert seq == HINT_RING + 8 and len(hints) == HINT_RING and hints[-1].id == HINT_RING + 4
    assert [h.seq for h in decode_hints(document, after=seq - 2)[1]] == [seq - 1, seq]


@pytest.mark.parametrize("junk", [None, "x", [], {"seq": "1", "hints": []}, {"seq": 1, "hints": [["a"]]}])
def test_an_unreadable_document_reads_as_no_hints(junk: Any) -> None:
    assert decode_hints(junk)[1] == []


def test_the_writer_coalesces_a_burst_into_one_write_per_interval(store: MemoryStore) -> None:
    writer = HintWriter(store, interval=0.2)

    async def main() -> None:
        started = time.monotonic()
        while time.monotonic() - started < 1.0:  # 1 s of webhooks for 10 rentals, as fast as they come
            for rent_id in range(10):
                assert writer.record(rental(rent_id))
            await asyncio.sleep(0.001)
        await writer.drain()

    asyncio.run(main())
    assert 1 <= len(store.adds) <= 7  # about 1 s / 0.2 s, whatever the webhook rate
    assert set().union(*store.adds) == set(map(rental, range(10)))


def test_too_many_pending_rentals_are_refused_not_queued(store: MemoryStore) -> None:
    writer = HintWriter(store, interval=0.01, max_pending=2)

    async def main() -> list[bool]:
        taken = [writer.record(rental(1)), writer.record(rental(2)), writer.record(rental(2))]
        taken.append(writer.record(activation(3)))
        await writer.drain()
        return taken

    assert asyncio.run(main()) == [True, True, True, False]


# ----------------------------------------------------------------------------- the shared reader


class Source:
    """The hint Variable's text in memory, counting reads."""

    def __init__(self) -> None:
        self.document: dict[str, Any] | None = None
        self.reads = 0

    async def __call__(self) -> str | None:
        self.reads += 1
        return None if self.document is None else encode_hints(self.document)

    def hint(self, *rent_ids: int) -> None:
        self.document = merge_hints(self.document, map(rental, rent_ids), time.time())

    def hint_activation(self, *activation_ids: int) -> None:
        self.document = merge_hints(self.document, map(activation, activation_ids), time.time())


@pytest.fixture
def source() -> Iterator[Source]:
    memory = Source()
    news.configure(enabled=True, source=memory, interval=0.05)
    yield memory
    news.configure()


def test_without_a_secret_waits_only_sleep(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AIRFLOW__SMSONLINE__WEBHOOK_SECRET", raising=False)
    news.configure()
    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)

    assert asyncio.run(news.wait_for_news(1, 42.0, sleep=sleep)) is False
    assert slept == [42.0]


def test_a_hint_wakes_the_waits_on_its_rental_at_once_and_no_other(source: Source) -> None:
    async def main() -> tuple[list[tuple[int, bool, float]], HintReader]:
        results: list[tuple[int, bool, float]] = []
        started = time.monotonic()

        async def wait(rent_id: int) -> None:
            woke = await news.wait_for_news(rent_id, 2.0)
            results.append((rent_id, woke, time.monotonic() - started))

        waits = [asyncio.create_task(wait(r)) for r in (1, 1, 2)]
        await asyncio.sleep(0.2)
        source.hint(1, 999)  # 999: a rent id no wait watches
        await asyncio.gather(*waits)
        shared = news.reader()
        assert shared is not None
        return results, shared

    from airflow_provider_smsonline.webhook.news import HintReader

    results, shared = asyncio.run(main())
    woken = {(r, w) for r, w, t in results if t < 1.0}
    assert woken == {(1, True)}  # both waits on rental 1, within a read interval of the hint
    assert [(r, w) for r, w, t in results if t >= 1.0] == [(2, False)]  # rental 2 slept its 2 s
    assert shared.ignored == 1 and isinstance(shared, HintReader)


def test_one_reader_reads_a_bounded_number_of_times_whatever_the_number_of_waits(source: Source) -> None:
    async def main() -> float:
        waits = [asyncio.create_task(news.wait_for_news(r, 1.0)) for r in range(10_000)]
        started = time.monotonic()
        await asyncio.gather(*waits)
        return time.monotonic() - started

    elapsed = asyncio.run(main())
    assert source.reads <= elapsed / 0.05 + 2  # one read per interval, not one per wait


def test_a_hint_that_came_while_the_wait_was_looking_returns_at_once(source: Source) -> None:
    async def main() -> tuple[bool, float]:
        await news.wait_for_news(5, 0.01)  # registers the wait
        source.hint(5)
        await asyncio.sleep(0.2)  # the wait is "looking" when the reader applies the hint
        started = time.monotonic()
        woke = await news.wait_for_news(5, 2.0)
        return woke, time.monotonic() - started

    woke, took = asyncio.run(main())
    assert woke and took < 0.1


def test_after_a_hint_that_found_nothing_the_wait_looks_again_and_not_after_found(
    source: Source, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(news, "RECHECKS", (0.3, 0.6))

    async def wakes(found: bool) -> list[float]:
        rent_id = 70 + found
        await news.wait_for_news(rent_id, 0.01)
        started = time.monotonic()
        source.hint(rent_id)
        times = []
        first = True
        while time.monotonic() - started < 1.5:
            if await news.wait_for_news(
                rent_id, 1.5 - (time.monotonic() - started), found=found and not first
            ):
                times.append(round(time.monotonic() - started, 1))
            first = False
        return times

    async def main() -> tuple[list[float], list[float]]:
        return await wakes(False), await wakes(True)

    nothing, found = asyncio.run(main())
    assert len(nothing) == 3 and nothing[1] >= 0.3 and nothing[2] >= 0.6  # the hint, then 2 re-checks
    assert len(found) == 1  # the look after the hint found the SMS: no re-check


# ----------------------------------------------------------------------------- the plugin


def test_the_plugin_mounts_nothing_without_a_secret_and_the_receiver_with_one(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from airflow_provider_smsonline import account
    from airflow_provider_smsonline.webhook import plugin

    monkeypatch.setattr(sys, "argv", ["airflow", "api-server"])
    monkeypatch.setenv("AIRFLOW__SMSONLINE__ACCOUNT_PAGE", "False")  # the page's app aside
    monkeypatch.setattr(account, "_apps", None)
    monkeypatch.delenv("AIRFLOW__SMSONLINE__WEBHOOK_SECRET", raising=False)
    monkeypatch.setattr(plugin, "_built", None)
    assert plugin.SmsOnlineWebhookPlugin().fastapi_apps == []
    monkeypatch.setenv("AIRFLOW__SMSONLINE__WEBHOOK_SECRET", SECRET)
    monkeypatch.setattr(plugin, "_built", None)
    [mounted] = plugin.SmsOnlineWebhookPlugin().fastapi_apps
    assert mounted["url_prefix"] == "/smsonline" and isinstance(mounted["app"], WebhookReceiver)
    assert TOKEN not in repr(mounted)


def test_importing_the_plugin_builds_nothing_and_loads_no_web_framework() -> None:
    # Measured against what loading plugins costs anyway (Airflow 3.1's plugins_manager imports
    # fastapi itself): the plugin module adds no web framework, no receiver, no hint store.
    code = (
        "import sys, airflow.plugins_manager; before = set(sys.modules);"
        "import airflow_provider_smsonline.webhook.plugin;"
        "print(sorted(m for m in set(sys.modules) - before if m.startswith(('fastapi', 'starlette', "
        "'uvicorn', 'airflow_provider_smsonline.webhook.receiver', "
        "'airflow_provider_smsonline.webhook.hints'))))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True
    )
    assert done.stdout.strip().splitlines()[-1] == "[]"


def test_the_entry_point_registers_the_plugin_and_provider_info_does_not() -> None:
    from importlib.metadata import entry_points

    from airflow_provider_smsonline.get_provider_info import get_provider_info

    [point] = [e for e in entry_points(group="airflow.plugins") if e.name == "smsonline_webhook"]
    assert point.value == "airflow_provider_smsonline.webhook.plugin:SmsOnlineWebhookPlugin"
    info = get_provider_info()
    assert "plugins" not in info
    assert info["config"]["smsonline"]["options"]["webhook_secret"]["sensitive"] is True


# ----------------------------------------------------------------------------- the sandbox's webhook


class Hook:
    """A local endpoint that keeps what is posted to it."""

    def __enter__(self) -> Hook:
        import http.server
        import threading

        bodies = self.bodies = []

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                bodies.append(self.rfile.read(int(self.headers["Content-Length"])))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


def _rent_with_url(sandbox: Sandbox, url: str) -> int:
    import urllib.request

    param = sandbox.readings.webhook_param  # the name this sandbox's reading takes
    query = urlencode(
        {"api_key": sandbox.api_key, "action": "getRentNumber", "service": "tg", "country": 0, param: url}
    )
    with urllib.request.urlopen(f"{sandbox.url}?{query}", timeout=10) as answer:
        return int(json.loads(answer.read())["phone"]["id"])


def _settled(sandbox: Sandbox) -> dict[str, Any]:
    deadline = time.monotonic() + 10
    while sandbox.state()["webhooks"]["pending"] and time.monotonic() < deadline:
        time.sleep(0.05)
    return sandbox.state()["webhooks"]


def test_the_sandbox_posts_exactly_the_documented_webhook_once() -> None:
    with Hook() as hook, Sandbox(port=0) as sandbox:
        rent_id = _rent_with_url(sandbox, hook.url)
        sandbox.deliver_sms(rent_id, text="Your code 4242", phone_from="79991234567")
        sandbox.deliver_sms(rent_id, text="hello", phone_from="Telegram")
        assert _settled(sandbox)["sent"] == 2
    # Each post is its own delivery: they may arrive in either order.
    first, second = sorted(
        (json.loads(b) for b in hook.bodies), key=lambda body: body["sms"]["text"] != "Your code 4242"
    )
    assert set(first) == {"rentId", "sms"} and set(first["sms"]) == {"phoneFrom", "text", "date"}
    assert first["rentId"] == rent_id and first["sms"]["phoneFrom"] == 79991234567  # a bare number
    assert second["sms"]["phoneFrom"] == "Telegram"


def test_the_sandbox_can_drop_webhooks_to_prove_the_poll() -> None:
    with Hook() as hook, Sandbox(port=0, drop_webhooks=True) as sandbox:
        rent_id = _rent_with_url(sandbox, hook.url)
        sandbox.deliver_sms(rent_id, text="lost")
        webhooks = _settled(sandbox)
        sandbox.drop_webhooks = False
        sandbox.deliver_sms(rent_id, text="kept")
        assert _settled(sandbox)["sent"] == 1
    assert (webhooks["sent"], webhooks["failed"]) == (0, 1)
    assert webhooks["deliveries"][0]["detail"] == "dropped"
    assert [json.loads(b)["sms"]["text"] for b in hook.bodies] == ["kept"]


def test_the_sandbox_command_line_has_the_switch() -> None:
    from airflow_provider_smsonline.sandbox.__main__ import build_parser

    assert build_parser().parse_args(["--drop-webhooks"]).drop_webhooks is True
    assert build_parser().parse_args([]).drop_webhooks is False


def test_the_module_keeps_its_public_names() -> None:
    assert callable(webhook.webhook_url) and hints_module.HINTS_KEY == "smsonline_webhook_hints"


# ------------------------------------------------------------------------ RentNumberOperator(webhook=True)

RENTAL = {
    "status": "success",
    "phone": {"id": 1049, "endDate": "2025-05-10T12:34:56", "number": "79999876543"},
}


@pytest.fixture
def op_context(task_instance: Any, memory_variables: dict[str, object], smsonline_conn: str) -> Any:
    return {"ti": task_instance}


def test_webhook_true_sends_this_airflows_webhook_url_to_get_rent_number(
    op_context: Any, requests_mock: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from airflow_provider_smsonline.operators.rent import RentNumberOperator
    from tests.conftest import action_url, sent_query

    monkeypatch.setenv("AIRFLOW__SMSONLINE__WEBHOOK_SECRET", SECRET)
    monkeypatch.setenv("AIRFLOW__API__BASE_URL", "https://af.example.com")
    requests_mock.get(action_url("getRentList"), text=json.dumps({"status": "success", "values": []}))
    rent_call = requests_mock.get(action_url("getRentNumber"), text=json.dumps(RENTAL))
    RentNumberOperator(task_id="rent", service="tg", country=0, webhook=True).execute(op_context)
    assert sent_query(rent_call.last_request)["url"] == f"https://af.example.com/smsonline/webhook/{TOKEN}"


def test_webhook_true_without_a_secret_fails_without_retry_and_rents_nothing(
    op_context: Any, requests_mock: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from airflow_provider_smsonline._compat import AirflowFailException
    from airflow_provider_smsonline.operators.rent import RentNumberOperator

    monkeypatch.delenv("AIRFLOW__SMSONLINE__WEBHOOK_SECRET", raising=False)
    operator = RentNumberOperator(task_id="rent", service="tg", country=0, webhook=True)
    with pytest.raises(AirflowFailException, match=r"webhook=True: \[smsonline\] webhook_secret is not set"):
        operator.execute(op_context)
    assert requests_mock.call_count == 0


def test_webhook_true_with_a_webhook_url_is_refused_at_parse() -> None:
    from airflow_provider_smsonline.operators.rent import RentNumberOperator

    with pytest.raises(ValueError, match="webhook must be True or False, and True only without webhook_url"):
        RentNumberOperator(
            task_id="r", service="tg", country=0, webhook=True, webhook_url="https://x.example/h"
        )


# ----------------------------------------------------------------------------- the hint Variable, for real


@pytest.mark.airflow
def test_two_writers_on_airflows_metadata_db_lose_no_hint(tmp_path: Any) -> None:
    """Two api-server workers (two processes) writing hints at once into one Airflow's SQLite
    metadata DB through the ORM: every hint is kept, each under its own seq."""
    from airflow_provider_smsonline.testing import LocalAirflow

    airflow = LocalAirflow(home=tmp_path / "home", dags_folder=tmp_path)
    airflow.migrate()
    code = (
        "import sys, time\n"
        "from airflow_provider_smsonline.webhook.hints import VariableHintStore\n"
        "store, first = VariableHintStore(), int(sys.argv[1])\n"
        "for n in range(first, first + 40):\n"
        "    for attempt in range(5):\n"
        "        try:\n"
        "            store.add([('r', n)], time.time()); break\n"
        "        except Exception:\n"
        "            time.sleep(0.05)\n"
        "    else:\n"
        "        raise SystemExit('gave up on %d' % n)\n"
    )
    env = airflow.environ()
    writers = [
        subprocess.Popen([sys.executable, "-c", code, str(first)], env=env, cwd=tmp_path)
        for first in (0, 1000)
    ]
    assert [w.wait(timeout=300) for w in writers] == [0, 0]
    read = (  # through Airflow's model: the value is encrypted with the home's Fernet key
        "from airflow.models.variable import Variable\n"
        "from airflow.utils.session import create_session\n"
        "with create_session() as s:\n"
        "    print(s.query(Variable).filter(Variable.key == 'smsonline_webhook_hints').one().val)\n"
    )
    done = subprocess.run([sys.executable, "-c", read], env=env, capture_output=True, text=True, timeout=120)
    seq, hints = decode_hints(json.loads(done.stdout.strip().splitlines()[-1]))
    assert seq == 80 and sorted(h.seq for h in hints) == list(range(1, 81))
    assert sorted(h.id for h in hints) == [*range(40), *range(1000, 1040)]
