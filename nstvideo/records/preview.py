"""The live page of a run (``--preview [HOST:]PORT``): a Progress consumer and the small HTTP
server that shows it in a browser.

Why server-sent events on the standard library's ``ThreadingHTTPServer``: the page only listens
(run -> page), which is exactly what an SSE stream is; browsers reconnect an ``EventSource`` on
their own and parse it natively; and it needs no dependency (websockets would need a library, or a
hand-written framing layer, for traffic that goes one way).

What the run pays, by design:

* the callback, on the optimizer's thread, keeps a reference to the event and counts it: no copy,
  no device synchronisation, nothing else;
* a sampler thread looks at the latest event a few times a second: the loss numbers always (a few
  floats, so a page opened late still gets the whole chart), the canvas image only while a page
  is connected, subsampled on the device before anything is copied (a poster's canvas is never
  copied whole) and encoded to JPEG off the optimizer's thread;
* every page has a mailbox of one message: a slow page gets the newest state when it is ready to
  read again, never a queue, and neither the sampler nor the run ever waits for it. A page that
  stops reading altogether is dropped after ``WRITE_TIMEOUT`` seconds.

The server goes away with the run: ``close`` sends the final state (finished, interrupted or
failed, with the output path), ends every stream, closes the port and joins every thread.
"""

from __future__ import annotations

import base64
import collections
import contextlib
import json
import math
import os
import socket
import sys
import threading
import time
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Callable, Iterator, Optional, Sequence
from urllib.parse import urlsplit

import cv2
import numpy as np
import torch

from ..config import RecordConfig
from ..errors import NstError, UsageError
from ..optim.engine import Progress

DEFAULT_HOST = "127.0.0.1"
LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")
PAGE = Path(__file__).with_name("preview.html")
SAMPLE_SECONDS = 0.25  # the sampler's period: at most 4 canvas images a second
IMAGE_LONG_SIDE = 512  # canvas images are at most this many pixels on their long side
JPEG_QUALITY = 85
CHART_POINTS = 300  # loss samples sent to a page (the history is thinned to this)
HISTORY_POINTS = 4000  # loss samples kept (halved when full)
RATE_WINDOW_SECONDS = 10.0  # iterations/s over this much recent time
KEEPALIVE_SECONDS = 10.0  # a comment line on a quiet stream, so a closed page is noticed
WRITE_TIMEOUT = 5.0  # a page that stops reading for this long is dropped
EXIT_INTERRUPTED = 130

BlockCallback = Callable[[int, int], None]


def parse_address(text: str) -> tuple[str, int]:
    """'8000' -> ('127.0.0.1', 8000); '0.0.0.0:8000'; '[::1]:8000'. Port 0: any free port."""
    expected = f"--preview {text!r}: expected [HOST:]PORT such as 8000 or 0.0.0.0:8000"
    host, port_text = DEFAULT_HOST, text.strip()
    if port_text.startswith("["):  # an IPv6 host in brackets
        host, sep, port_text = port_text[1:].partition("]:")
        if not sep or not host:
            raise UsageError(expected)
    elif ":" in port_text:
        host, _, port_text = port_text.rpartition(":")
        if not host or ":" in host:
            raise UsageError(expected)
    if not port_text.isdigit() or not 0 <= int(port_text) <= 65535:
        raise UsageError(expected)
    return host, int(port_text)


def thumbnail(canvas: torch.Tensor, long_side: int = IMAGE_LONG_SIDE) -> np.ndarray:
    """(1, 3, H, W) in [0, 1] -> (h, w, 3) uint8 RGB, long side at most ``long_side``.

    The canvas is subsampled where it lives before it is copied, so a poster's canvas costs a
    copy of about twice the thumbnail, never the whole canvas."""
    with torch.no_grad():
        image = canvas.detach()[0]
        step = max(1, max(image.shape[-2:]) // (2 * long_side))
        small = image[:, ::step, ::step].float().clamp(0, 1).mul(255).round().to(torch.uint8)
        pixels = small.permute(1, 2, 0).cpu().numpy()
    height, width = pixels.shape[:2]
    if max(height, width) > long_side:
        factor = long_side / max(height, width)
        size = (max(1, round(width * factor)), max(1, round(height * factor)))
        pixels = cv2.resize(pixels, size, interpolation=cv2.INTER_AREA)
    return np.ascontiguousarray(pixels)


def encode_jpeg(pixels: np.ndarray) -> bytes:
    ok, data = cv2.imencode(".jpg", cv2.cvtColor(pixels, cv2.COLOR_RGB2BGR),
                            [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
    if not ok:
        raise RuntimeError("JPEG encoding failed")
    return data.tobytes()


def memory_in_use() -> dict[str, float]:
    """MiB in use: each CUDA device's allocated tensors (where any), and the host process's RSS."""
    used: dict[str, float] = {}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        for index in range(torch.cuda.device_count()):
            allocated = torch.cuda.memory_allocated(index)
            if allocated:
                used[f"cuda:{index}"] = round(allocated / 2 ** 20, 1)
    try:
        with open("/proc/self/statm") as statm:
            used["host"] = round(int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2 ** 20, 1)
    except (OSError, ValueError, IndexError):
        import resource

        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux, bytes on macOS
        used["host (peak)"] = round(peak / (2 ** 20 if sys.platform == "darwin" else 2 ** 10), 1)
    return used


def block_box(index: int, grid: tuple[int, int]) -> list[float]:
    """Block ``index``'s inner box as fractions [top, bottom, left, right] of the canvas.

    Blocks are numbered row by row and their inner boxes are as equal as the network's stride
    allows, so an even split is within one stride of the exact box."""
    rows, cols = grid
    row, col = divmod(index, cols)
    return [row / rows, (row + 1) / rows, col / cols, (col + 1) / cols]


def thinned(values: Sequence[Any], most: int) -> list[Any]:
    """At most ``most`` evenly spaced items, the last one always included."""
    if len(values) <= most:
        return list(values)
    step = len(values) / most
    picked = [values[int(i * step)] for i in range(most - 1)]
    return picked + [values[-1]]


class _Page:
    """One connected page: a mailbox of one message, newest wins."""

    def __init__(self):
        self.ready = threading.Condition()
        self.message: Optional[bytes] = None
        self.last = False  # the message in the box (or already sent) is the final one
        self.connection: Optional[socket.socket] = None


class _Server(ThreadingHTTPServer):
    daemon_threads = True  # never keeps the interpreter alive ...
    block_on_close = True  # ... but close() joins every request thread
    allow_reuse_address = True
    preview: "Preview"


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    timeout = WRITE_TIMEOUT  # socket timeout: a blocked write to a stalled page fails after this

    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        path = urlsplit(self.path).path
        preview = self.server.preview
        if path == "/":
            self._send(PAGE.read_bytes(), "text/html; charset=utf-8")
        elif path == "/events":
            preview._stream(self)
        elif path == "/state.json":
            self._send(preview._current_message(raw=True), "application/json")
        elif path in ("/canvas.jpg", "/previous.jpg"):
            data = preview._images.get(path[1:-4])
            if data is None:
                self.send_error(HTTPStatus.NOT_FOUND, "no image yet")
            else:
                self._send(data, "image/jpeg")
        else:
            self.send_error(HTTPStatus.NOT_FOUND)

    def _send(self, body: bytes, content_type: str) -> None:
        self.send_response(HTTPStatus.OK)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:  # the run's stderr is for the run
        pass


class Preview:
    """Progress consumer serving the live page at http://HOST:PORT/ while the run lasts::

        preview = Preview("127.0.0.1", 8000, command="stylize", output=path)
        preview.start()
        stylize_image(..., callbacks=[preview], on_block=preview.blocks(steps))
        preview.close("finished")

    ``blocks(steps)`` also tells it the still's plan (block grids, per-scale iterations and
    sizes: the job's ETA); without a plan the ETA assumes the remaining units are like this one.
    """

    enabled = True

    def __init__(self, host: str = DEFAULT_HOST, port: int = 0, *, command: str = "",
                 output: Optional[str | Path] = None, sample_seconds: float = SAMPLE_SECONDS,
                 image_side: int = IMAGE_LONG_SIDE):
        self.host, self.port, self.command = host, port, command
        self.output = output
        self.sample_seconds, self.image_side = sample_seconds, image_side
        # written by the optimizer's thread, read by the sampler
        self._latest: Optional[Progress] = None
        self._previous: Optional[Progress] = None  # the last event of the unit before
        self._units_done = 0
        self._count = 0
        self._block: Optional[tuple[int, int]] = None
        self._plan: dict[int, tuple[int, int, int, tuple[int, int]]] = {}  # index: (it, h, w, grid)
        # the sampler's own
        self._history: dict[str, list] = {"x": []}
        self._sampled: Optional[Progress] = None
        self._rendered: Optional[Progress] = None
        self._previous_rendered = -1
        self._previous_label = ""
        self._losses: dict[str, float] = {}
        self._rates: collections.deque = collections.deque()
        self._images: dict[str, bytes] = {}
        self._image_seq = {"canvas": 0, "previous": 0}
        self._started = time.time()
        self._status, self._message = "starting", ""
        self.ending = ("failed", "the run ended without an outcome")  # set by end()
        self._message_bytes: Optional[bytes] = None
        self._final_sent = False
        # pages and threads
        self._pages: set[_Page] = set()
        self._pages_lock = threading.Lock()
        self._kick = threading.Event()
        self._stopping = threading.Event()
        self._server: Optional[_Server] = None
        self._threads: list[threading.Thread] = []
        self._closed = False

    # -- the run's side (optimizer thread) ------------------------------------------------------
    def __call__(self, event: Progress) -> None:
        latest = self._latest
        # a new unit: another stage, or the same stage starting over (the next run of a sweep)
        if latest is not None and (latest.stage != event.stage or event.iteration <= latest.iteration):
            self._previous, self._block = latest, None
            self._units_done += 1
        self._latest = event
        self._count += 1

    def blocks(self, steps: Sequence = (), then: Optional[BlockCallback] = None) -> BlockCallback:
        """A block callback for ``stylize_image(on_block=...)`` that outlines the block being
        computed (and calls ``then``); ``steps`` is the still's plan (``stylize.plan``)."""
        self._plan = {s.index: (s.iterations, s.height, s.width, tuple(s.grid)) for s in steps}

        def on_block(done: int, total: int) -> None:
            self._block = (done, total)
            if then is not None:
                then(done, total)

        return on_block

    def end(self, code: int) -> int:
        """The job's exit code, for the final state ``close`` will show."""
        self.ending = outcome(code)
        return code

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/"

    @property
    def pages(self) -> int:
        """Pages connected now."""
        return len(self._pages)

    # -- life -----------------------------------------------------------------------------------
    def start(self) -> "Preview":
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        server_class = type("_BoundServer", (_Server,), {"address_family": family})
        try:
            self._server = server_class((self.host, self.port), _Handler)
        except OSError as exc:
            raise UsageError(f"--preview {self.host}:{self.port}: cannot listen there "
                             f"({exc.strerror or exc}); choose another port") from None
        self._server.preview = self
        self.port = self._server.server_address[1]
        self._threads = [threading.Thread(target=self._server.serve_forever, name="preview-server",
                                          kwargs={"poll_interval": 0.1}, daemon=True),
                         threading.Thread(target=self._sample_loop, name="preview-sampler",
                                          daemon=True)]
        for thread in self._threads:
            thread.start()
        return self

    def close(self, status: str = "finished", message: str = "") -> None:
        """Send the final state to every page, end the streams, close the port, join threads."""
        if self._closed:
            return
        self._closed = True
        self._stopping.set()
        self._kick.set()
        for thread in self._threads[1:]:
            thread.join()
        self._status, self._message = status, message
        try:
            self._sample(final=True)
        except Exception:  # the final image is a courtesy: the page still gets the status
            self._publish(final=True)
        deadline = time.monotonic() + 2.0  # time for the pages to read the final state
        while self._pages and time.monotonic() < deadline:
            time.sleep(0.02)
        with self._pages_lock:
            stalled = [page.connection for page in self._pages if page.connection is not None]
        for connection in stalled:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()  # closes the port and joins the request threads
            self._threads[0].join()

    # -- the sampler's side ---------------------------------------------------------------------
    def _sample_loop(self) -> None:
        while not self._stopping.is_set():
            self._kick.wait(self.sample_seconds)
            self._kick.clear()
            if self._stopping.is_set():
                break
            try:
                self._sample()
            except Exception as exc:  # a preview problem never stops the run
                self._message = f"preview: {type(exc).__name__}: {exc}"

    def _sample(self, final: bool = False) -> None:
        event, now = self._latest, time.time()
        if event is not None and event is not self._sampled:
            self._sampled = event
            self._status = "running" if not final else self._status
            self._losses = {name: float(value) for name, value in event.losses.items()}
            history = self._history
            history["x"].append(self._count)
            for name, value in self._losses.items():
                series = history.setdefault(name, [math.nan] * (len(history["x"]) - 1))
                series.append(value)
            for series in history.values():  # a term absent from this event
                if len(series) < len(history["x"]):
                    series.append(math.nan)
            if len(history["x"]) > HISTORY_POINTS:
                for name in history:
                    history[name] = history[name][::2]
        self._rates.append((now, self._count))
        while len(self._rates) > 2 and now - self._rates[0][0] > RATE_WINDOW_SECONDS:
            self._rates.popleft()
        if self._pages:
            self._render()
        self._publish(final)

    def _render(self) -> None:
        """Images for the pages: the canvas when it moved on, the previous unit once."""
        event = self._latest
        if event is not None and event is not self._rendered:
            self._images["canvas"] = encode_jpeg(thumbnail(event.canvas, self.image_side))
            self._image_seq["canvas"] += 1
            self._rendered = event
        previous, done = self._previous, self._units_done
        if previous is not None and done != self._previous_rendered:
            self._images["previous"] = encode_jpeg(thumbnail(previous.canvas, self.image_side))
            self._image_seq["previous"] += 1
            self._previous_rendered, self._previous_label = done, previous.stage.label

    def _rate(self) -> Optional[float]:
        if len(self._rates) < 2:
            return None
        (t0, n0), (t1, n1) = self._rates[0], self._rates[-1]
        return (n1 - n0) / (t1 - t0) if t1 > t0 else None

    def _eta(self, event: Progress, rate: Optional[float]) -> tuple[Optional[float], Optional[float]]:
        """Seconds left in this unit and in the whole job, at the recent speed."""
        if not rate:
            return None, None
        left = event.iterations - event.iteration
        unit = left / rate
        stage = event.stage
        if self._plan and stage.index in self._plan:
            # later scales cost more per iteration: in proportion to their pixels
            _, height, width, _ = self._plan[stage.index]
            pixels = height * width
            later = sum(iters * h * w / pixels for index, (iters, h, w, _) in self._plan.items()
                        if index > stage.index)
            return unit, (left + later) / rate
        return unit, (left + (stage.count - stage.index - 1) * event.iterations) / rate

    def _image_url(self, name: str, inline: bool) -> str:
        """The image's address; inline (a data: URL) in the final state, which a page may read
        after the server has gone."""
        if inline:
            return "data:image/jpeg;base64," + base64.b64encode(self._images[name]).decode()
        return f"/{name}.jpg?n={self._image_seq[name]}"

    def _state(self, final: bool = False) -> dict[str, Any]:
        event = self._latest
        state: dict[str, Any] = {
            "status": self._status, "message": self._message, "command": self.command,
            "output": None if self.output is None else str(self.output),
            "elapsed": round(time.time() - self._started, 1), "memory": memory_in_use(),
            "iterations_done": self._count,
        }
        if event is None:
            return state
        rate = self._rate()
        unit_eta, job_eta = self._eta(event, rate)
        history = self._history
        keep = thinned(range(len(history["x"])), CHART_POINTS)
        height, width = event.canvas.shape[-2:]
        state.update({
            "stage": {"label": event.stage.label, "index": event.stage.index,
                      "count": event.stage.count},
            "iteration": event.iteration, "iterations": event.iterations,
            "losses": self._losses, "rate": rate, "eta_unit": unit_eta, "eta_job": job_eta,
            "size": [int(width), int(height)],
            "chart": {name: [None if math.isnan(series[i]) else series[i] for i in keep]
                      for name, series in history.items()},
        })
        if "canvas" in self._images:
            state["canvas"] = self._image_url("canvas", final)
        if "previous" in self._images:
            state["previous"] = {"url": self._image_url("previous", final),
                                 "label": self._previous_label}
        block, plan = self._block, self._plan.get(event.stage.index)
        if block is not None and plan is not None:
            done, total = block
            grid = plan[3]
            count = max(1, total // 2)
            if count == grid[0] * grid[1]:  # else the blocks shrank for memory: no outline
                index = (done - 1) % count
                state["block"] = {"index": index + 1, "count": count,
                                  "pass": "Gram" if done <= count else "gradient",
                                  "box": block_box(index, grid)}
        return state

    def _publish(self, final: bool = False) -> None:
        data = json.dumps(self._state(final), allow_nan=False, default=str).encode()
        message = b"event: state\ndata: " + data + b"\n\n"
        with self._pages_lock:  # a page connecting now gets either this message or the next
            self._message_bytes, self._final_sent = data, final
            pages = list(self._pages)
        for page in pages:
            with page.ready:
                page.message, page.last = message, final
                page.ready.notify()

    def _current_message(self, raw: bool = False) -> bytes:
        data = self._message_bytes or json.dumps(
            {"status": self._status, "command": self.command}).encode()
        return data if raw else b"event: state\ndata: " + data + b"\n\n"

    # -- a page's side (one request thread each) ------------------------------------------------
    def _stream(self, handler: _Handler) -> None:
        handler.send_response(HTTPStatus.OK)
        handler.send_header("Content-Type", "text/event-stream")
        handler.send_header("Cache-Control", "no-store")
        handler.end_headers()
        page = _Page()
        page.connection = handler.connection
        with self._pages_lock:
            page.message, page.last = self._current_message(), self._final_sent
            self._pages.add(page)
        self._kick.set()  # the sampler renders the first image for it now
        try:
            while True:
                with page.ready:
                    page.ready.wait_for(lambda: page.message is not None, KEEPALIVE_SECONDS)
                    message, page.message, last = page.message, None, page.last
                handler.wfile.write(message or b": keep-alive\n\n")
                handler.wfile.flush()
                if last:
                    break
        except OSError:  # the page went away or stopped reading: drop it
            pass
        finally:
            with self._pages_lock:
                self._pages.discard(page)
            handler.close_connection = True


class NoPreview:
    """What a command holds without --preview: the same calls, doing nothing."""

    enabled = False
    output = None

    def __call__(self, event: Progress) -> None:
        pass

    def blocks(self, steps: Sequence = (), then: Optional[BlockCallback] = None) -> Optional[BlockCallback]:
        return then

    def end(self, code: int) -> int:
        return code


def outcome(code: int) -> tuple[str, str]:
    """The page's final status for a command's exit code."""
    if code == 0:
        return "finished", ""
    if code == EXIT_INTERRUPTED:
        return "interrupted", "state saved: run the same command again to resume"
    return "failed", f"exit code {code}"


@contextlib.contextmanager
def live_preview(record: RecordConfig, *, command: str, active: bool = True) -> Iterator[Any]:
    """The preview ``record.preview`` asks for, serving for the duration of the block, or a
    ``NoPreview`` without it (or when not ``active``: a dry run). Yields an object with the
    callback, ``blocks()``, ``output`` and ``end(exit_code)``; an exception ends the page as
    failed (or interrupted, for Ctrl-C)."""
    if record.preview_open and not record.preview:
        raise UsageError("--preview-open needs --preview [HOST:]PORT")
    if not record.preview or not active:
        yield NoPreview()
        return
    host, port = parse_address(record.preview)
    preview = Preview(host, port, command=command).start()
    try:
        # even with --quiet: with port 0 this line is the only way to learn the address
        if host not in LOCAL_HOSTS:
            print(f"nstvideo: live preview at {preview.url} is reachable from the network "
                  f"(bound to {host})", file=sys.stderr)
        else:
            print(f"nstvideo: live preview at {preview.url}", file=sys.stderr)
        if record.preview_open:
            import webbrowser

            if not webbrowser.open(preview.url):
                print(f"nstvideo: note: no browser to open; visit {preview.url}", file=sys.stderr)
        yield preview
    except KeyboardInterrupt:
        preview.ending = ("interrupted", "stopped by Ctrl-C")
        raise
    except NstError as exc:
        preview.ending = ("failed", str(exc))
        raise
    except BaseException as exc:
        preview.ending = ("failed", f"{type(exc).__name__}: {exc}")
        raise
    finally:
        preview.close(*preview.ending)
