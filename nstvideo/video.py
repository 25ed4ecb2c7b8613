"""Video I/O through imageio-ffmpeg. Every ffmpeg process is owned by a context manager.

Outputs are H.264 ``yuv420p`` MP4 with ``+faststart`` (plays in browsers), written to a temporary
file beside the target and renamed only when every frame went in: a failed or interrupted run
leaves no half-written video.
"""

from __future__ import annotations

import os
from fractions import Fraction
from pathlib import Path
from typing import Optional

import imageio_ffmpeg
import numpy as np
import torch

from .errors import UsageError
from .images import temp_beside

DEFAULT_CRF = 18  # visually lossless for stylized content


class VideoWriter:
    """Stream RGB frames into an H.264 MP4::

        with VideoWriter("out.mp4", width, height, Fraction(30000, 1001)) as writer:
            writer.write(frame)   # (H, W, 3) float in [0,1] or uint8, or a (1,3,H,W) tensor

    Width and height must be even (yuv420p); nothing is silently rescaled.
    """

    def __init__(self, path: str | os.PathLike, width: int, height: int, fps: Fraction | float | int,
                 *, audio_from: Optional[str] = None, audio_codec: str = "copy",
                 crf: int = DEFAULT_CRF):
        if width % 2 or height % 2:
            raise UsageError(f"H.264 yuv420p needs even width and height, got {width}x{height}")
        self.path = Path(path)
        self.width, self.height = width, height
        self.fps = fps if isinstance(fps, Fraction) else Fraction(fps).limit_denominator(1001)
        self.audio_from, self.audio_codec, self.crf = audio_from, audio_codec, crf
        self.frames_written = 0
        self._temp: Optional[Path] = None
        self._gen = None

    def __enter__(self) -> "VideoWriter":
        self._temp = temp_beside(self.path, suffix=f".part{self.path.suffix}")
        self._gen = imageio_ffmpeg.write_frames(
            str(self._temp), (self.width, self.height), fps=self.fps, codec="libx264",
            pix_fmt_in="rgb24", pix_fmt_out="yuv420p", macro_block_size=1, quality=None,
            ffmpeg_log_level="error", output_params=["-crf", str(self.crf), "-movflags", "+faststart"],
            audio_path=self.audio_from, audio_codec=self.audio_codec if self.audio_from else None)
        self._gen.send(None)  # start ffmpeg
        return self

    def write(self, frame: np.ndarray | torch.Tensor) -> None:
        if isinstance(frame, torch.Tensor):
            frame = frame.detach().float().clamp(0, 1)[0].permute(1, 2, 0).cpu().numpy()
        if frame.dtype != np.uint8:
            frame = np.clip(np.rint(frame * 255.0), 0, 255).astype(np.uint8)
        if frame.shape != (self.height, self.width, 3):
            raise UsageError(f"frame of shape {frame.shape} sent to a {self.width}x{self.height} video")
        self._gen.send(np.ascontiguousarray(frame))
        self.frames_written += 1

    def __exit__(self, exc_type, exc, tb) -> None:
        gen, temp = self._gen, self._temp
        self._gen = self._temp = None
        try:
            gen.close()  # flushes and waits for ffmpeg, or stops it
        except BaseException:
            temp.unlink(missing_ok=True)
            raise
        if exc_type is None and self.frames_written:
            os.replace(temp, self.path)
        else:
            temp.unlink(missing_ok=True)
