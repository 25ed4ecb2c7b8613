"""Records of the optimization: a progress video (a Progress consumer) and a loss plot.

Frame rule (exact, so a caller can predict the count): within each stage (scale, frame, ...),
a frame is written at every iteration that is a multiple of ``every``, plus the stage's last
iteration when it is not one. A stage that stops early (relative tolerance) ends at its last
event, so its last canvas is written when the next stage starts or the recorder closes.
``expected_frames`` computes the count from the iterations each stage ran.

Snapshots reuse the canvas the Progress event carries (no extra forward pass) and frames go
straight to the encoder: nothing is held but the last event of the current stage.
"""

from __future__ import annotations

import contextlib
from fractions import Fraction
from pathlib import Path
from typing import Callable, Iterator, Optional, Sequence

import numpy as np
import torch

from . import plot
from ..config import RecordConfig
from ..optim.engine import Callback, Progress, Stage
from ..errors import UsageError
from ..video.io import VideoWriter

VIDEO_SUFFIXES = (".mp4", ".mov", ".mkv")
PANEL_MIN_SIDE = 160  # long side panel cells are enlarged to, so the text line stays legible
DEFAULT_FPS = 10


def expected_frames(iterations_run: Sequence[int], every: int) -> int:
    """Frames the recorder writes for stages that ran these many iterations each."""
    return sum(n // every + (1 if n % every else 0) for n in iterations_run)


def validate_record(record: RecordConfig) -> None:
    if record.progress_every < 1:
        raise UsageError("--progress-every must be at least 1")
    if record.progress_size < 16:
        raise UsageError("--progress-size must be at least 16 px")
    if record.progress_video and Path(record.progress_video).suffix.lower() not in VIDEO_SUFFIXES:
        raise UsageError(f"--progress-video {record.progress_video}: use a name ending in "
                         f"{', '.join(VIDEO_SUFFIXES)}")
    if record.plot:
        from ..images import output_format

        output_format(record.plot)


def _to_uint8(image: torch.Tensor, height: int, width: int) -> np.ndarray:
    from ..still.stylize import resize

    with torch.no_grad():
        small = resize(image.detach().float(), height, width)
        return (small[0].permute(1, 2, 0).clamp(0, 1) * 255 + 0.5).byte().cpu().numpy()


class ProgressVideo:
    """Progress callback writing one MP4 frame per snapshot, at one fixed even size::

        with ProgressVideo("conv.mp4", (H, W), every=5) as video:
            stylize_image(..., callbacks=[video])

    ``final_hw`` is the job's output size; frames have the same aspect, long side at most
    ``long_side``. Layout ``panel`` puts content | style | canvas side by side (no content for a
    texture) above a line with the stage, iteration and total loss, and a small curve of the
    total loss in the canvas's corner. ``follow(stage)`` chooses which stages are recorded (a
    video job records its first frame only).
    """

    def __init__(self, path: str | Path, final_hw: tuple[int, int], *, every: int,
                 layout: str = "canvas", long_side: int = 720,
                 content: Optional[torch.Tensor] = None, style: Optional[torch.Tensor] = None,
                 fps: int | Fraction = DEFAULT_FPS, follow: Optional[Callable[[Stage], bool]] = None):
        if every < 1:
            raise UsageError("--progress-every must be at least 1")
        if layout not in ("canvas", "panel"):
            raise UsageError(f"progress layout {layout!r} is not one of canvas, panel")
        self.every, self.layout, self.follow = every, layout, follow
        height, width = final_hw
        side = min(long_side, max(height, width))
        if layout == "canvas":
            self.cell_hw = plot.even_size(height, width, side)
            self.side_cells: list[np.ndarray] = []
            self.caption_h = 0
        else:
            # Three cells side by side: each gets half the long side, but never so few pixels
            # that the caption and curve become unreadable (small canvases are enlarged).
            cell_side = min(max(height, width, PANEL_MIN_SIDE), max(PANEL_MIN_SIDE, long_side // 2))
            self.cell_hw = plot.even_size(height, width, cell_side)
            cell_h, cell_w = self.cell_hw
            self.side_cells = []
            if content is not None:
                self.side_cells.append(_to_uint8(content, cell_h, cell_w))
            if style is not None:
                style_w = min(2 * cell_w, max(2, 2 * round(cell_h * style.shape[-1] / style.shape[-2] / 2)))
                self.side_cells.append(plot.fit_into(_to_uint8(style, *plot.even_size(
                    style.shape[-2], style.shape[-1], max(cell_h, style_w))), style_w, cell_h))
            self.caption_h = 2 * round(max(18, cell_h // 9) / 2)
        cell_h, cell_w = self.cell_hw
        self.width = cell_w + sum(c.shape[1] for c in self.side_cells)
        self.height = cell_h + self.caption_h
        self.writer = VideoWriter(path, self.width, self.height, fps)
        self._last: Optional[Progress] = None
        self._last_written = False
        self._totals: list[float] = []
        self._pending_totals: list[torch.Tensor] = []

    def __enter__(self) -> "ProgressVideo":
        self.writer.__enter__()
        return self

    def __call__(self, event: Progress) -> None:
        if self.follow is not None and not self.follow(event.stage):
            return
        if self._last is not None and event.stage != self._last.stage:
            self._flush_stage()
        if self.layout == "panel":
            self._pending_totals.append(event.losses["total"].detach())
        self._last, self._last_written = event, False
        if event.iteration % self.every == 0 or event.iteration == event.iterations:
            self._write(event)

    def _flush_stage(self) -> None:
        if self._last is not None and not self._last_written:
            self._write(self._last)
        self._last = None

    def _write(self, event: Progress) -> None:
        cell = _to_uint8(event.canvas, *self.cell_hw)
        if self.layout == "panel":
            cell = self._decorate(cell, event)
        self.writer.write(cell)
        self._last_written = True

    @property
    def frames_written(self) -> int:
        return self.writer.frames_written

    def _decorate(self, cell: np.ndarray, event: Progress) -> np.ndarray:
        if self._pending_totals:
            self._totals.extend(torch.stack(self._pending_totals).float().cpu().tolist())
            self._pending_totals.clear()
        cell_h, cell_w = self.cell_hw
        chart_h, chart_w = max(28, cell_h // 3), max(48, cell_w * 2 // 5)
        if chart_h < cell_h and chart_w < cell_w:
            chart = plot.loss_chart({"total": self._totals}, chart_w, chart_h, axes=False, legend=False)
            corner = cell[cell_h - chart_h:, cell_w - chart_w:]
            corner[:] = (0.25 * corner + 0.75 * chart).astype(np.uint8)
        frame = np.full((self.height, self.width, 3), plot.BACKGROUND, np.uint8)
        x = 0
        for side in self.side_cells:
            frame[:cell_h, x:x + side.shape[1]] = side
            x += side.shape[1]
        frame[:cell_h, x:x + cell_w] = cell
        total = self._totals[-1] if self._totals else float("nan")
        text = f"{event.stage.label}  it {event.iteration}/{event.iterations}  loss {total:.4g}"
        scale = plot.font_scale(self.caption_h * 0.5)
        _, text_h, baseline = plot.text_size(text, scale)
        plot.put_label(frame, plot.fit_text(text, self.width - 8, scale),
                       (3, cell_h + (self.caption_h - text_h - baseline) // 2 - 2), scale=scale,
                       background=None)
        return frame

    def close(self, exc_type=None) -> None:
        """Write the last stage's final canvas if needed and finish the MP4."""
        if exc_type is None:
            self._flush_stage()
        self.writer.__exit__(exc_type, None, None)

    def __exit__(self, exc_type, exc, tb) -> None:
        self.close(exc_type)


@contextlib.contextmanager
def job_recorders(record: RecordConfig, final_hw: tuple[int, int], *,
                  content: Optional[torch.Tensor], styles: Sequence[torch.Tensor],
                  follow: Optional[Callable[[Stage], bool]] = None) -> Iterator[list[Callback]]:
    """The Progress consumers a job's RecordConfig asks for, open for the duration of the job."""
    with contextlib.ExitStack() as stack:
        callbacks: list[Callback] = []
        if record.progress_video:
            callbacks.append(stack.enter_context(ProgressVideo(
                record.progress_video, final_hw, every=record.progress_every,
                layout=record.progress_layout, long_side=record.progress_size, content=content,
                style=styles[0] if styles else None, follow=follow)))
        yield callbacks


def loss_plot(histories: Sequence[tuple[str, Sequence[dict[str, float]]]], *, width: int = 900,
              height: int = 420, title: str = "losses") -> np.ndarray:
    """One chart of every loss term over the whole job; dashed lines where each stage starts."""
    names: list[str] = []
    for _, history in histories:
        for entry in history:
            names.extend(n for n in entry if n not in names)
    order = [n for n in ("total", "content", "style", "tv", "temporal") if n in names]
    order += [n for n in names if n not in order]
    series = {name: [] for name in order}
    separators = []
    for label, history in histories:
        if len(histories) > 1:
            separators.append((len(series[order[0]]) + 1 if order else 1, label))
        for entry in history:
            for name in order:
                series[name].append(entry.get(name, float("nan")))
    return plot.loss_chart(series, width, height, separators=separators, title=title)


def write_loss_plot(path: str | Path, result, title: str = "losses") -> None:
    """Draw a StylizeResult's per-scale loss histories into an image file."""
    from ..images import write_image

    histories = [(f"{r.step.width}x{r.step.height}", r.result.history) for r in result.scales]
    chart = loss_plot(histories, title=title)
    write_image(path, chart.astype(np.float32) / 255.0)
