"""The one NATS helper: connect, declare the streams, publish with acks, and take batches
from pull consumers without idling."""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import itertools
import logging
import os
import re
import ssl
from collections.abc import Sequence
from typing import Any, cast
from urllib.parse import urlsplit, urlunsplit

import msgspec
import nats
import nats.errors
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import (
    ConsumerConfig,
    DiscardPolicy,
    RetentionPolicy,
    StorageType,
    StreamConfig,
)
from nats.js.errors import APIError, BadRequestError, NoStreamResponseError, NotFoundError
from weir_proto import subjects

from weir.config import (
    COMMANDS_MAX_BYTES_DEFAULT,
    COMMANDS_MAX_MSGS_DEFAULT,
    ConfigError,
    NatsSecurity,
)
from weir.secrets import held_credentials
from weir.setting import nats_server_urls, url_problem

log = logging.getLogger("weir.nats")

NO_RESPONDERS = "503"
"""The `Status` header of the answer NATS sends when nothing (no stream) takes a subject."""

DUPLICATE_WINDOW = 120.0
COMMANDS_MAX_AGE = 7 * 24 * 3600.0
EVENTS_MAX_AGE = 30 * 24 * 3600.0
"""Events stay replayable from NATS for 30 days; the Postgres log keeps them for good."""
EVENTS_MAX_MSGS = 20_000_000
EVENTS_MAX_BYTES = 2 * 1024**3
LOGS_MAX_AGE = 7 * 24 * 3600.0
LOGS_MAX_MSGS = 20_000_000
LOGS_MAX_BYTES = 4 * 1024**3
"""Task logs stay a week, 4 GiB at most (oldest dropped first)."""
STATUS_MAX_BYTES = 256 * 1024**2
DISPATCH_MAX_BYTES = 512 * 1024**2
WORK_MAX_MSGS = 1_000_000
"""WEIR_STATUS and WEIR_DISPATCH hold work not yet taken: reports the scheduler has not
recorded, dispatches no runner has taken. At the limit a publish is refused (and retried by
its publisher: the relay and the runner keep what they could not publish), never is
anything accepted dropped."""


def stream_configs(
    commands_max_msgs: int = COMMANDS_MAX_MSGS_DEFAULT,
    commands_max_bytes: int = COMMANDS_MAX_BYTES_DEFAULT,
) -> list[StreamConfig]:
    """Our streams. JetStream reserves each stream's `max_bytes` on the server: their sum
    (7.75 GiB by default) must fit its `max_file_store`. Work streams discard new messages
    at their limits (the publisher sees an error; nothing already accepted is lost); event
    and log streams, copies of what Postgres and the runners keep, drop their oldest."""
    return [
        _stream(
            subjects.STREAM_COMMANDS,
            "weir.cmd.>",
            RetentionPolicy.LIMITS,
            DiscardPolicy.NEW,
            max_age=COMMANDS_MAX_AGE,
            max_msgs=commands_max_msgs,
            max_bytes=commands_max_bytes,
        ),
        _stream(
            subjects.STREAM_STATUS,
            f"{subjects.STATUS_PREFIX}.>",
            RetentionPolicy.WORK_QUEUE,
            DiscardPolicy.NEW,
            max_msgs=WORK_MAX_MSGS,
            max_bytes=STATUS_MAX_BYTES,
        ),
        _stream(
            subjects.STREAM_DISPATCH,
            f"{subjects.DISPATCH_PREFIX}.>",
            RetentionPolicy.WORK_QUEUE,
            DiscardPolicy.NEW,
            max_msgs=WORK_MAX_MSGS,
            max_bytes=DISPATCH_MAX_BYTES,
        ),
        _stream(
            subjects.STREAM_EVENTS,
            f"{subjects.EVENTS_PREFIX}.>",
            RetentionPolicy.LIMITS,
            DiscardPolicy.OLD,
            max_age=EVENTS_MAX_AGE,
            max_msgs=EVENTS_MAX_MSGS,
            max_bytes=EVENTS_MAX_BYTES,
        ),
        _stream(
            subjects.STREAM_LOGS,
            f"{subjects.LOGS_PREFIX}.>",
            RetentionPolicy.LIMITS,
            DiscardPolicy.OLD,
            duplicate_window=0,
            max_age=LOGS_MAX_AGE,
            max_msgs=LOGS_MAX_MSGS,
            max_bytes=LOGS_MAX_BYTES,
        ),
    ]


def _stream(
    name: str,
    subject: str,
    retention: RetentionPolicy,
    discard: DiscardPolicy,
    duplicate_window: float = DUPLICATE_WINDOW,
    **limits: Any,
) -> StreamConfig:
    """One of our streams: on disk, of one subject tree, de-duplicating by `Nats-Msg-Id`
    within `duplicate_window` (0: the server's default)."""
    return StreamConfig(
        name=name,
        subjects=[subject],
        retention=retention,
        discard=discard,
        storage=StorageType.FILE,
        duplicate_window=duplicate_window,
        **limits,
    )


def security_options(security: NatsSecurity) -> dict[str, Any]:
    """nats-py connect options for the credentials and TLS settings in `security`."""
    options: dict[str, Any] = {}
    if security.user:
        options["user"] = security.user
        options["password"] = security.password
    if security.token:
        options["token"] = security.token
    # nats-py signs the server's nonce with the nkeys package.
    if (security.creds or security.nkey_seed) and importlib.util.find_spec("nkeys") is None:
        raise ConfigError(
            "WEIR_NATS_CREDS / WEIR_NATS_NKEY_SEED need the nkeys package: pip install nkeys"
        )
    if security.creds:
        options["user_credentials"] = security.creds
    if security.nkey_seed:
        options["nkeys_seed"] = security.nkey_seed
    if security.tls:
        context = ssl.create_default_context(
            ssl.Purpose.SERVER_AUTH, cafile=security.tls_ca or None
        )
        if security.tls_cert:
            context.load_cert_chain(security.tls_cert, security.tls_key)
        options["tls"] = context
    return options


def redact_url(url: str) -> str:
    """`url` with any password (or token in the user part) replaced by `***`, for logs. A
    NATS setting's list of servers (bare HOST:PORT ones too) is redacted server by server;
    what cannot be read as a URL is not shown at all."""
    if "," in url or "://" not in url:
        return ", ".join(_redact_one(one) for one in nats_server_urls(url))
    return _redact_one(url)


def _redact_one(url: str) -> str:
    if url_problem(url) is not None:
        return "(a URL that cannot be read)"
    parts = urlsplit(url)
    if parts.password is None and not parts.username:
        return url
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    user = f"{parts.username}:***" if parts.password is not None else "***"
    return urlunsplit(parts._replace(netloc=f"{user}@{host}"))


_USER_TOKEN = re.compile(r"[A-Za-z0-9_-]{1,64}")


def inbox_prefix(url: str, security: NatsSecurity) -> str:
    """`_INBOX.<user>` for a client that logs in as a user, else `_INBOX`.

    Replies (API answers, JetStream API answers, pulled dispatches, pushed events) come to
    the client's inbox. With its own prefix each NATS user may be allowed to subscribe to its
    own inboxes only (`_INBOX.weir-runner.>` in deploy/nats/permissions.conf), so no role can
    read another's: a task pod's user no longer sees every dispatch and its token.
    """
    user = security.user or urlsplit(nats_server_urls(url)[0]).username
    return f"_INBOX.{user}" if user and _USER_TOKEN.fullmatch(user) else "_INBOX"


FIRST_ATTEMPT_WAIT = 0.2
"""Seconds between the tries of a bounded first connection (`connect(first_retries=)`)."""


async def connect(
    url: str,
    name: str,
    max_reconnect_attempts: int = -1,
    *,
    security: NatsSecurity | None = None,
    quiet: bool = False,
    first_retries: int | None = None,
    **options: Any,
) -> NATS:
    """Connect, by default with endless reconnects: the server may restart under us.

    Credentials and TLS come from `security`, by default from the `WEIR_NATS_*` variables
    (`NatsSecurity.from_env`); explicit `options` win over both. `quiet` logs connection
    errors and disconnects at debug level only: for a command line tool that reports a
    connection failure once, in its own words. `first_retries` (at least 1) bounds the retries
    of the first connection alone: a command line tool fails at once when nothing listens, yet
    rides out a server restart once connected. A failed first connection raises
    `ConnectionError` saying why.
    """

    client: NATS | None = None
    held = held_credentials()  # a runner read its credentials once and dropped them
    security = security or (held.nats if held is not None else NatsSecurity.from_env())
    options = {
        "inbox_prefix": inbox_prefix(url, security),
        "reconnect_time_wait": 0.5 if first_retries is None else FIRST_ATTEMPT_WAIT,
        **security_options(security),
        **options,
    }  # (nats-py types reconnect_time_wait as int; it sleeps any float)

    level = logging.DEBUG if quiet else logging.WARNING

    failures: list[Exception] = []

    async def on_error(exc: Exception) -> None:
        failures[:] = [exc]
        log.log(level, "nats error: %s", exc)

    async def on_disconnect() -> None:
        if client is not None and not (client.is_closed or client.is_draining):
            log.log(level, "nats disconnected; reconnecting")

    async def on_reconnect() -> None:
        log.info("nats reconnected")

    client = NATS()
    try:
        await client.connect(
            nats_server_urls(url),
            name=name,
            max_reconnect_attempts=max_reconnect_attempts
            if first_retries is None
            else first_retries,
            error_cb=on_error,
            disconnected_cb=on_disconnect,
            reconnected_cb=on_reconnect,
            **options,
        )
    except nats.errors.NoServersError as exc:
        # nats-py says only "no servers available"; the last attempt's error says why
        # (connection refused, a timeout, a TLS or authorization failure).
        last = failures[-1] if failures else exc
        raise ConnectionError(_why_not(last, client.options["connect_timeout"])) from last
    if first_retries is not None:  # once connected, reconnect as a long-lived client would
        client.options["max_reconnect_attempts"] = max_reconnect_attempts
        client.options["reconnect_time_wait"] = 0.5
    return client


def _why_not(exc: BaseException, timeout: float) -> str:
    """A failed connection as a user reads it: `connection refused`, not `[Errno 111] ...`."""
    if isinstance(exc, OSError) and exc.errno:
        return os.strerror(exc.errno).lower()
    if isinstance(exc, TimeoutError):
        return f"no answer within {timeout:g} s"
    return str(exc) or type(exc).__name__


async def close(nc: NATS) -> None:
    """Flush what we published and close. (`drain()` can wait out its whole timeout on pull
    subscriptions whose fetch was cancelled, which would make every shutdown slow.)"""
    with contextlib.suppress(Exception):
        await nc.flush(timeout=2)
    with contextlib.suppress(Exception):
        await nc.close()


async def ensure_streams(
    js: JetStreamContext,
    commands_max_msgs: int = COMMANDS_MAX_MSGS_DEFAULT,
    commands_max_bytes: int = COMMANDS_MAX_BYTES_DEFAULT,
) -> None:
    """Create our streams, or bring their config up to date. Safe to race with other processes.

    Only the scheduler (or an operator) does this: runners, submitters and task pods may not
    create or change a stream (deploy/nats/permissions.conf); they wait for them instead.
    """
    for config in stream_configs(commands_max_msgs, commands_max_bytes):
        try:
            await js.add_stream(config)
        except BadRequestError:
            await js.update_stream(config)


STREAMS_POLL_INTERVAL = 0.5
"""How often a runner looks again for the streams the scheduler has not created yet."""


async def missing_streams(js: JetStreamContext) -> list[str]:
    """The names of our streams that do not exist (yet)."""
    missing = []
    for config in stream_configs():
        assert config.name is not None
        try:
            await js.stream_info(config.name)
        except NotFoundError:
            missing.append(config.name)
    return missing


async def wait_for_streams(js: JetStreamContext, stop: asyncio.Event) -> bool:
    """Wait until the scheduler has created every stream; False if `stop` came first.

    Binding to existing streams (never creating or updating them) is what lets the runner's
    NATS user go without `$JS.API.STREAM.CREATE/UPDATE`: a runner, or a task that stole its
    credentials, cannot shrink or re-route a stream.
    """
    logged = False
    while missing := await missing_streams(js):
        if not logged:
            log.info(
                "waiting for the scheduler to create the streams",
                extra={"missing": missing},
            )
            logged = True
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), STREAMS_POLL_INTERVAL)
        if stop.is_set():
            return False
    return True


class Stored(msgspec.Struct, frozen=True):
    """JetStream's acknowledgement of a publish: the message is in `stream` at `seq`
    (`duplicate`: it was there already, under the same `Nats-Msg-Id`)."""

    stream: str
    seq: int
    duplicate: bool = False


class _Answer(msgspec.Struct):
    """What JetStream answers a publish: a `Stored`, or an `error` (nats-py's APIError)."""

    stream: str = ""
    seq: int = 0
    duplicate: bool = False
    error: dict[str, Any] | None = None


_answer_decoder = msgspec.json.Decoder(_Answer)

Outgoing = tuple[str, bytes, dict[str, str]]
"""A message to publish: subject, payload, headers."""


class Publisher:
    """Publishes to JetStream on one connection, each publish acknowledged on one wildcard
    inbox of the publisher's own (`<inbox>.<n>`), decoded by msgspec.

    It does what nats-py's `publish_async` does in fewer steps per message (no semaphore, no
    random token, no JSON module, no ack dataclass, no future per message: a batch waits on
    one, set when its last ack comes): the relay publishes every event and dispatch through
    it, a runner its reports and a client its submits. A message JetStream does not take is
    an error in its slot: nats-py's `NoStreamResponseError` when no stream holds the subject,
    its `APIError` when the stream refused it (full, a wrong expected stream), both
    `nats.errors.Error`s as they were."""

    def __init__(self, nc: NATS) -> None:
        self.nc = nc
        self._inbox = ""
        self._setup = asyncio.Lock()
        self._numbers = itertools.count()
        self._waiting: dict[str, tuple[_Batch, int]] = {}
        """Reply subject -> the batch waiting for its ack, and the message's place in it."""

    async def publish(
        self, messages: Sequence[Outgoing], timeout: float
    ) -> list[Stored | BaseException]:
        """Publish `messages` back to back, then wait for their acknowledgements together:
        each one's `Stored` or error, in order. TimeoutError when some are not acknowledged
        within `timeout`; those are forgotten (a late one is dropped). A caller cancelled
        meanwhile leaves nothing behind: no future with an error nobody reads."""
        if not messages:
            return []
        return await (await self._queue(messages)).acks(timeout)

    async def send(self, messages: Sequence[Outgoing]) -> Sent:
        """Publish `messages` back to back without waiting for JetStream, and return once
        they are on the socket (nats-py writes from a task of its own, which gets its turn
        here, before the caller goes on): their acknowledgements are the returned `Sent`'s
        to wait for (or to forget)."""
        sent = await self._queue(messages)
        await asyncio.sleep(0)
        return sent

    async def _queue(self, messages: Sequence[Outgoing]) -> Sent:
        """`messages` handed to nats-py, which writes them when the caller next waits."""
        inbox = self._inbox or await self._subscribe()
        sent = Sent(self._waiting, _Batch(len(messages)))
        try:
            for place, (subject, payload, headers) in enumerate(messages):
                reply = f"{inbox}.{next(self._numbers)}"
                self._waiting[reply] = (sent.batch, place)
                sent.replies.append(reply)
                await self.nc.publish(subject, payload, reply=reply, headers=headers)
        except BaseException:
            sent.forget()
            raise
        return sent

    async def publish_one(
        self, subject: str, payload: bytes, headers: dict[str, str], timeout: float
    ) -> Stored:
        """One message; its error raised (nats-py's TimeoutError when no ack came in time,
        as `JetStreamContext.publish`)."""
        try:
            (outcome,) = await self.publish([(subject, payload, headers)], timeout)
        except TimeoutError:
            raise nats.errors.TimeoutError from None
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome

    async def _subscribe(self) -> str:
        async with self._setup:
            if not self._inbox:
                inbox = self.nc.new_inbox()
                await self.nc.subscribe(f"{inbox}.*", cb=self._answered)
                self._inbox = inbox
        return self._inbox

    async def _answered(self, msg: Msg) -> None:
        waiting = self._waiting.pop(msg.subject, None)
        if waiting is None:
            return  # came after its publisher stopped waiting
        batch, place = waiting
        if msg.headers and msg.headers.get("Status") == NO_RESPONDERS:
            batch.settle(place, NoStreamResponseError())
            return
        try:
            answer = _answer_decoder.decode(msg.data)
        except msgspec.DecodeError as exc:
            batch.settle(place, nats.errors.Error(f"JetStream's answer is not an ack: {exc}"))
            return
        if answer.error is not None:
            try:
                APIError.from_error(answer.error)  # raises the error's own class
            except APIError as refused:
                batch.settle(place, refused)
            return
        batch.settle(place, Stored(answer.stream, answer.seq, answer.duplicate))


class Sent:
    """Messages a `Publisher` sent: their acknowledgements, as they come."""

    __slots__ = ("_waiting", "batch", "replies")

    def __init__(self, waiting: dict[str, tuple[_Batch, int]], batch: _Batch) -> None:
        self._waiting = waiting
        self.batch = batch
        self.replies: list[str] = []

    async def acks(self, timeout: float) -> list[Stored | BaseException]:
        """Each message's `Stored` or error, in order, once all came; TimeoutError when some
        did not within `timeout` (those are forgotten: a late one is dropped)."""
        batch = self.batch
        try:
            if batch.left:
                await asyncio.wait((batch.done,), timeout=timeout)
            if batch.left:
                raise TimeoutError(
                    f"{batch.left:,} of {len(batch.outcomes):,} publishes not acknowledged"
                )
            return cast(list[Stored | BaseException], batch.outcomes)  # every slot filled
        finally:
            self.forget()

    def forget(self) -> None:
        """Stop waiting: acks still to come are dropped when they do."""
        for reply in self.replies:
            self._waiting.pop(reply, None)
        self.batch.done.cancel()  # a no-op once set


class _Batch:
    """The acknowledgements of one `Publisher.send`: `done` is set once none is `left`."""

    __slots__ = ("done", "left", "outcomes")

    def __init__(self, size: int) -> None:
        self.outcomes: list[Stored | BaseException | None] = [None] * size
        self.left = size
        self.done: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def settle(self, place: int, outcome: Stored | BaseException) -> None:
        if self.outcomes[place] is not None:
            return
        self.outcomes[place] = outcome
        self.left -= 1
        if not self.left and not self.done.done():
            self.done.set_result(None)


class Puller:
    """A durable pull consumer's messages, taken in batches: `take` blocks for the first
    message, then takes what is already pending, and never holds more than it asked for.

    A request for `most` would linger until `most` came or it expired, adding its whole
    wait to every step of an idle flow; asking for one, then for exactly the number the
    server says is pending (without waiting), returns as soon as there is work.

    nats-py's `fetch` spends a task, a timer, a future and a uuid on every message it hands
    over (about 70 µs of CPU each, three messages per single-task flow). Here each request
    has its own reply subject under one wildcard subscription; its callback puts each
    message into the request under way (JetStream's messages carry their stream subject,
    not the reply subject, so they cannot be told apart by request), and one timer ends the
    request.

    A request can outlive its take: its take was cancelled (a service stopping), or its
    timer ran out before the server's answer came (NATS restarted, or the answer was slow).
    What such a request brings goes into the next take's request when one is under way
    (counted against its batch like any other), else it is given back at once (a nak) to be
    handed out again: no process holds a message it did not ask for, which for a runner
    would be a dispatch it has no slot for, unwatched until another runner got it too. Such
    a message may then be delivered once more than it was worked on (`num_delivered`). The
    take it went into leaves its own request waiting instead, so after such an ending the
    surplus moves on from take to take until it finds none under way or expires. No request
    is made while NATS reconnects (nats-py would keep it and send it on reconnecting, long
    after its take ended).
    """

    def __init__(self, nc: NATS, stream: str, durable: str) -> None:
        self._nc = nc
        self._next = f"$JS.API.CONSUMER.MSG.NEXT.{stream}.{durable}"
        self._numbers = itertools.count()
        self._prefix = ""
        self._sub: Any = None
        self._request: _Pull | None = None

    async def start(self) -> None:
        self._prefix = self._nc.new_inbox()
        self._sub = await self._nc.subscribe(f"{self._prefix}.*", cb=self._delivered)

    async def stop(self) -> None:
        """Stop listening: requests still waiting on the server are dropped (it serves no
        request whose reply subject nobody listens to), and what they brought before the
        server knew is given back (a drain, not an unsubscribe, which would drop it)."""
        if self._sub is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._sub.drain(), STOP_TIMEOUT)

    async def take(self, most: int, wait: float) -> list[Msg]:
        """Up to `most` messages, waiting up to `wait` seconds for the first; [] when none
        came (or NATS is reconnecting). Raises `APIError` when JetStream refused the request
        (no such consumer, or no JetStream answering), so the caller backs off."""
        msgs = await self._pull(1, wait, no_wait=False)
        if not msgs:
            return []
        pending = msgs[-1].metadata.num_pending
        if most > 1 and pending:
            try:
                msgs.extend(await self._pull(min(most - 1, pending), TOP_UP_WAIT, no_wait=True))
            except asyncio.CancelledError:
                await _give_back(msgs)
                raise
            except Exception as exc:  # what was taken is still the caller's to record
                log.warning("pull for pending messages failed", extra={"error": str(exc)})
        return msgs

    async def _pull(self, batch: int, wait: float, no_wait: bool) -> list[Msg]:
        assert self._request is None, "one take at a time"
        if self._nc.is_closed:
            raise nats.errors.ConnectionClosedError
        if not self._nc.is_connected:  # a request now would wait in nats-py's buffer
            await asyncio.sleep(min(wait, DISCONNECTED_POLL))
            return []
        reply = f"{self._prefix}.{next(self._numbers)}"
        ask: dict[str, object] = {"batch": batch}
        if no_wait:
            ask["no_wait"] = True
        else:
            ask["expires"] = int(wait * 1e9)
        loop = asyncio.get_running_loop()
        request = _Pull(reply, batch, loop.create_future())
        self._request = request
        timer = loop.call_later(wait + PULL_GRACE, request.end)
        try:
            await self._nc.publish(self._next, _encode_json(ask), reply=reply)
            await request.ended
        except BaseException:  # cancelled, or the publish failed: nobody takes these
            await _give_back(request.msgs)
            raise
        finally:
            timer.cancel()
            self._request = None
        if request.refusal is not None:
            raise request.refusal
        return request.msgs

    async def _delivered(self, msg: Msg) -> None:
        request = self._request
        headers = msg.headers or {}
        status = headers.get("Status")
        if status is None:
            if request is None or request.answered:
                await _give_back([msg])
            else:
                request.add(msg)
            return
        # Statuses of requests given up come on their own reply subjects and are ignored.
        if request is not None and msg.subject == request.reply and status != "100":
            request.refusal = _refusal(status, headers.get("Description", ""))
            request.answered = True
            request.end()


PULL_GRACE = 1.0
"""Seconds past its expiry a pull request is waited for before it is taken as lost."""
TOP_UP_WAIT = 0.05
"""Seconds the server is given for the request for messages already pending (it answers at
once; the take gives it `PULL_GRACE` more before taking it as lost)."""
STOP_TIMEOUT = 2.0
"""Seconds `stop` waits for what requests brought before the server dropped them."""
DISCONNECTED_POLL = 0.1
"""Seconds a take waits, while NATS is reconnecting, before it returns nothing."""
_encode_json = msgspec.json.encode


def _refusal(status: str, description: str) -> APIError | None:
    """None for a status that ends a pull request (404 no messages, 408 expired, 409 for a
    leader change or a server shutting down); the error for one that refuses it (any other
    409: the consumer was deleted, or the request exceeds its limits; 503: no JetStream),
    which the caller backs off from instead of asking again at once."""
    if status in ("404", "408"):
        return None
    if status == "409" and description in _PASSING_CONFLICTS:
        return None
    return APIError(code=int(status) if status.isdigit() else None, description=description)


_PASSING_CONFLICTS = frozenset({"Leadership Change", "Server Shutdown"})


async def _give_back(msgs: list[Msg]) -> None:
    for msg in msgs:
        with contextlib.suppress(Exception):
            await msg.nak()


class _Pull:
    """One pull request under way: the messages it brought so far, and whether the server
    said it ended (its batch came, or a status came on its reply subject)."""

    __slots__ = ("answered", "ended", "left", "msgs", "refusal", "reply")

    def __init__(self, reply: str, batch: int, ended: asyncio.Future[None]) -> None:
        self.reply = reply
        self.left = batch
        self.msgs: list[Msg] = []
        self.ended = ended
        self.answered = False
        self.refusal: APIError | None = None

    def add(self, msg: Msg) -> None:
        self.msgs.append(msg)
        self.left -= 1
        if not self.left:
            self.answered = True
            self.end()

    def end(self) -> None:
        if not self.ended.done():
            self.ended.set_result(None)


async def pull_consumer(
    nc: NATS, subject: str, durable: str, stream: str, config: ConsumerConfig
) -> Puller:
    """The durable pull consumer `durable` on `stream` (made with `config` when missing),
    and a `Puller` taking from it."""
    sub = await nc.jetstream().pull_subscribe(
        subject, durable=durable, stream=stream, config=config
    )
    await sub.unsubscribe()  # the consumer stays; only nats-py's way of taking from it goes
    puller = Puller(nc, stream, durable)
    await puller.start()
    return puller
