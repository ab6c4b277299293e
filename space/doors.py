"""The app's doors: which HTTP routes may start a handler, how much a request may carry, and
how much the app keeps on disk for its clients.

Gradio's own limits come first (``queue(max_size=..., api_open=False)``, ``max_file_size``,
``delete_cache``); this module adds what Gradio lacks:

- :class:`Doors`, an ASGI middleware: handlers are called by name only if public
  (``/call/upscale``), never the page's own (``on_view``...); every POST
  body is bounded, an upload must fit in :class:`TempStore` before it is read, and the files
  a request names must be uploads of this server or inline images.
- :class:`TempStore`: the app's temporary folder (uploads, results, decoded data: URLs) held
  under a total size and an age, oldest files evicted first.
- :func:`save_data_url`: an image sent inline as a ``data:`` URL, written to a file undecoded
  (bounded in size first), so that its header is checked like any upload's.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import json
import logging
import os
import re
import threading
import time
import uuid
from collections.abc import Awaitable, Callable, MutableMapping
from pathlib import Path
from typing import Any

import anyio

from rtsr.errors import InputError

logger = logging.getLogger(__name__)

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

#: Where Gradio mounts its routes.
API_PREFIX = "/gradio_api"
#: Room for a multipart upload's headers and boundaries beside the file itself.
MULTIPART_SLACK = 1024 * 1024
#: Gradio routes that take POSTs this app has no use for: the screen recorder's (it runs ffmpeg
#: on an upload the folder's bound does not count) and the components' server functions (none
#: of the app's components has one).
_UNUSED_ROUTES = frozenset({"process_recording", "component_server"})
#: Each file counts as at least this much against the folder's size, so that a flood of tiny
#: files meets the same bound (each costs a disk block and an inode whatever its size).
MIN_FILE_COST = 64 * 1024


def human_size(size: int) -> str:
    """``size`` bytes in Gradio's notation, e.g. ``"50mb"``."""
    for unit, factor in (("gb", 1024**3), ("mb", 1024**2), ("kb", 1024)):
        if size >= factor and size % factor == 0:
            return f"{size // factor}{unit}"
    return f"{size}b"


class TempStore:
    """The app's temporary folder, bounded in total size and in the age of its files.

    Files present when :meth:`keep_present` is called (the examples and the page's initial
    values, which Gradio copies in while the app is built) are kept; every other file is
    deleted once older than ``max_age_s``, and the oldest go first whenever an upload would take
    the folder past ``max_bytes``. Uploads being received count against the size until done.
    """

    def __init__(self, folder: Path, max_bytes: int, max_age_s: float) -> None:
        self.folder = folder
        self.max_bytes = max_bytes
        self.max_age_s = max_age_s
        self._keep: frozenset[str] = frozenset()
        self._incoming = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()

    def keep_present(self) -> None:
        """Keep the files now in the folder for as long as the app runs."""
        self._keep = frozenset(str(path) for _, _, path in self._files())

    def _files(self) -> list[tuple[float, int, Path]]:
        """``(last change, cost in bytes, path)`` of every file under the folder."""
        found = []
        for root, _, names in os.walk(self.folder):
            for name in names:
                path = Path(root, name)
                try:
                    stat = path.lstat()
                except FileNotFoundError:  # deleted meanwhile (a request's own cleanup)
                    continue
                # ctime too: a copy or a rename into the folder keeps an old mtime
                found.append((max(stat.st_mtime, stat.st_ctime), max(stat.st_size, MIN_FILE_COST), path))
        return found

    def used(self) -> int:
        """Bytes the folder's files count for (each at least :data:`MIN_FILE_COST`)."""
        return sum(cost for _, cost, _ in self._files())

    def sweep(self, incoming: int = 0) -> bool:
        """Delete files past their age, then the oldest until ``incoming`` more bytes fit.

        Returns whether they fit; if so they are reserved until :meth:`received` is called.
        """
        with self._lock:
            now = time.time()
            total, evictable = 0, []
            for changed, cost, path in self._files():
                if str(path) not in self._keep and now - changed > self.max_age_s:
                    path.unlink(missing_ok=True)
                    continue
                total += cost
                if str(path) not in self._keep:
                    evictable.append((changed, cost, path))
            budget = self.max_bytes - self._incoming - incoming
            evicted = 0
            for _, cost, path in sorted(evictable, key=lambda f: f[0]):
                if total <= budget:
                    break
                path.unlink(missing_ok=True)
                total -= cost
                evicted += 1
            if evicted:
                logger.info("temp folder over %s: evicted the %d oldest files", human_size(self.max_bytes), evicted)
            self._remove_empty_folders()
            if total > budget:
                return False
            self._incoming += incoming
            return True

    def received(self, incoming: int) -> None:
        """An upload reserved by :meth:`sweep` is done (stored or failed)."""
        with self._lock:
            self._incoming -= incoming

    def _remove_empty_folders(self) -> None:
        # Gradio keeps each upload in a folder named by its hash; the folders would pile up.
        # Only those empty for a while: Gradio makes one, then moves the upload into it.
        settled = time.time() - 60
        for root, dirs, files in os.walk(self.folder, topdown=False):
            if dirs or files or Path(root) == self.folder:
                continue
            with contextlib.suppress(OSError):  # gone, or a file arrived meanwhile
                if os.stat(root).st_mtime < settled:
                    os.rmdir(root)

    def start(self) -> None:
        """Sweep in a background thread, often enough that no file outlives its age by much."""
        every = max(1.0, min(30.0, self.max_age_s / 2))

        def run() -> None:
            while not self._stop.wait(every):
                try:
                    self.sweep()
                except Exception:  # keep sweeping: one failure must not leave the folder unbounded
                    logger.exception("temp folder sweep failed")

        threading.Thread(target=run, name="rtsr-temp-sweep", daemon=True).start()

    def stop(self) -> None:
        """Stop the background sweep."""
        self._stop.set()


_DATA_URL = re.compile(r"data:(?P<type>[\w.+-]+/[\w.+-]+)?(?P<params>(;[^,;]*)*?);base64,", re.ASCII)
#: File endings by media type, for the name of an inline image that came without one.
_ENDINGS = {"image/png": ".png", "image/jpeg": ".jpg", "image/webp": ".webp", "image/bmp": ".bmp", "image/tiff": ".tif"}


def safe_name(name: str | None, fallback: str = "upload") -> str:
    """A client's file name as messages and files may use it: its last part, printable, short."""
    text = Path(name or "").name
    text = "".join(c for c in text if c.isprintable() and c not in "/\\")[:100].strip()
    return text if text and text not in (".", "..") else fallback


def save_data_url(url: str, folder: Path, name: str | None, max_bytes: int) -> Path:
    """Write the image of a base64 ``data:`` URL to a file of its own under ``folder``,
    without decoding the image, and return its path; the caller deletes it when done.

    Raises:
        InputError: not a base64 data: URL, damaged base64, or more than ``max_bytes``;
            the message is one line and never quotes the payload.
    """
    match = _DATA_URL.match(url[:300])
    ending = _ENDINGS.get(match.group("type") or "", "") if match else ""
    shown = safe_name(name, f"upload{ending}")
    if match is None:
        raise InputError(f"{shown}: not a base64 data: URL (expected data:image/...;base64,...)")
    payload = url[match.end() :]
    # base64 takes 4 characters for 3 bytes: refuse from the length, before decoding anything
    if len(payload) // 4 * 3 > max_bytes:
        raise InputError(f"{shown}: larger than this host accepts (at most {human_size(max_bytes)} a file)")
    try:
        data = base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError):
        raise InputError(f"{shown}: the data: URL's base64 is damaged") from None
    path = folder / uuid.uuid4().hex / shown
    path.parent.mkdir(parents=True)
    path.write_bytes(data)
    return path


class Doors:
    """ASGI middleware in front of Gradio's routes.

    - ``/call/NAME`` only for ``public`` names: the page's own handlers stay the page's.
      (Gradio's direct ``/run/`` routes, outside the queue, are closed to every queued handler
      by ``queue(api_open=False)``.)
    - The POST routes of Gradio features the app does not use are closed.
    - A POST body over its bound is refused before it is read: an upload may carry
      ``max_file_size`` (plus its multipart framing), anything else ``max_body``; the count
      is enforced on the bytes received too, whatever the request declared.
    - An upload is first made room for in ``store``; when uploads being received fill it, the
      request is refused ("try again").
    """

    def __init__(
        self, app: ASGIApp, *, public: frozenset[str], max_file_size: int, max_body: int, store: TempStore
    ) -> None:
        self.app = app
        self.public = public
        self.max_upload = max_file_size + MULTIPART_SLACK
        self.max_file_size = max_file_size
        self.max_body = max_body
        self.store = store

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        path = "/" + scope["path"].strip("/")
        route = path.removeprefix(API_PREFIX) if path.startswith(API_PREFIX + "/") else path
        parts = route.strip("/").split("/")
        # /run/ and /api/ are Gradio's: with queue(api_open=False) they refuse every queued
        # handler, and serve the page's unqueued one (loading an example) as the page needs
        if parts[0] in _UNUSED_ROUTES:
            await _refuse(send, 404, "not served by this app")
            return
        if parts[0] == "call":
            name = parts[2] if len(parts) > 2 and parts[1] == "v2" else parts[1] if len(parts) > 1 else ""
            if name not in self.public:
                names = ", ".join(sorted(self.public))
                await _refuse(send, 404, f"no API endpoint named {name!r} (this app has: {names})")
                return
        upload = route == "/upload"
        limit = self.max_upload if upload else self.max_body
        length = _content_length(scope)
        if length is not None and length > limit:
            what = f"an upload may be at most {human_size(self.max_file_size)}" if upload else "request too large"
            await _refuse(send, 413, what)
            return
        if parts[0] == "call" or route == "/queue/join":
            await self._run_request(scope, receive, send, limit)
            return
        bounded = _bounded(receive, limit)
        if not upload:
            await self.app(scope, bounded, send)
            return
        reserve = limit if length is None else length
        # in a worker thread: walking a large folder would hold up every other request
        if not await anyio.to_thread.run_sync(self.store.sweep, reserve):
            # read (and drop) the body first: a client still sending would miss the answer
            while (await bounded()).get("more_body"):
                pass
            await _refuse(send, 503, "the server is receiving too many uploads: try again in a minute")
            return
        try:
            await self.app(scope, bounded, send)
        finally:
            self.store.received(reserve)

    async def _run_request(self, scope: Scope, receive: Receive, send: Send, limit: int) -> None:
        """Pass a request to run a handler on, its files checked (see :func:`inspect_files`)."""
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunks.append(message.get("body", b""))
            size += len(chunks[-1])
            if size > limit:  # more than it declared, or it declared nothing
                await _refuse(send, 413, "request too large")
                return
            if not message.get("more_body"):
                break
        body = b"".join(chunks)
        try:
            request = json.loads(body)
        except ValueError:
            request = None  # Gradio answers a malformed request itself
        if request is not None:
            try:
                if inspect_files(request, self.store.folder):
                    body = json.dumps(request).encode()
            except InputError as e:
                await _refuse(send, 400, str(e))
                return
        headers = [(k, v) for k, v in scope.get("headers", []) if k != b"content-length"]
        scope = {**scope, "headers": [*headers, (b"content-length", str(len(body)).encode())]}
        sent = False

        async def replay() -> Message:
            nonlocal sent
            if sent:
                return await receive()  # the client's disconnect, when it comes
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}

        await self.app(scope, replay, send)


def _is_file(value: dict[str, Any]) -> bool:
    """Whether Gradio could read ``value`` as a file: one marked as ``gradio.FileData``, or any
    object with a ``path`` or ``url``, with or without the mark (a component's data model
    takes either, and would open the path as given)."""
    meta = value.get("meta")
    if isinstance(meta, dict) and meta.get("_type") == "gradio.FileData":
        return True
    return "path" in value or "url" in value


def inspect_files(request: Any, uploads: Path) -> bool:
    """Check every file a request to run a handler names, in place; return whether any changed.
    A file is any object with a ``path`` or ``url``, marked as ``gradio.FileData`` or not, at
    any depth of the request.

    - An image sent inline (a ``data:`` URL as its ``path`` or ``url``) is handed to the
      component as a plain ``url``, which :func:`save_data_url` writes out undecoded; Gradio
      would otherwise decode it, or fail with a message quoting the payload.
    - A file must be one uploaded to this server (under ``uploads``): Gradio would refuse others
      with a message giving the server's paths, and would download a URL of any size.

    Raises:
        InputError: a file that is neither, in one line naming it.
    """
    changed = False
    if isinstance(request, list):
        for item in request:
            changed |= inspect_files(item, uploads)
        return changed
    if not isinstance(request, dict):
        return False
    if not _is_file(request):
        for item in request.values():
            changed |= inspect_files(item, uploads)
        return changed
    path, url = request.get("path"), request.get("url")
    inline = next((v for v in (path, url) if isinstance(v, str) and v.startswith("data:")), None)
    if inline is not None:
        orig_name = request.get("orig_name")
        request.clear()
        request.update({"path": "inline", "url": inline, "orig_name": orig_name})
        return True
    orig_name = request.get("orig_name")
    shown = safe_name(orig_name if isinstance(orig_name, str) else path if isinstance(path, str) else None, "file")
    if not isinstance(path, str) or re.match(r"[a-zA-Z][\w+.-]*://", path):
        raise InputError(f"{shown}: send the file itself (POST {API_PREFIX}/upload), not a link to it")
    # abspath, not resolve(): the path is the client's, and is not looked up on disk here
    if not Path(os.path.abspath(path)).is_relative_to(os.path.abspath(uploads)):
        raise InputError(f"{shown}: not a file uploaded to this server (POST {API_PREFIX}/upload first)")
    return False


def _content_length(scope: Scope) -> int | None:
    for key, value in scope.get("headers", []):
        if key == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


def _bounded(receive: Receive, limit: int) -> Receive:
    """``receive`` that ends the request as a disconnect once more than ``limit`` bytes came."""
    seen = 0

    async def bounded() -> Message:
        nonlocal seen
        message = await receive()
        if message["type"] == "http.request":
            seen += len(message.get("body", b""))
            if seen > limit:
                return {"type": "http.disconnect"}
        return message

    return bounded


async def _refuse(send: Send, status: int, message: str) -> None:
    """Answer with FastAPI's error shape, ``{"detail": message}``: one line."""
    body = json.dumps({"detail": message}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
