"""Shot boundaries (scene cuts): where a frame has nothing to do with the one before it, warping
the previous output into it paints the old shot's strokes over the new one, and holding it to
that warp freezes them in. A frame that opens a new shot starts a chain of its own, as the first
frame does: from --init, with --first-iterations, nothing warped across. The frame loop and the
segment plan of a video spread over workers (a segment starts at a cut near its boundary, and
needs no join there) use the same test.

The test compares the frames' colour distributions: hue, saturation and value histograms of the
frame at a small size, by their Bhattacharyya distance (0 for the same distribution, 1 for
disjoint ones). Motion moves pixels but keeps most of the distribution; a cut replaces it.
"""

from __future__ import annotations

from typing import Iterable

import cv2
import numpy as np

SIGNATURE_SIDE = 64  # px: the long side the histograms are taken at (noise and detail averaged out)
BINS = (16, 4, 4)  # hue, saturation, value
RANGES = [0.0, 360.0, 0.0, 1.0, 0.0, 1.0]  # OpenCV's float HSV


def signature(frame: np.ndarray) -> np.ndarray:
    """The normalised HSV histogram of an (H, W, 3) RGB frame in [0, 1]."""
    height, width = frame.shape[:2]
    scale = SIGNATURE_SIDE / max(height, width)
    if scale < 1:
        size = (max(1, round(width * scale)), max(1, round(height * scale)))
        frame = cv2.resize(frame, size, interpolation=cv2.INTER_AREA)
    hsv = cv2.cvtColor(np.ascontiguousarray(frame, dtype=np.float32), cv2.COLOR_RGB2HSV)
    histogram = cv2.calcHist([hsv], [0, 1, 2], None, list(BINS), RANGES)
    return histogram / max(float(histogram.sum()), 1e-12)


def distance(previous: np.ndarray, current: np.ndarray) -> float:
    """Bhattacharyya distance of two signatures, in [0, 1]."""
    return float(cv2.compareHist(previous, current, cv2.HISTCMP_BHATTACHARYYA))


def find_cuts(frames: Iterable[np.ndarray], threshold: float) -> list[int]:
    """The positions of the frames that open a new shot (never 0), in order."""
    if threshold >= 1:
        return []
    cuts, last = [], None
    for index, frame in enumerate(frames):
        current = signature(frame)
        if last is not None and distance(last, current) > threshold:
            cuts.append(index)
        last = current
    return cuts

