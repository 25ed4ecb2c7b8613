"""The live preview (--preview): the address it binds, what it costs with no page, that no page
can block the run, and real runs watched by a real headless Chromium (skipped without one).

Set NSTVIDEO_PREVIEW_SCREENSHOT=path.png to keep a screenshot of the page (docs/preview.png).
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from nstvideo.config import RecordConfig
from nstvideo.errors import UsageError
from nstvideo.optim.engine import Progress, Stage
from nstvideo.records import preview as preview_module
from nstvideo.records.preview import Preview, live_preview, parse_address

from chromium import needs_chromium  # Chromium over the DevTools pipe; its fixture: conftest.py

REPO = Path(__file__).resolve().parents[1]


# --- helpers -------------------------------------------------------------------------------------

def port_is_closed(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    except OSError:
        return True
    return False


def preview_threads() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name.startswith("preview-")
            or "process_request" in t.name]


def event(iteration: int, canvas: torch.Tensor, stage: Stage = Stage("scale 1/2 64x48", 0, 2),
          iterations: int = 100) -> Progress:
    return Progress(stage, iteration, iterations, {"total": torch.tensor(10.0 / iteration),
                                                   "style": torch.tensor(8.0 / iteration)},
                    canvas, 0.0)


class EventStream:
    """A page without a browser: reads the /events stream on a thread, keeps every state."""

    def __init__(self, url: str):
        self.response = urllib.request.urlopen(url + "events", timeout=20)
        self.states: list[dict] = []
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        try:
            for line in self.response:
                if line.startswith(b"data: "):
                    self.states.append(json.loads(line[6:]))
        except (OSError, ValueError):
            pass

    def wait_for(self, predicate, timeout: float = 20.0) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for state in reversed(self.states):
                if predicate(state):
                    return state
            time.sleep(0.05)
        raise AssertionError(f"no such state within {timeout} s; last: {self.states[-1:]}")


class Run:
    """``python -m nstvideo ... --preview 0`` in a subprocess; the page's URL from its stderr."""

    def __init__(self, args: list[str], cwd: Path):
        env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(REPO))
        self.process = subprocess.Popen(
            [sys.executable, "-m", "nstvideo", *args, "--weights", "random", "--device", "cpu",
             "--preview", "0"], cwd=cwd, env=env, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, text=True)
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        self.url = self._wait_for_url()
        self.port = int(self.url.rstrip("/").rsplit(":", 1)[1])

    def _read(self) -> None:
        for line in self.process.stderr:
            self.lines.extend(line.replace("\r", "\n").splitlines())

    def _wait_for_url(self, timeout: float = 60.0) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for line in self.lines:
                found = re.search(r"live preview at (http://\S+)", line)
                if found:
                    return found.group(1)
            if self.process.poll() is not None:
                break
            time.sleep(0.05)
        self.process.kill()
        raise AssertionError(f"no preview address on stderr: {self.lines}")

    def wait(self, timeout: float = 90.0) -> int:
        code = self.process.wait(timeout)
        self._reader.join(5)
        return code

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()


@pytest.fixture
def runs():
    started: list[Run] = []
    yield lambda args, cwd: started.append(Run(args, cwd)) or started[-1]
    for run in started:
        run.kill()


def canvas_region(shot: np.ndarray, box: tuple[int, int, int, int]) -> np.ndarray:
    top, bottom, left, right = box
    return shot[top:bottom, left:right].astype(np.float32)


def iteration_on(text: str) -> int:
    return int(re.search(r"iteration (\d+)/\d+", text).group(1))


# --- the address ---------------------------------------------------------------------------------

def test_default_bind_address_is_loopback(capsys):
    assert parse_address("8000") == ("127.0.0.1", 8000)
    with live_preview(RecordConfig(preview="0"), command="stylize") as preview:
        assert preview.host == "127.0.0.1"
        assert preview._server.server_address[0] == "127.0.0.1"
        preview.end(0)
    line = capsys.readouterr().err
    assert f"live preview at http://127.0.0.1:{preview.port}/" in line
    assert "network" not in line
    assert port_is_closed(preview.port)


def test_address_forms_and_errors(capsys):
    assert parse_address("0.0.0.0:8000") == ("0.0.0.0", 8000)
    assert parse_address("[::1]:9000") == ("::1", 9000)
    assert parse_address("localhost:0") == ("localhost", 0)
    for bad in ("abc", "70000", ":8000", "host:", "1.2.3.4:x", "[::1]"):
        with pytest.raises(UsageError, match=r"expected \[HOST:\]PORT"):
            parse_address(bad)
    with pytest.raises(UsageError, match="--preview-open needs --preview"):
        with live_preview(RecordConfig(preview_open=True), command="stylize"):
            pass
    with live_preview(RecordConfig(preview="0.0.0.0:0"), command="stylize") as preview:
        preview.end(0)
    assert "reachable from the network (bound to 0.0.0.0)" in capsys.readouterr().err
    with live_preview(RecordConfig(preview="127.0.0.1:0"), command="stylize") as taken:
        with pytest.raises(UsageError, match="cannot listen there"):
            with live_preview(RecordConfig(preview=f"127.0.0.1:{taken.port}"), command="stylize"):
                pass
        taken.end(0)


# --- cost and robustness, in process --------------------------------------------------------------

def test_no_page_no_images_and_a_page_gets_them(monkeypatch):
    encoded = []
    real = preview_module.encode_jpeg
    monkeypatch.setattr(preview_module, "encode_jpeg", lambda pixels: encoded.append(1) or real(pixels))
    preview = Preview(sample_seconds=0.02).start()
    canvas = torch.rand(1, 3, 48, 64)
    try:
        for i in range(1, 30):
            preview(event(i, canvas))
            time.sleep(0.01)
        assert not encoded, "canvas images were made with no page connected"
        assert len(preview._history["x"]) > 3, "loss samples are kept for a page opened later"
        page = EventStream(preview.url)
        for i in range(30, 60):
            preview(event(i, canvas))
            time.sleep(0.01)
        state = page.wait_for(lambda s: s.get("canvas"))
        assert encoded
        assert len(state["chart"]["x"]) > 3 and state["chart"]["x"][0] < 30
        with urllib.request.urlopen(preview.url + "canvas.jpg", timeout=5) as response:
            image = cv2.imdecode(np.frombuffer(response.read(), np.uint8), cv2.IMREAD_COLOR)
        assert image.shape == (48, 64, 3)
    finally:
        preview.close()


def test_stalled_and_many_pages_never_block_the_run_and_close_leaves_nothing():
    preview = Preview(sample_seconds=0.01).start()
    canvas = torch.rand(1, 3, 1500, 2000)  # a poster: the thumbnail is subsampled where it lives
    stalled = []
    for _ in range(2):  # pages that ask for the stream and never read a byte of it
        connection = socket.create_connection(("127.0.0.1", preview.port))
        connection.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        connection.sendall(b"GET /events HTTP/1.1\r\nHost: x\r\n\r\n")
        stalled.append(connection)
    first = EventStream(preview.url)
    slowest = 0.0
    try:
        for i in range(1, 400):
            started = time.perf_counter()
            preview(event(i, canvas, iterations=1000))
            slowest = max(slowest, time.perf_counter() - started)
            if i == 150:  # one page closes, another opens: it gets the whole state
                first.response.close()
                second = EventStream(preview.url)
            time.sleep(0.002)
        # waiting for a page would take seconds (the write timeout); the sampler thread may hold
        # the GIL for a switch interval (5 ms), so allow ten of those
        assert slowest < 0.05, f"a Progress callback took {slowest * 1000:.1f} ms"
        state = second.wait_for(lambda s: s.get("iteration", 0) > 200 and s.get("canvas"))
        assert state["chart"]["x"][0] < 150  # the history from before it was opened
        assert preview.pages >= 3
        assert state["memory"]["host"] > 0
    finally:
        started = time.perf_counter()
        preview.close("finished")
        closing = time.perf_counter() - started
        for connection in stalled:
            connection.close()
    assert closing < 10
    final = second.wait_for(lambda s: s["status"] == "finished")
    assert final["canvas"].startswith("data:image/jpeg;base64,")
    assert port_is_closed(preview.port)
    assert not preview_threads(), "threads left behind"


def test_block_outline_follows_block_events():
    from nstvideo.still.schedule import ScaleStep

    preview = Preview()
    on_block = preview.blocks([ScaleStep(0, 100, 200, 10, tile_size=64, grid=(2, 3))])
    preview(event(1, torch.rand(1, 3, 100, 200), stage=Stage("scale 1/1 200x100, 6 blocks", 0, 1)))
    on_block(5, 12)  # the Gram pass, block 5: second row, second column
    block = preview._state()["block"]
    assert block["index"] == 5 and block["pass"] == "Gram"
    assert block["box"] == pytest.approx([0.5, 1.0, 1 / 3, 2 / 3])
    on_block(7, 12)
    block = preview._state()["block"]
    assert block["index"] == 1 and block["pass"] == "gradient"
    assert block["box"] == pytest.approx([0.0, 0.5, 0.0, 1 / 3])


def test_ctrl_c_exits_130_with_state_saved_and_the_port_closed(tmp_path, content_path, style_path,
                                                               runs):
    run = runs(["stylize", str(content_path), "--style", str(style_path), "--size", "32",
                "--iterations", "2000", "-o", str(tmp_path / "out.png")], tmp_path)
    page = EventStream(run.url)
    page.wait_for(lambda s: s.get("iteration", 0) >= 3, timeout=60)
    run.process.send_signal(signal.SIGINT)
    assert run.wait() == 130
    assert any("state saved" in line for line in run.lines), run.lines
    assert page.wait_for(lambda s: s["status"] == "interrupted")["message"]
    assert port_is_closed(run.port)
    assert not (tmp_path / "out.png").exists()


# --- real runs in a real browser -------------------------------------------------------------------

@needs_chromium
def test_still_page_in_chromium(tmp_path, content_path, style_path, runs, chromium):
    output = tmp_path / "out.png"
    run = runs(["stylize", str(content_path), "--style", str(style_path), "--size", "64",
                "--iterations", "160", "-o", str(output)], tmp_path)
    chromium.open(run.url)
    chromium.wait_for_text(r"iteration ([3-9]|\d\d+)/160", timeout=60)
    time.sleep(0.5)  # the image of that iteration
    first_text, first = chromium.text(), chromium.screenshot()
    box = chromium.box("canvas")
    time.sleep(2.5)
    second_text, second = chromium.text(), chromium.screenshot()
    assert run.process.poll() is None, "the run ended before the second screenshot"
    if os.environ.get("NSTVIDEO_PREVIEW_SCREENSHOT"):
        cv2.imwrite(os.environ["NSTVIDEO_PREVIEW_SCREENSHOT"], second)
    before, after = canvas_region(first, box), canvas_region(second, box)
    assert box[1] - box[0] > 100 and box[3] - box[2] > 100, box
    for region in (before, after):
        assert region.std() > 8, "the canvas is blank"
    assert np.abs(after - before).mean() > 1.0, "the canvas did not change"
    assert iteration_on(second_text) > iteration_on(first_text)
    assert "scale 1/1" in second_text and "it/s" in second_text and "MiB" in second_text
    assert run.wait() == 0
    found = chromium.wait_for_text("finished")
    assert found and f"wrote {output}" in chromium.text()
    assert port_is_closed(run.port)
    assert output.exists()


@needs_chromium
def test_video_page_in_chromium(tmp_path, clip_factory, style_path, runs, chromium):
    clip = clip_factory(count=3, height=24, width=32)
    output = tmp_path / "out.mp4"
    run = runs(["stylize", str(clip), "--style", str(style_path), "--iterations", "25",
                "--first-iterations", "25", "--temporal", "prev", "-o", str(output)], tmp_path)
    chromium.open(run.url)
    frames_seen, previous_seen = set(), False
    deadline = time.monotonic() + 90
    while run.process.poll() is None and time.monotonic() < deadline:
        text = chromium.text()
        frames_seen.update(int(k) for k in re.findall(r"frame (\d)/3", text))
        previous_seen |= "previous: frame 1/3" in text or "previous: frame 2/3" in text
        time.sleep(0.1)
    assert run.wait() == 0
    assert {2, 3} & frames_seen, f"frames seen on the page: {frames_seen}"
    assert previous_seen, "the previous finished frame was never shown"
    chromium.wait_for_text("finished")
    assert f"wrote {output}" in chromium.text()
    assert port_is_closed(run.port)
