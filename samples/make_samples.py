"""Generate the procedural style images in samples/ (run from the repository root).

    python samples/make_samples.py

Deterministic: the same files come out every time. Needs only numpy and OpenCV.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

HERE = Path(__file__).resolve().parent


def swirls(size: int = 512, strokes: int = 9000, seed: int = 1) -> np.ndarray:
    """Short curved brush strokes following a field of vortices, in a night-sky palette."""
    rng = np.random.default_rng(seed)
    centres = rng.uniform(0, size, (7, 2))
    spins = rng.choice([-1.0, 1.0], 7) * rng.uniform(0.6, 1.4, 7)
    palette = np.array([[32, 45, 110], [40, 80, 160], [70, 120, 200], [230, 200, 70],
                        [250, 230, 140], [20, 30, 60], [90, 150, 210]], np.float32)

    def direction(point: np.ndarray) -> np.ndarray:
        offsets = point[None, :] - centres
        dist2 = (offsets ** 2).sum(1) + 400.0
        swirl = np.stack([-offsets[:, 1], offsets[:, 0]], 1) * (spins / dist2)[:, None]
        vector = swirl.sum(0) * 60 + np.array([0.35, 0.05])
        return vector / (np.linalg.norm(vector) + 1e-6)

    canvas = np.full((size, size, 3), (25, 35, 80), np.uint8)
    for _ in range(strokes):
        point = rng.uniform(0, size, 2)
        path = [point.copy()]
        for _ in range(rng.integers(6, 16)):
            point = point + 3.0 * direction(point)
            path.append(point.copy())
        colour = palette[rng.integers(len(palette))] * rng.uniform(0.8, 1.15)
        cv2.polylines(canvas, [np.array(path, np.int32)], False,
                      tuple(int(c) for c in np.clip(colour, 0, 255)), int(rng.integers(2, 5)),
                      cv2.LINE_AA)
    return cv2.cvtColor(cv2.GaussianBlur(canvas, (3, 3), 0), cv2.COLOR_RGB2BGR)


def mosaic(size: int = 512, cells: int = 260, seed: int = 2) -> np.ndarray:
    """Stained glass: Voronoi cells in saturated colours with dark lead lines."""
    rng = np.random.default_rng(seed)
    subdiv = cv2.Subdiv2D((0, 0, size, size))
    for point in rng.uniform(1, size - 1, (cells, 2)):
        subdiv.insert((float(point[0]), float(point[1])))
    facets, _ = subdiv.getVoronoiFacetList([])
    canvas = np.zeros((size, size, 3), np.uint8)
    hues = rng.integers(0, 180, len(facets))
    for facet, hue in zip(facets, hues):
        hsv = np.uint8([[[hue, rng.integers(150, 256), rng.integers(140, 256)]]])
        colour = cv2.cvtColor(hsv, cv2.COLOR_HSV2BGR)[0, 0]
        polygon = np.round(facet).astype(np.int32)
        cv2.fillConvexPoly(canvas, polygon, tuple(int(c) for c in colour), cv2.LINE_AA)
        cv2.polylines(canvas, [polygon], True, (20, 20, 25), 3, cv2.LINE_AA)
    return canvas


def main() -> None:
    cv2.imwrite(str(HERE / "swirls.png"), swirls())
    cv2.imwrite(str(HERE / "mosaic.png"), mosaic())


if __name__ == "__main__":
    main()
