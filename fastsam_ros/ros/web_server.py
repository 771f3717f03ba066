"""The web page's server (``fastsam_web``), without ROS: one page, its prompts in, the overlay and answers out.

aiohttp serves everything from one asyncio loop: ``GET /`` the page (its JS and CSS inline, so an offline robot needs
nothing else), ``POST /prompt`` a prompt as JSON, and ``GET /stream`` a WebSocket that carries the throttled overlay
(binary: the frame's stamp, 8 bytes big-endian nanoseconds, then the JPEG) and the answers (text: JSON). The ROS side
(:mod:`fastsam_ros.ros.web_node`) calls :meth:`WebServer.send_frame` and :meth:`WebServer.send_answer` from its own
thread. Off loopback every request but the page needs the ``token`` (the page asks for it once).
"""

from __future__ import annotations

import asyncio
import hmac
import ipaddress
import json
import logging
import math
import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

from aiohttp import WSMsgType, web

MAX_POINTS = 32
MAX_TEXT = 200
MAX_BODY = 16 * 1024  # a prompt is a few hundred bytes
FRAME_HEADER = struct.Struct(">Q")  # the frame's stamp in nanoseconds, before the JPEG


class NotConnected(RuntimeError):
    """The node the page talks to is not listening yet (the message says which topic): a 503, try again."""


class BadPrompt(ValueError):
    """A prompt from the page that cannot be sent: answered 400 with this text."""


@dataclass(frozen=True)
class PagePrompt:
    """What the page asked for, checked: the ``click`` prompt's points (label 1 foreground, 0 background), boxes and
    text, followed or one-shot; or ``clear``."""

    points: tuple[tuple[float, float], ...] = ()
    labels: tuple[int, ...] = ()
    boxes: tuple[tuple[float, float, float, float], ...] = ()
    text: str = ""
    follow: bool = True
    clear: bool = False


@dataclass
class WebSettings:
    host: str = "127.0.0.1"
    port: int = 8080
    token: str = ""


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:  # a host name: it may resolve anywhere
        return False


def check_binding(settings: WebSettings) -> None:
    """Refuse (ValueError saying why) to listen off loopback without a token: anyone on the network could steer
    the robot's attention."""
    if not is_loopback(settings.host) and not settings.token:
        raise ValueError(f"refusing to serve the web page on {settings.host!r} without a token: set the `token` "
                         f"parameter (the page asks for it once), or keep host 127.0.0.1")


def _number(value: Any, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise BadPrompt(f"{what} must be a finite number, got {value!r}")
    return float(value)


def parse_prompt(data: Any) -> PagePrompt:
    """The page's JSON (``{"points": [[x, y, label], ...], "boxes": [[x1, y1, x2, y2]], "text": "", "follow": true}``
    or ``{"clear": true}``) as a :class:`PagePrompt`; BadPrompt when it is not one. The node checks the rest
    (pixels inside the frame, its limits) as for any prompt."""
    if not isinstance(data, dict):
        raise BadPrompt("a prompt is a JSON object")
    unknown = set(data) - {"points", "boxes", "text", "follow", "clear"}
    if unknown:
        raise BadPrompt(f"unknown fields {sorted(unknown)}")
    if data.get("clear") is True:
        return PagePrompt(clear=True)
    points = data.get("points", [])
    boxes = data.get("boxes", [])
    text = data.get("text", "")
    follow = data.get("follow", True)
    if not isinstance(points, list) or len(points) > MAX_POINTS or not all(
            isinstance(p, list) and len(p) == 3 and p[2] in (0, 1) for p in points):
        raise BadPrompt(f"points must be at most {MAX_POINTS} [x, y, label] with label 0 or 1")
    if not isinstance(boxes, list) or len(boxes) > 1 or not all(isinstance(b, list) and len(b) == 4 for b in boxes):
        raise BadPrompt("boxes must be at most one [x1, y1, x2, y2]")
    if not isinstance(text, str) or len(text) > MAX_TEXT:
        raise BadPrompt(f"text must be a string of at most {MAX_TEXT} characters")
    if not isinstance(follow, bool):
        raise BadPrompt("follow must be true or false")
    if not (points or boxes or text.strip()):
        raise BadPrompt("an empty prompt: give points, a box or text")
    return PagePrompt(
        points=tuple((_number(x, "x"), _number(y, "y")) for x, y, _ in points),
        labels=tuple(int(label) for _, _, label in points),
        boxes=tuple(tuple(_number(v, "box") for v in box) for box in boxes),  # type: ignore[misc]
        text=text.strip(), follow=follow)


def answer_json(prompt_id: str, status: str, reason: str, stamp_ns: int, track_id: int,
                position: tuple[float, float, float] | None, box: tuple[float, ...] | None) -> str:
    """An answer for the page's status line (``box``: the first object's, by which the page knows the answer to its
    tap from a followed object's answer already on its way)."""
    return json.dumps({"prompt_id": prompt_id, "status": status, "reason": reason, "stamp": str(stamp_ns),
                       "track_id": track_id, "position": position, "box": box})


def _ignore_closed(sent: asyncio.Future) -> None:
    """A page that went away while a message was on its way: nothing to do."""
    if not sent.cancelled():
        sent.exception()


@dataclass
class WebServer:
    """The aiohttp application and the open page connections; ``send`` is called by the prompt publisher."""

    settings: WebSettings
    send: Callable[[PagePrompt], None]
    warn: Callable[[str], None] = logging.getLogger("fastsam_web").warning  # the node's logger in fastsam_web
    _sockets: dict[web.WebSocketResponse, asyncio.Future | None] = field(default_factory=dict)  # -> frame in flight
    _loop: asyncio.AbstractEventLoop | None = None
    _last_answer: str = ""
    _runner: web.AppRunner | None = None

    def app(self) -> web.Application:
        application = web.Application(middlewares=[self._log_refusals], client_max_size=MAX_BODY)
        application.router.add_get("/", self._page)
        application.router.add_post("/prompt", self._prompt)
        application.router.add_get("/stream", self._stream)
        return application

    async def start(self) -> None:
        """Listen (check_binding first); from now on the ROS thread may send frames and answers."""
        check_binding(self.settings)
        self._loop = asyncio.get_running_loop()
        self._runner = web.AppRunner(self.app(), access_log=None, handle_signals=False)
        await self._runner.setup()
        await web.TCPSite(self._runner, self.settings.host, self.settings.port).start()

    async def stop(self) -> None:
        for socket in list(self._sockets):
            await socket.close()
        if self._runner is not None:
            await self._runner.cleanup()

    # ------------------------------------------------------------------ from the ROS thread

    def send_frame(self, stamp_ns: int, jpeg: bytes) -> None:
        self._from_thread(FRAME_HEADER.pack(stamp_ns) + jpeg)

    def send_answer(self, answer: str) -> None:
        self._from_thread(answer)

    def _from_thread(self, message: bytes | str) -> None:
        loop = self._loop
        if loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(self._broadcast, message)

    def _broadcast(self, message: bytes | str) -> None:
        if isinstance(message, str):
            self._last_answer = message  # a page that connects later sees it at once
        for socket, in_flight in list(self._sockets.items()):
            if socket.closed:
                continue
            if isinstance(message, str):
                asyncio.ensure_future(socket.send_str(message)).add_done_callback(_ignore_closed)
            elif in_flight is None or in_flight.done():  # a slow page skips frames instead of queueing them
                self._sockets[socket] = asyncio.ensure_future(socket.send_bytes(message))
                self._sockets[socket].add_done_callback(_ignore_closed)

    # ------------------------------------------------------------------ requests

    @web.middleware
    async def _log_refusals(self, request: web.Request, handler: Callable[[web.Request], Any]) -> web.StreamResponse:
        """Every refused request leaves one log line (and never a traceback on the page)."""
        try:
            response = await handler(request)
        except web.HTTPException as refusal:
            if refusal.status >= 400:
                self.warn(f"{request.remote} {request.method} {request.path_qs[:200]}: {refusal.status} "
                                 f"{refusal.text or refusal.reason}")
            raise
        if response.status >= 400:
            self.warn(f"{request.remote} {request.method} {request.path[:200]}: {response.status}")
        return response

    def _authorised(self, request: web.Request) -> None:
        token = self.settings.token
        given = request.headers.get("X-Token") or request.query.get("token", "")
        if token and not hmac.compare_digest(given.encode(), token.encode()):
            raise web.HTTPUnauthorized(text="a token is needed: the `token` parameter of fastsam_web")

    async def _page(self, request: web.Request) -> web.Response:
        page = resources.files("fastsam_ros.ros").joinpath("web_page.html").read_text()
        return web.Response(text=page, content_type="text/html", headers={
            "Content-Security-Policy": "default-src 'self'; img-src 'self' blob:; style-src 'unsafe-inline'; "
                                       "script-src 'unsafe-inline'; connect-src 'self'",
            "Cache-Control": "no-store"})

    async def _prompt(self, request: web.Request) -> web.Response:
        self._authorised(request)
        try:
            prompt = parse_prompt(json.loads(await request.text()))
        except (json.JSONDecodeError, UnicodeDecodeError) as error:
            raise web.HTTPBadRequest(text=f"not JSON: {error}") from None
        except BadPrompt as error:
            raise web.HTTPBadRequest(text=str(error)) from None
        try:
            self.send(prompt)
        except NotConnected as error:
            raise web.HTTPServiceUnavailable(text=str(error)) from None
        return web.Response(status=204)

    async def _stream(self, request: web.Request) -> web.WebSocketResponse:
        self._authorised(request)
        socket = web.WebSocketResponse(heartbeat=20.0)
        await socket.prepare(request)
        self._sockets[socket] = None
        try:
            if self._last_answer:
                await socket.send_str(self._last_answer)
            async for message in socket:  # the page only listens; anything it sends is ignored
                if message.type == WSMsgType.ERROR:
                    break
        finally:
            self._sockets.pop(socket, None)
        return socket
