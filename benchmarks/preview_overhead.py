"""What --preview costs the optimization: ms per iteration with no preview, with the preview
serving and no page connected, and with a page connected (reading the event stream and fetching
every canvas image it is told about, as the browser page does).

    python benchmarks/preview_overhead.py                        # CPU, 128 px, 40 iterations x 5
    python benchmarks/preview_overhead.py --size 512 --device cuda

The three modes run interleaved, ``--repeats`` times each, after one warm-up run; the figure is
the median ms/iteration of each mode and its ratio to no preview. Prints JSON.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import threading
import time
import urllib.request
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import emit, environment, synchronize  # noqa: E402
from nstvideo.config import OptimConfig  # noqa: E402
from nstvideo.network.features import VGGFeatures  # noqa: E402
from nstvideo.network.objective import StyleObjective  # noqa: E402
from nstvideo.optim.engine import autograd_evaluator, optimize  # noqa: E402
from nstvideo.records.preview import Preview  # noqa: E402
from nstvideo.runtime import resolve_device  # noqa: E402

LAYERS = ("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu4_2", "relu5_1")


class Page:
    """A connected page: reads the stream and fetches each new canvas image."""

    def __init__(self, url: str):
        self.url, self.images, self.states = url, 0, 0
        self.response = urllib.request.urlopen(url + "events", timeout=30)
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        seen = None
        try:
            for line in self.response:
                if not line.startswith(b"data: "):
                    continue
                self.states += 1
                canvas = json.loads(line[6:]).get("canvas")
                if canvas and canvas != seen and canvas.startswith("/"):
                    with urllib.request.urlopen(self.url + canvas.lstrip("/"), timeout=30) as image:
                        image.read()
                    self.images, seen = self.images + 1, canvas
        except (OSError, ValueError):
            pass


def timed_run(canvas, evaluate, config, iterations, device, callbacks) -> float:
    synchronize(device)
    started = time.perf_counter()
    optimize(canvas, evaluate, config, iterations=iterations, callbacks=callbacks)
    synchronize(device)
    return 1000 * (time.perf_counter() - started) / iterations


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--iterations", type=int, default=40)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--device", default="auto")
    args = parser.parse_args()

    device = resolve_device(args.device)
    torch.manual_seed(0)
    network = VGGFeatures("vgg19", LAYERS).to(device)
    content = torch.rand(1, 3, args.size, args.size, device=device)
    style = torch.rand(1, 3, args.size, args.size, device=device)
    objective = StyleObjective(network, content=content, styles=[style],
                               content_layers=("relu4_2",), style_layers=LAYERS[:4] + ("relu5_1",))
    evaluate = autograd_evaluator(objective)
    config = OptimConfig(iterations=args.iterations, tolerance=0.0)
    start = torch.rand(1, 3, args.size, args.size, device=device)

    preview = Preview(command="benchmark").start()
    page = None
    modes = {"no preview": lambda: [], "preview, no page": lambda: [preview],
             "preview, page connected": lambda: [preview]}
    times: dict[str, list[float]] = {mode: [] for mode in modes}
    try:
        timed_run(start, evaluate, config, args.iterations, device, [])  # warm-up
        for _ in range(args.repeats):
            for mode, callbacks in modes.items():
                if mode == "preview, page connected" and page is None:
                    page = Page(preview.url)
                    time.sleep(0.5)
                elif mode != "preview, page connected" and page is not None:
                    page.response.close()
                    page.thread.join(5)
                    page = None
                    time.sleep(0.5)  # the server notices the page has gone at its next write
                times[mode].append(timed_run(start, evaluate, config, args.iterations, device,
                                             callbacks()))
        images = page.images if page else 0
    finally:
        if page is not None:
            page.response.close()
        preview.close()
    base = statistics.median(times["no preview"])
    emit({
        "benchmark": "preview_overhead", "environment": environment(device),
        "size": args.size, "iterations": args.iterations, "repeats": args.repeats,
        "ms_per_iteration": {mode: round(statistics.median(t), 2) for mode, t in times.items()},
        "ratio_to_no_preview": {mode: round(statistics.median(t) / base, 3)
                                for mode, t in times.items()},
        "all_runs_ms": {mode: [round(v, 2) for v in t] for mode, t in times.items()},
        "images_fetched_in_last_page_run": images,
    })


if __name__ == "__main__":
    main()
