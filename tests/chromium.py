"""Headless Chromium for tests, driven over the DevTools protocol on a pipe (no websocket
library): the preview page's tests and the playback of our outputs use it. ``needs_chromium``
skips a test, with the reason, where Chromium is not installed."""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import subprocess
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
needs_chromium = pytest.mark.skipif(
    CHROMIUM is None, reason="headless Chromium is not installed (apt-get install chromium; "
    ".ci/run installs it)")


class Chromium:
    """Headless Chromium driven over the DevTools protocol on a pipe (no websocket library)."""

    def __init__(self, profile: Path, width: int = 1180, height: int = 760,
                 extra_args: tuple[str, ...] = ()):
        import fcntl

        browser_reads, self._commands = os.pipe()
        self._answers, browser_writes = os.pipe()
        # above 10 first, so that putting them on 3 and 4 in the child cannot overwrite each other
        high = [fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 10) for fd in (browser_reads, browser_writes)]
        for fd in (browser_reads, browser_writes):
            os.close(fd)

        def plumb() -> None:  # Chromium reads commands on fd 3 and writes answers on fd 4
            os.dup2(high[0], 3)
            os.dup2(high[1], 4)

        self.process = subprocess.Popen(
            [CHROMIUM, "--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run",
             "--disable-dev-shm-usage", "--remote-debugging-pipe", f"--user-data-dir={profile}",
             f"--window-size={width},{height}", *extra_args, "about:blank"],
            close_fds=False, preexec_fn=plumb, stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL)
        for fd in high:
            os.close(fd)
        self._send_file = os.fdopen(self._commands, "wb", buffering=0)
        self._recv_file = os.fdopen(self._answers, "rb", buffering=0)
        self._buffer, self._id, self.session = b"", 0, None
        self.size = (width, height)

    def call(self, method: str, params: dict | None = None, session: bool = True) -> dict:
        self._id += 1
        message = {"id": self._id, "method": method, "params": params or {}}
        if session and self.session:
            message["sessionId"] = self.session
        self._send_file.write(json.dumps(message).encode() + b"\0")
        while True:
            while b"\0" not in self._buffer:
                chunk = self._recv_file.read(1 << 16)
                if not chunk:
                    raise RuntimeError("Chromium closed the DevTools pipe")
                self._buffer += chunk
            raw, self._buffer = self._buffer.split(b"\0", 1)
            answer = json.loads(raw)
            if answer.get("id") == self._id:
                if "error" in answer:
                    raise RuntimeError(f"{method}: {answer['error']}")
                return answer["result"]

    def open(self, url: str) -> None:
        target = self.call("Target.createTarget", {"url": "about:blank"}, session=False)["targetId"]
        self.session = self.call("Target.attachToTarget", {"targetId": target, "flatten": True},
                                 session=False)["sessionId"]
        width, height = self.size
        self.call("Emulation.setDeviceMetricsOverride",
                  {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False})
        self.call("Page.navigate", {"url": url})

    def evaluate(self, expression: str):
        return self.call("Runtime.evaluate", {"expression": expression,
                                              "returnByValue": True})["result"].get("value")

    def text(self) -> str:
        return self.evaluate("document.body ? document.body.innerText : ''") or ""

    def screenshot(self) -> np.ndarray:
        data = base64.b64decode(self.call("Page.captureScreenshot", {"format": "png"})["data"])
        return cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)

    def box(self, element_id: str) -> tuple[int, int, int, int]:
        rect = self.evaluate(f"JSON.stringify(document.getElementById('{element_id}')"
                             ".getBoundingClientRect())")
        rect = json.loads(rect)
        return (round(rect["y"]), round(rect["y"] + rect["height"]), round(rect["x"]),
                round(rect["x"] + rect["width"]))

    def wait_for_text(self, pattern: str, timeout: float = 30.0) -> re.Match:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = re.search(pattern, self.text())
            if found:
                return found
            time.sleep(0.1)
        raise AssertionError(f"{pattern!r} not on the page within {timeout} s: {self.text()!r}")

    def close(self) -> None:
        try:
            self.call("Browser.close", session=False)
            self.process.wait(10)
        except (RuntimeError, OSError, subprocess.TimeoutExpired):
            self.process.kill()
            self.process.wait()
