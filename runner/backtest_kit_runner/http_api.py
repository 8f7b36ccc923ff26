"""The runner's HTTP API: probes, status, the manual controls and Prometheus metrics, on one port.

The operator reads ``/status`` and calls ``POST /stop`` before it deletes a LiveTrader; the kubelet
probes ``/healthz`` and ``/readyz``; Prometheus scrapes ``/metrics``. The API is deliberately
narrow: nothing reachable here can open a signal or change a strategy, and every error, including
an unknown path or a wrong method, is a small JSON document ``{"error": ..., "status": ...}``.

The mutating endpoints (``POST /stop``, ``/pause``, ``/resume``, ``/close``) can stop a trader for
good or close its position, so they are not for anyone who can reach the pod: with a control token
configured (the operator mounts one per trader from a Secret) they need
``Authorization: Bearer <token>`` and answer 401 otherwise, changing nothing; without a token (a
person running the runner on a laptop) they are served to loopback clients only (403 otherwise).

The app only knows a :class:`TraderControl`, so it is served (and tested) the same way whether a
real engine trader or anything else with that shape stands behind it.

:class:`ApiServer` serves the app from a thread of its own with its own event loop, so a strategy
that blocks the trader's loop (a long computation in ``get_signal``) never stalls the probes, the
status or a scrape: the read-only endpoints call the control's synchronous methods, which must be
safe from another thread (the trader publishes a status snapshot), and the mutating ones run the
control's coroutines on the loop that started the server. Every connection is bounded: at most
:data:`MAX_CONNECTIONS` at once (more are closed at once), a connection that sends no request
within :data:`IDLE_TIMEOUT_S` is closed, a body is read within :data:`READ_TIMEOUT_S`, and a
handler is cancelled when its client goes away.
"""

from __future__ import annotations

import asyncio
import hmac
import ipaddress
import json
import logging
import threading
from collections.abc import Awaitable, Callable, Coroutine, Mapping
from typing import Any, Protocol

from aiohttp import web

from .heartbeat import Probe

log = logging.getLogger("backtest_kit_runner.http")

#: Largest body ``POST /stop`` accepts.
MAX_BODY_BYTES = 4096
STOP_FIELDS = frozenset({"reason"})
#: Connections served at once; one more is closed as soon as it is accepted.
MAX_CONNECTIONS = 64
#: Pending connections the kernel queues for us.
BACKLOG = 128
#: A connection that sends no (next) request for this long is closed (also the keep-alive).
IDLE_TIMEOUT_S = 5.0
#: A request body must arrive within this long.
READ_TIMEOUT_S = 5.0

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class TraderControl(Protocol):
    """What the API needs from the process it serves."""

    def status(self) -> Mapping[str, Any]: ...

    def liveness(self) -> Probe: ...

    def readiness(self) -> Probe: ...

    async def request_stop(self, reason: str | None) -> None: ...

    async def pause(self) -> None: ...

    async def resume(self) -> None: ...

    async def close_pending(self) -> None: ...

    def render_metrics(self) -> tuple[bytes, str]: ...


class ApiError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def error_response(status: int, message: str, headers: Mapping[str, str] | None = None) -> web.Response:
    return web.json_response({"error": message, "status": status}, status=status, headers=headers)


@web.middleware
async def json_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Turn every failure into ``{"error", "status"}``; keep ``Allow`` on 405."""
    try:
        return await handler(request)
    except ApiError as exc:
        return error_response(exc.status, exc.message)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        headers = {"Allow": exc.headers["Allow"]} if "Allow" in exc.headers else None
        if exc.status == 404:
            message = f"no such endpoint: {request.path}"
        elif exc.status == 405:
            message = f"method {request.method} not allowed on {request.path}"
        else:
            message = exc.reason
        return error_response(exc.status, message, headers)
    except Exception:
        log.exception("HTTP handler failed: %s %s", request.method, request.path)
        return error_response(500, "internal error")


CONTROL_KEY: web.AppKey[TraderControl] = web.AppKey("control", TraderControl)
TOKEN_KEY: web.AppKey[str] = web.AppKey("token", str)


def _loopback(remote: str | None) -> bool:
    try:
        return remote is not None and ipaddress.ip_address(remote.split("%")[0]).is_loopback
    except ValueError:
        return False


def authorize(request: web.Request) -> None:
    """Raise unless the request may change the trader (see the module docstring)."""
    token = request.app.get(TOKEN_KEY) or ""
    if not token:
        if not _loopback(request.remote):
            raise ApiError(
                403, "no control token is configured: mutating requests are served to loopback only"
            )
        return
    given = request.headers.get("Authorization", "")
    scheme, _, credential = given.partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(credential.strip().encode(), token.encode()):
        raise ApiError(401, "missing or wrong control token (Authorization: Bearer <token>)")


def _control(request: web.Request) -> TraderControl:
    return request.app[CONTROL_KEY]


def _probe_response(probe: Probe) -> web.Response:
    status = 200 if probe.ok else 503
    return web.json_response({"ok": probe.ok, "detail": probe.detail}, status=status)


async def healthz(request: web.Request) -> web.Response:
    return _probe_response(_control(request).liveness())


async def readyz(request: web.Request) -> web.Response:
    return _probe_response(_control(request).readiness())


async def status(request: web.Request) -> web.Response:
    return web.json_response(dict(_control(request).status()))


async def metrics(request: web.Request) -> web.Response:
    body, content_type = _control(request).render_metrics()
    return web.Response(body=body, headers={"Content-Type": content_type})


async def stop(request: web.Request) -> web.Response:
    """Ask for a drain: no new signals; the process exits 0 once the open one closes."""
    authorize(request)
    reason = await _stop_reason(request)
    control = _control(request)
    await control.request_stop(reason)
    return _accepted(control, "drain")


async def pause(request: web.Request) -> web.Response:
    """No new signal opens until ``/resume``; an open one is still monitored and closes normally."""
    authorize(request)
    control = _control(request)
    await control.pause()
    return _accepted(control, "pause")


async def resume(request: web.Request) -> web.Response:
    authorize(request)
    control = _control(request)
    await control.resume()
    return _accepted(control, "resume")


async def close(request: web.Request) -> web.Response:
    """Close the open position at the next tick's price (reason ``closed``), or cancel a scheduled one."""
    authorize(request)
    control = _control(request)
    await control.close_pending()
    return _accepted(control, "close")


def _accepted(control: TraderControl, action: str) -> web.Response:
    # The status is a snapshot taken after the request was recorded: the trading loop runs on, so
    # a close may already be done (closeRequested back to false); "accepted" is what was asked.
    return web.json_response({"accepted": action, **control.status()}, status=202)


async def _stop_reason(request: web.Request) -> str | None:
    if request.content_length is not None and request.content_length > MAX_BODY_BYTES:
        raise ApiError(413, f"body larger than {MAX_BODY_BYTES} bytes")
    try:
        async with asyncio.timeout(READ_TIMEOUT_S):
            raw = await request.content.read(MAX_BODY_BYTES + 1)
    except TimeoutError:
        raise ApiError(408, f"body not received within {READ_TIMEOUT_S:g} s") from None
    if len(raw) > MAX_BODY_BYTES:
        raise ApiError(413, f"body larger than {MAX_BODY_BYTES} bytes")
    if not raw.strip():
        return None
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise ApiError(400, 'body must be empty or a JSON object such as {"reason": "..."}') from None
    if not isinstance(body, dict):
        raise ApiError(400, "body must be a JSON object")
    unknown = sorted(set(body) - STOP_FIELDS)
    if unknown:
        raise ApiError(400, f"unknown field(s) {', '.join(unknown)}; allowed: reason")
    reason = body.get("reason")
    if reason is not None and (not isinstance(reason, str) or len(reason) > 500):
        raise ApiError(400, "reason must be a string of at most 500 characters")
    return reason


def build_app(control: TraderControl, *, token: str | None = None) -> web.Application:
    app = web.Application(middlewares=[json_errors], client_max_size=MAX_BODY_BYTES)
    app[CONTROL_KEY] = control
    app[TOKEN_KEY] = token or ""
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/status", status)
    app.router.add_get("/metrics", metrics)
    app.router.add_post("/stop", stop)
    app.router.add_post("/pause", pause)
    app.router.add_post("/resume", resume)
    app.router.add_post("/close", close)
    return app


class _OnLoop:
    """``control`` as seen from the API thread: its coroutines run on the trader's loop."""

    def __init__(self, control: TraderControl, loop: asyncio.AbstractEventLoop) -> None:
        self._control = control
        self._loop = loop

    def status(self) -> Mapping[str, Any]:
        return self._control.status()

    def liveness(self) -> Probe:
        return self._control.liveness()

    def readiness(self) -> Probe:
        return self._control.readiness()

    def render_metrics(self) -> tuple[bytes, str]:
        return self._control.render_metrics()

    async def _there(self, coro: Coroutine[Any, Any, None]) -> None:
        await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(coro, self._loop))

    async def request_stop(self, reason: str | None) -> None:
        await self._there(self._control.request_stop(reason))

    async def pause(self) -> None:
        await self._there(self._control.pause())

    async def resume(self) -> None:
        await self._there(self._control.resume())

    async def close_pending(self) -> None:
        await self._there(self._control.close_pending())


class _BoundedSite(web.TCPSite):
    """A TCP site that closes a connection beyond :data:`MAX_CONNECTIONS` as soon as it is accepted."""

    async def start(self) -> None:
        await web.BaseSite.start(self)  # registers the site with its runner
        server = self._runner.server
        assert server is not None

        def protocol() -> asyncio.BaseProtocol:
            if len(server.connections) >= MAX_CONNECTIONS:
                log.warning("HTTP API: %d connections open, refusing one more", MAX_CONNECTIONS)
                return _Refuse()
            return server()

        self._server = await asyncio.get_running_loop().create_server(
            protocol, self._host, self._port, backlog=BACKLOG, reuse_address=True
        )


class _Refuse(asyncio.Protocol):
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        transport.close()


class ApiServer:
    """The app served on ``host:port`` from its own thread and event loop (port 0: any free port).

    ``start()`` is awaited on the trader's loop, which is where the control's coroutines then run.
    """

    def __init__(self, control: TraderControl, *, host: str, port: int, token: str | None = None) -> None:
        self._control = control
        self._token = token
        self._host = host
        self._port = port
        self.port: int | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runner: web.AppRunner | None = None

    async def start(self) -> None:
        control = _OnLoop(self._control, asyncio.get_running_loop())
        loop = asyncio.new_event_loop()
        thread = threading.Thread(target=loop.run_forever, name="http-api", daemon=True)
        thread.start()
        self._loop, self._thread = loop, thread
        future = asyncio.run_coroutine_threadsafe(self._serve(control), loop)
        try:
            await asyncio.wrap_future(future)
        except BaseException:
            await self.close()
            raise
        log.info("HTTP API listening on %s:%s", self._host, self.port)

    async def _serve(self, control: TraderControl) -> None:
        runner = web.AppRunner(
            build_app(control, token=self._token),
            access_log=None,
            handle_signals=False,
            handler_cancellation=True,
            keepalive_timeout=IDLE_TIMEOUT_S,
        )
        await runner.setup()
        self._runner = runner
        await _BoundedSite(runner, self._host, self._port).start()
        addresses = runner.addresses
        self.port = int(addresses[0][1]) if addresses else self._port

    async def close(self) -> None:
        loop, thread, runner = self._loop, self._thread, self._runner
        if loop is None or thread is None:
            return
        self._loop = self._thread = self._runner = None
        if runner is not None:
            await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(runner.cleanup(), loop))
        loop.call_soon_threadsafe(loop.stop)
        await asyncio.to_thread(thread.join, 5)
        loop.close()
