"""Docker's remote IPAM API over HTTP on a unix socket (aiohttp).

Every call is a POST with a JSON body (empty for the calls that take no
argument). Every failure is a non-2xx status with ``{"Err": message}``: Docker
reads ``Err`` from a failed reply, and a 200 carrying an error would count as a
success (docs/docker-ipam.md, "Errors").
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from aiohttp import web

from ..errors import (
    FastDHCPError,
    InUseError,
    IpamError,
    NotRecordedError,
    ServerFailedError,
    ServerTimeoutError,
    UnknownPoolError,
    UnsupportedMediaError,
)
from .driver import MAC_OPTION, Driver

_log = logging.getLogger(__name__)

MAX_BODY = 1 << 20  # 1 MiB: Docker's requests are a few hundred bytes
CONTENT_TYPE = "application/vnd.docker.plugins.v1+json"
DRIVER_KEY: web.AppKey[Driver] = web.AppKey("driver", Driver)

# The longest Err the plugin sends (1 KiB with room for JSON escapes).
MAX_ERR_CHARS = 1000

# Each refusal's status, by its type: the one place that knows HTTP's codes.
STATUS: dict[type[IpamError], int] = {
    UnknownPoolError: 404,
    UnsupportedMediaError: 415,
    InUseError: 409,
    ServerFailedError: 502,
    ServerTimeoutError: 504,
    NotRecordedError: 500,
}


def status_of(error: IpamError) -> int:
    """The HTTP status for a refusal: its type's, or 400 (the request as asked)."""
    for kind in type(error).__mro__:
        status = STATUS.get(kind)
        if status is not None:
            return status
    return 400


Handler = Callable[[Driver, Mapping[str, Any]], Awaitable[dict[str, Any]]]


def _reply(payload: Mapping[str, Any], status: int = 200) -> web.Response:
    return web.Response(status=status, body=json.dumps(payload).encode(), content_type=CONTENT_TYPE)


def _err(message: str) -> dict[str, str]:
    # Docker prints Err to the user as it is: keep it to a screenful, whatever
    # the request or the segment put into it.
    if len(message) > MAX_ERR_CHARS:
        message = message[: MAX_ERR_CHARS - 3] + "..."
    return {"Err": message}


def _error(message: str, status: int) -> web.Response:
    return _reply(_err(message), status)


async def _body(request: web.Request) -> Mapping[str, Any]:
    # Docker sends application/vnd.docker.plugins.v1.2+json (or no type at all
    # with an empty body); anything that is not JSON is refused.
    kind = request.content_type
    if request.can_read_body and kind not in ("application/octet-stream",) and "json" not in kind:
        raise UnsupportedMediaError(f"expected a JSON body, not {kind}")
    raw = await request.read()
    if not raw.strip():
        return {}
    try:
        body = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise IpamError(f"malformed JSON in the request: {exc}") from None
    if not isinstance(body, dict):
        raise IpamError(f"the request must be a JSON object, not {type(body).__name__}")
    return body


def _endpoint(handler: Handler) -> Callable[[web.Request], Awaitable[web.Response]]:
    async def serve(request: web.Request) -> web.Response:
        started = time.monotonic()
        body: Mapping[str, Any] = {}
        payload: Mapping[str, Any]
        status = 200
        try:
            body = await _body(request)
            payload = await handler(request.app[DRIVER_KEY], body)
        except IpamError as exc:
            payload, status = _err(str(exc)), status_of(exc)
        except web.HTTPRequestEntityTooLarge:
            payload, status = _err(f"the request is larger than {MAX_BODY} bytes"), 413
        except FastDHCPError as exc:
            payload, status = _err(str(exc)), 500
        except Exception as exc:  # noqa: BLE001 - a bug must not take the daemon down
            _log.exception("%s failed", request.path)
            payload, status = _err(f"internal error in fastdhcp: {exc!r} (see its log)"), 500
        # A success is already told by its own line (a lease event, a pool line);
        # a failure is told here, once, with what Docker asked for.
        level = logging.DEBUG if status == 200 else logging.WARNING
        if _log.isEnabledFor(level):
            options = body.get("Options") if isinstance(body, dict) else None
            mac = options.get(MAC_OPTION) if isinstance(options, dict) else None
            _log.log(
                level,
                "%s mac=%s address=%s -> %d %s (%.3f s)",
                request.path.removeprefix("/IpamDriver."),
                str(mac or "-")[:40],
                body.get("Address") or payload.get("Address") or "-",
                status,
                payload.get("Err", "ok"),
                time.monotonic() - started,
            )
        return _reply(payload, status)

    return serve


async def _activate(driver: Driver, body: Mapping[str, Any]) -> dict[str, Any]:
    return {"Implements": ["IpamDriver"]}


ROUTES: dict[str, Handler] = {
    "/Plugin.Activate": _activate,
    "/IpamDriver.GetCapabilities": Driver.capabilities,
    "/IpamDriver.GetDefaultAddressSpaces": Driver.default_address_spaces,
    "/IpamDriver.RequestPool": Driver.request_pool,
    "/IpamDriver.ReleasePool": Driver.release_pool,
    "/IpamDriver.RequestAddress": Driver.request_address,
    "/IpamDriver.ReleaseAddress": Driver.release_address,
}


async def _not_found(request: web.Request) -> web.Response:
    return _error(f"unknown endpoint {request.method} {request.path}", 404)


def make_app(driver: Driver) -> web.Application:
    app = web.Application(client_max_size=MAX_BODY)
    app[DRIVER_KEY] = driver
    for path, handler in ROUTES.items():
        app.router.add_post(path, _endpoint(handler))
    app.router.add_route("*", "/{tail:.*}", _not_found)
    return app
