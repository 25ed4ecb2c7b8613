"""Drawing with OpenCV, arrays in and arrays out: labels, loss charts, captioned grids.

Every function takes and returns (H, W, 3) uint8 RGB arrays and never touches files. Text uses
the anti-aliased Hershey simplex font on a solid background box, so it stays legible on any
picture down to ~10 px tall letters.
"""

from __future__ import annotations

import math
from typing import Mapping, Optional, Sequence

import cv2
import numpy as np

FONT = cv2.FONT_HERSHEY_SIMPLEX
WHITE, BLACK, GREY = (255, 255, 255), (0, 0, 0), (128, 128, 128)
BACKGROUND = (24, 24, 24)
# Distinct on dark backgrounds and for the common colour-vision deficiencies (Okabe-Ito).
PALETTE = {"total": (240, 240, 240), "content": (86, 180, 233), "style": (230, 159, 0),
           "tv": (0, 158, 115), "temporal": (204, 121, 167)}
EXTRA_COLOURS = ((240, 228, 66), (213, 94, 0), (0, 114, 178))


def font_scale(text_height_px: float) -> float:
    """The Hershey scale whose capital letters are about this many pixels tall."""
    return max(0.25, text_height_px / 22.0)


def text_size(text: str, scale: float, thickness: int = 1) -> tuple[int, int, int]:
    (width, height), baseline = cv2.getTextSize(text, FONT, scale, thickness)
    return width, height, baseline


def put_label(image: np.ndarray, text: str, origin: tuple[int, int], *, scale: float = 0.4,
              colour: tuple[int, int, int] = WHITE, background: Optional[tuple[int, int, int]] = BLACK,
              padding: int = 2, thickness: int = 1) -> np.ndarray:
    """Draw text whose box's top-left corner is ``origin``, over a filled box; in place."""
    width, height, baseline = text_size(text, scale, thickness)
    x, y = origin
    if background is not None:
        cv2.rectangle(image, (x, y), (x + width + 2 * padding, y + height + baseline + 2 * padding),
                      background, thickness=-1)
    cv2.putText(image, text, (x + padding, y + padding + height), FONT, scale, colour, thickness,
                cv2.LINE_AA)
    return image


def fit_text(text: str, max_width: int, scale: float) -> str:
    """Shorten text with an ellipsis until it fits in max_width pixels."""
    if text_size(text, scale)[0] <= max_width:
        return text
    while len(text) > 1 and text_size(text + "..", scale)[0] > max_width:
        text = text[:-1]
    return text + ".."


def _nice_log_ticks(low: float, high: float) -> list[float]:
    first, last = math.floor(math.log10(low)), math.ceil(math.log10(high))
    step = max(1, math.ceil((last - first) / 4))
    return [10.0 ** e for e in range(first, last + 1, step) if low <= 10.0 ** e <= high]


def _format_value(value: float) -> str:
    return f"{value:.0e}".replace("e+0", "e").replace("e-0", "e-").replace("e+", "e")


def loss_chart(series: Mapping[str, Sequence[float]], width: int, height: int, *,
               separators: Sequence[tuple[int, str]] = (), title: str = "",
               axes: bool = True, legend: bool = True,
               background: tuple[int, int, int] = BACKGROUND) -> np.ndarray:
    """Curves of named series against iteration (1-based index), log-scale y.

    ``separators`` are (iteration, label) pairs drawn as vertical lines, e.g. where a new scale
    starts. Non-positive and non-finite values are left out (no log of them).
    """
    chart = np.full((height, width, 3), background, np.uint8)
    scale = font_scale(max(8.0, min(12.0, height / 18)))
    _, text_h, _ = text_size("0", scale)
    left = text_size("1e-10", scale)[0] + 6 if axes else 2
    top = text_h + 8 if title else 3
    bottom = text_h + 8 if axes else 3
    plot_w, plot_h = max(1, width - left - 4), max(1, height - top - bottom)
    values = [np.asarray(v, np.float64) for v in series.values()]
    positive = np.concatenate([v[np.isfinite(v) & (v > 0)] for v in values]) if values else np.empty(0)
    count = max((len(v) for v in values), default=0)
    if title:
        put_label(chart, fit_text(title, width - 4, scale), (2, 1), scale=scale, background=None)
    if positive.size == 0 or count == 0:
        return chart
    low, high = float(positive.min()), float(positive.max())
    if high / low < 10:  # at least a decade, centred, so flat curves do not fill the box
        middle = math.sqrt(low * high)
        low, high = middle / math.sqrt(10), middle * math.sqrt(10)
    log_low, log_span = math.log10(low), math.log10(high) - math.log10(low)

    def to_xy(index: np.ndarray, value: np.ndarray) -> np.ndarray:
        x = left + (index - 1) / max(1, count - 1) * (plot_w - 1)
        y = top + (1 - (np.log10(value) - log_low) / log_span) * (plot_h - 1)
        return np.stack([x, y], axis=1)

    cv2.rectangle(chart, (left, top), (left + plot_w - 1, top + plot_h - 1), (70, 70, 70), 1)
    if axes:
        for tick in _nice_log_ticks(low, high):
            y = int(round(to_xy(np.array([1.0]), np.array([tick]))[0, 1]))
            cv2.line(chart, (left, y), (left + plot_w - 1, y), (50, 50, 50), 1)
            put_label(chart, _format_value(tick), (1, max(0, y - text_h // 2 - 2)), scale=scale,
                      colour=(200, 200, 200), background=None)
        put_label(chart, "1", (left - 2, top + plot_h), scale=scale, colour=(200, 200, 200),
                  background=None)
        end = str(count)
        put_label(chart, end, (left + plot_w - text_size(end, scale)[0] - 4, top + plot_h),
                  scale=scale, colour=(200, 200, 200), background=None)
    for iteration, label in separators:
        x = int(round(to_xy(np.array([float(iteration)]), np.array([low]))[0, 0]))
        for y in range(top, top + plot_h, 6):  # dashed
            cv2.line(chart, (x, y), (x, min(y + 2, top + plot_h - 1)), GREY, 1)
        if label and axes:
            put_label(chart, label, (x + 2, top + 1), scale=scale * 0.9, colour=(170, 170, 170),
                      background=None)
    extra = iter(EXTRA_COLOURS * 4)
    legend_entries = [(name, PALETTE.get(name) or next(extra)) for name in series]
    # Drawn in reverse so the first series (the total, by convention) lies on top.
    for (name, colour), value in reversed(list(zip(legend_entries, values))):
        index = np.arange(1, len(value) + 1, dtype=np.float64)
        keep = np.isfinite(value) & (value > 0)
        # Runs of valid points become polylines; a gap (invalid value) breaks the line.
        points = to_xy(index[keep], value[keep])
        breaks = np.flatnonzero(np.diff(index[keep]) > 1) + 1
        for part in np.split(points, breaks):
            if len(part) == 1:
                cv2.circle(chart, tuple(np.rint(part[0]).astype(int)), 1, colour, -1, cv2.LINE_AA)
            elif len(part):
                cv2.polylines(chart, [np.rint(part * 4).astype(np.int32)], False, colour, 1,
                              cv2.LINE_AA, shift=2)
    if legend and len(legend_entries) > 1:
        y = top + 2
        for name, colour in legend_entries:
            label_w = text_size(name, scale)[0]
            x = left + plot_w - label_w - 18
            cv2.line(chart, (x - 4, y + text_h // 2 + 2), (x + 8, y + text_h // 2 + 2), colour, 2)
            put_label(chart, name, (x + 10, y), scale=scale, colour=colour, background=None)
            y += text_h + 5
    return chart


def fit_into(image: np.ndarray, width: int, height: int) -> np.ndarray:
    """The image scaled to fit the box (aspect kept), centred on a dark background."""
    h, w = image.shape[:2]
    factor = min(width / w, height / h)
    new_w, new_h = max(1, round(w * factor)), max(1, round(h * factor))
    interpolation = cv2.INTER_AREA if factor < 1 else cv2.INTER_NEAREST if factor >= 3 else cv2.INTER_CUBIC
    scaled = cv2.resize(image, (new_w, new_h), interpolation=interpolation)
    box = np.full((height, width, 3), BACKGROUND, np.uint8)
    y, x = (height - new_h) // 2, (width - new_w) // 2
    box[y:y + new_h, x:x + new_w] = scaled
    return box


def captioned_grid(images: Sequence[np.ndarray], captions: Sequence[Sequence[str]], *,
                   cell: int = 256, columns: Optional[int] = None, title: str = "",
                   text_height: float = 11.0, gap: int = 4) -> np.ndarray:
    """A contact sheet: each image fitted into a box ``cell`` px wide (and at most as tall),
    its caption lines below.

    Captions are a list of lines per image; long lines are shortened to the cell width.
    """
    if not images:
        raise ValueError("captioned_grid needs at least one image")
    columns = columns or math.ceil(math.sqrt(len(images)))
    rows = math.ceil(len(images) / columns)
    scale = font_scale(text_height)
    _, line_h, baseline = text_size("Ag", scale)
    line_step = line_h + baseline + 4
    lines = max((len(c) for c in captions), default=0)
    caption_h = lines * line_step + 2
    title_h = line_step + 6 if title else 0
    # Cells as tall as the tallest image needs (landscape sheets get no empty bands).
    image_h = min(cell, max(math.ceil(cell * im.shape[0] / im.shape[1]) for im in images))
    cell_h = image_h + caption_h
    sheet = np.full((title_h + rows * (cell_h + gap) + gap, columns * (cell + gap) + gap, 3),
                    BACKGROUND, np.uint8)
    if title:
        put_label(sheet, fit_text(title, sheet.shape[1] - 8, scale), (gap, 3), scale=scale,
                  background=None)
    for number, (image, caption) in enumerate(zip(images, captions)):
        row, column = divmod(number, columns)
        x, y = gap + column * (cell + gap), title_h + gap + row * (cell_h + gap)
        sheet[y:y + image_h, x:x + cell] = fit_into(image, cell, image_h)
        for line_number, line in enumerate(caption):
            put_label(sheet, fit_text(line, cell - 4, scale), (x, y + image_h + 1 + line_number * line_step),
                      scale=scale, background=None)
    return sheet


def even_size(height: int, width: int, long_side: int) -> tuple[int, int]:
    """(height, width) with the given long side, aspect kept, both even (H.264 yuv420p)."""
    factor = long_side / max(height, width)
    return max(2, 2 * round(height * factor / 2)), max(2, 2 * round(width * factor / 2))
