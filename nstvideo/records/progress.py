"""Consumers of Progress events, owned by the CLI: the tqdm bar, intermediate saves, the run report."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Callable, Optional

from tqdm import tqdm

from ..optim.engine import Progress

SHOWN_TERMS = ("total", "content", "style", "tv", "temporal")


def format_losses(losses) -> dict[str, str]:
    return {name: f"{float(losses[name]):.4g}" for name in SHOWN_TERMS if name in losses}


class ProgressBar:
    """One tqdm bar over every iteration of the job (all scales, blocks or frames)."""

    def __init__(self, total: int, *, disable: bool = False, refresh_every: int = 5,
                 unit: str = "it", desc: str = ""):
        self.bar = tqdm(total=total, disable=disable, unit=unit, desc=desc, dynamic_ncols=True,
                        smoothing=0.1)
        self.refresh_every = refresh_every
        self._last: Optional[Progress] = None

    def _drop_unused(self) -> None:
        """A unit that stopped early leaves its unused iterations off the total: the ETA stays true."""
        last = self._last
        if last is not None and last.iteration < last.iterations:
            self.bar.total = max(self.bar.n, self.bar.total - (last.iterations - last.iteration))

    def __call__(self, event: Progress) -> None:
        if self._last is None or event.stage != self._last.stage:
            self._drop_unused()
            self.bar.set_description(event.stage.label, refresh=False)
        self._last = event
        self.bar.update(1)
        # float() waits for the device: only every few iterations
        if event.iteration % self.refresh_every == 0 or event.iteration == event.iterations:
            self.bar.set_postfix(format_losses(event.losses), refresh=False)

    def block(self, done: int, total: int) -> None:
        """Block progress within one iteration of a block-wise scale."""
        label = self._last.stage.label if self._last else ""
        self.bar.set_description(f"{label} [block {done}/{total}]", refresh=done == total or done % 4 == 0)

    def close(self) -> None:
        self._drop_unused()
        self._last = None
        self.bar.close()


class SaveEvery:
    """Write the canvas every N iterations with a writer the CLI supplies."""

    def __init__(self, every: int, write: Callable[[Progress], None]):
        self.every, self.write = every, write

    def __call__(self, event: Progress) -> None:
        if self.every > 0 and event.iteration % self.every == 0:
            self.write(event)


def write_report(path: str, report: dict, write_bytes: Callable[[Path, bytes], None]) -> None:
    write_bytes(Path(path), (json.dumps(report, indent=2, default=str) + "\n").encode())


def loss_summary(history: list[dict[str, float]], every: Optional[int] = None) -> dict:
    """First and final losses plus a thinned curve (at most ~100 points) for the report."""
    if not history:
        return {}
    step = every or max(1, len(history) // 100)
    return {"first": history[0], "final": history[-1],
            "curve": [dict(iteration=i + 1, **h) for i, h in enumerate(history) if i % step == 0
                      or i == len(history) - 1]}


class FrameBar:
    """One tqdm bar over the frames of a video (ETA over frames), with the frame's iteration and
    losses in the postfix. Call it as an engine callback and ``frame_done`` after each frame."""

    def __init__(self, total: int, done: int = 0, *, disable: bool = False, refresh_every: int = 10):
        self.bar = tqdm(total=total, initial=done, disable=disable, unit="frame",
                        dynamic_ncols=True, smoothing=0.3, desc="frames")
        self.refresh_every = refresh_every

    def __call__(self, event: Progress) -> None:
        if event.iteration % self.refresh_every == 0:
            self.bar.set_postfix(it=f"{event.iteration}/{event.iterations}",
                                 **format_losses(event.losses), refresh=True)

    def frame_done(self, iterations: int, losses: dict[str, float]) -> None:
        self.bar.set_postfix(it=iterations, **format_losses(losses), refresh=False)
        self.bar.update(1)

    def close(self) -> None:
        self.bar.close()


class TrainBar:
    """One tqdm bar over the steps of a network's training (ETA over steps), losses in the
    postfix; an engine-free consumer of ``TrainProgress`` events."""

    def __init__(self, total: int, done: int = 0, *, disable: bool = False, refresh_every: int = 5):
        self.bar = tqdm(total=total, initial=done, disable=disable, unit="step",
                        dynamic_ncols=True, smoothing=0.1, desc="train")
        self.refresh_every = refresh_every

    def __call__(self, event) -> None:
        self.bar.update(1)
        if event.step % self.refresh_every == 0 or event.step == event.steps:
            self.bar.set_postfix(format_losses(event.losses), refresh=False)

    def close(self) -> None:
        self.bar.close()


class WorkerBar:
    """A video spread over workers: one bar over the video's frames (ETA over frames), with each
    worker's frame count (boundary chains included) and restarts in the postfix. Call it with
    the driver's events (``scale.driver.WorkerEvent``)."""

    def __init__(self, total: int, done: int = 0, *, disable: bool = False):
        self.bar = tqdm(total=total, initial=done, disable=disable, unit="frame",
                        dynamic_ncols=True, smoothing=0.3, desc="frames")
        self.rendered: dict[int, int] = {}
        self.restarts = 0

    def __call__(self, event) -> None:
        self.rendered.setdefault(event.worker, 0)
        if event.kind == "restart":
            self.restarts += 1
        elif event.kind == "frame":
            self.rendered[event.worker] += 1
        shown = {f"w{worker}": count for worker, count in sorted(self.rendered.items())}
        if self.restarts:
            shown["restarts"] = self.restarts
        self.bar.set_postfix(shown, refresh=False)
        self.bar.update(event.finished - self.bar.n)

    def close(self) -> None:
        self.bar.close()
