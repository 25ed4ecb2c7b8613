"""Generate the procedural style images in samples/ (run from the repository root).

    python samples/make_samples.py

Deterministic: the same files come out every time. Needs numpy and OpenCV, and imageio-ffmpeg's
ffmpeg for the clip.
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


def pan_frames(photo: np.ndarray, count: int, width: int, height: int) -> list[np.ndarray]:
    """A slow pan with a gentle zoom-in over a photo: smooth, known camera motion."""
    photo_h, photo_w = photo.shape[:2]
    frames = []
    for t in np.linspace(0.0, 1.0, count):
        zoom = 1.0 + 0.25 * t
        view_w = photo_w / 1.35 / zoom
        view_h = view_w * height / width
        left = (photo_w - view_w) * (0.2 + 0.6 * t)
        top = (photo_h - view_h) * 0.5
        scale = width / view_w
        matrix = np.float32([[scale, 0, -left * scale], [0, scale, -top * scale]])
        frames.append(cv2.warpAffine(photo, matrix, (width, height), flags=cv2.INTER_AREA,
                                     borderMode=cv2.BORDER_REFLECT))
    return frames


def pan_clip(path: Path, seconds: float = 2.5, width: int = 320, height: int = 240,
             fps: str = "24000/1001") -> None:
    """samples/cat_pan.mp4: a pan/zoom over cat.jpg at 24000/1001 fps with an AAC tone (A3 + E4)."""
    import subprocess
    from fractions import Fraction

    import imageio_ffmpeg

    count = round(seconds * Fraction(fps))
    photo = cv2.imread(str(HERE / "cat.jpg"), cv2.IMREAD_COLOR)
    frames = pan_frames(photo, count, width, height)
    duration = f"{float(count / Fraction(fps)):.4f}"
    cmd = [imageio_ffmpeg.get_ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-nostdin", "-y",
           "-f", "rawvideo", "-pix_fmt", "bgr24", "-s", f"{width}x{height}", "-r", fps, "-i", "-",
           "-f", "lavfi", "-i", f"sine=frequency=220:sample_rate=44100:duration={duration}",
           "-f", "lavfi", "-i", f"sine=frequency=330:sample_rate=44100:duration={duration}",
           "-filter_complex", "[1:a][2:a]amix=inputs=2,volume=0.5[a]", "-map", "0:v", "-map", "[a]",
           "-c:v", "libx264", "-crf", "26", "-preset", "slow", "-pix_fmt", "yuv420p",
           "-c:a", "aac", "-b:a", "64k", "-movflags", "+faststart", "-fflags", "+bitexact",
           "-flags:v", "+bitexact", "-flags:a", "+bitexact", str(path)]
    subprocess.run(cmd, input=b"".join(f.tobytes() for f in frames), check=True, timeout=300)


def main() -> None:
    cv2.imwrite(str(HERE / "swirls.png"), swirls())
    cv2.imwrite(str(HERE / "mosaic.png"), mosaic())
    pan_clip(HERE / "cat_pan.mp4")


if __name__ == "__main__":
    main()
