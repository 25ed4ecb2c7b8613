"""Video I/O through imageio-ffmpeg. Every ffmpeg process is owned by a context manager.

Outputs are H.264 ``yuv420p`` MP4 with ``+faststart`` (plays in browsers), written to a temporary
file beside the target and renamed only when every frame went in: a failed or interrupted run
leaves no half-written video.
"""

from __future__ import annotations

import os
import re
import subprocess
from contextlib import contextmanager
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Iterator, Optional

import imageio_ffmpeg
import numpy as np
import torch

from ..errors import InputError, OutputError, UsageError
from .. import images

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
        return self  # ffmpeg starts with the first frame: a job that fails before has no encoder

    def _start(self) -> None:
        self._temp = images.temp_beside(self.path, suffix=f".part{self.path.suffix}")
        try:
            self._gen = imageio_ffmpeg.write_frames(
                str(self._temp), (self.width, self.height), fps=self.fps, codec="libx264",
                pix_fmt_in="rgb24", pix_fmt_out="yuv420p", macro_block_size=1, quality=None,
                ffmpeg_log_level="error",
                output_params=["-crf", str(self.crf), "-movflags", "+faststart"],
                audio_path=self.audio_from,
                audio_codec=self.audio_codec if self.audio_from else None)
            self._gen.send(None)  # start ffmpeg
        except BaseException:
            self._temp.unlink(missing_ok=True)
            self._gen = self._temp = None
            raise

    def write(self, frame: np.ndarray | torch.Tensor) -> None:
        frame = images.to_uint8(frame)
        if frame.shape != (self.height, self.width, 3):
            raise UsageError(f"frame of shape {frame.shape} sent to a {self.width}x{self.height} video")
        if self._gen is None:
            self._start()
        self._gen.send(np.ascontiguousarray(frame))
        self.frames_written += 1

    def __exit__(self, exc_type, exc, tb) -> None:
        gen, temp = self._gen, self._temp
        self._gen = self._temp = None
        if gen is None:
            return  # no frame came: no ffmpeg ran and no file was made
        try:
            gen.close()  # flushes and waits for ffmpeg, or stops it
            if exc_type is None:
                self._check(temp)
                os.replace(temp, self.path)
        finally:
            temp.unlink(missing_ok=True)

    def _check(self, temp: Path) -> None:
        """imageio-ffmpeg does not look at ffmpeg's exit status: count what it really wrote."""
        try:
            encoded = probe(temp).frames
        except InputError:
            encoded = 0
        if encoded != self.frames_written:
            raise OutputError(f"{self.path}: the encoder wrote {encoded} of {self.frames_written} "
                              "frames (is the disk full?); no video was kept")


# --- reading -------------------------------------------------------------------------------------

VIDEO_SUFFIXES = {".mp4", ".m4v", ".mov", ".mkv", ".webm", ".avi", ".mpg", ".mpeg", ".ts", ".mts",
                  ".m2ts", ".wmv", ".flv", ".ogv", ".3gp", ".gif"}
# Audio codecs that an MP4 can carry as they are; anything else is re-encoded to AAC.
MP4_AUDIO_CODECS = {"aac", "mp3", "alac", "opus", "ac3", "eac3", "flac"}
PROBE_TIMEOUT_S = 600


@dataclass(frozen=True)
class VideoInfo:
    width: int
    height: int
    fps: Fraction
    frames: int
    has_audio: bool
    audio_codec: Optional[str] = None

    @property
    def duration(self) -> Fraction:
        return self.frames / self.fps


def looks_like_video(path: str | os.PathLike) -> bool:
    return Path(path).suffix.lower() in VIDEO_SUFFIXES


def _ffmpeg(args: list[str], path: Path) -> subprocess.CompletedProcess:
    """Run ffmpeg to completion (subprocess.run kills it if we are interrupted)."""
    cmd = [imageio_ffmpeg.get_ffmpeg_exe(), "-hide_banner", "-nostdin"] + args
    try:
        return subprocess.run(cmd, capture_output=True, text=True, errors="replace",
                              timeout=PROBE_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        raise InputError(f"{path}: ffmpeg took more than {PROBE_TIMEOUT_S} s to read it") from None


_TB = re.compile(r"^#tb 0: (\d+)/(\d+)", re.MULTILINE)
_SIZE = re.compile(r"^#dimensions 0: (\d+)x(\d+)", re.MULTILINE)
_FRAME = re.compile(r"frame=\s*(\d+)")
_AUDIO = re.compile(r"Stream #\d+:\d+.*?: Audio: (\w+)")
_VIDEO_SIZE = re.compile(r"Stream #\d+:\d+.*?: Video: .*?, (\d{2,5})x(\d{2,5})")


def probe(path: str | os.PathLike) -> VideoInfo:
    """Exact size, rational frame rate, frame count and audio of a video file.

    The frame rate is the inverse of the time base that ffmpeg's framemd5 muxer reports for the
    first video stream (``#tb 0: 1001/30000``); the frame count is what a full demux of that stream
    counts, so it holds for variable-rate files and files with wrong headers.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such file")
    head = _ffmpeg(["-i", str(path), "-map", "0:v:0", "-frames:v", "1", "-f", "framemd5", "-"], path)
    tb = _TB.search(head.stdout)
    if head.returncode != 0 or tb is None:
        last = (head.stderr.strip().splitlines() or ["no video stream"])[-1]
        raise InputError(f"{path}: not a video ffmpeg can decode ({last})")
    fps = Fraction(int(tb.group(2)), int(tb.group(1)))
    size = _SIZE.search(head.stdout) or _VIDEO_SIZE.search(head.stderr)
    if size is None:
        raise InputError(f"{path}: ffmpeg reports no frame size for its video stream")
    audio = _AUDIO.search(head.stderr)
    count = _ffmpeg(["-i", str(path), "-map", "0:v:0", "-c", "copy", "-f", "null", "-"], path)
    counts = _FRAME.findall(count.stderr)
    if count.returncode != 0 or not counts or int(counts[-1]) == 0:
        raise InputError(f"{path}: could not count its video frames")
    return VideoInfo(int(size.group(1)), int(size.group(2)), fps, int(counts[-1]),
                     audio is not None, audio.group(1) if audio else None)


@contextmanager
def open_frames(path: str | os.PathLike) -> Iterator[Iterator[np.ndarray]]:
    """The frames of a video, one (H, W, 3) uint8 RGB array at a time::

        with open_frames("in.mp4") as frames:
            for frame in frames: ...

    One decoded frame per stored frame (``-fps_mode passthrough``: ffmpeg neither drops nor
    duplicates); the ffmpeg process is stopped when the block exits, however it exits.
    """
    reader = imageio_ffmpeg.read_frames(str(path), pix_fmt="rgb24",
                                        output_params=["-fps_mode", "passthrough"])
    try:
        meta = reader.__next__()
        width, height = meta["size"]

        def frames() -> Iterator[np.ndarray]:
            for raw in reader:
                yield np.frombuffer(raw, np.uint8).reshape(height, width, 3)

        yield frames()
    finally:
        reader.close()  # imageio-ffmpeg stops and reaps ffmpeg in its finally


def mux_audio(video_only: Path, source: str | os.PathLike, info: VideoInfo, output: Path, *,
              start: Fraction = Fraction(0), duration: Optional[Fraction] = None) -> None:
    """Write ``output`` (via a temp file + rename): the video stream of ``video_only`` as it is,
    plus the source's audio from ``start`` for ``duration`` seconds, copied when an MP4 can carry
    its codec and re-encoded to AAC otherwise."""
    codec = "copy" if info.audio_codec in MP4_AUDIO_CODECS else "aac"
    temp = images.temp_beside(output, suffix=f".part{output.suffix}")
    args = ["-y", "-i", str(video_only)]
    if start:
        args += ["-ss", f"{float(start):.6f}"]
    args += ["-i", str(source), "-map", "0:v:0", "-map", "1:a:0", "-c:v", "copy", "-c:a", codec]
    if duration is not None:
        args += ["-t", f"{float(duration):.6f}"]
    args += ["-movflags", "+faststart", "-f", "mp4", str(temp)]
    try:
        done = _ffmpeg(args, Path(source))
        if done.returncode != 0:
            last = (done.stderr.strip().splitlines() or ["unknown error"])[-1]
            raise InputError(f"{source}: could not copy its audio into {output.name} ({last})")
        os.replace(temp, output)
    finally:
        temp.unlink(missing_ok=True)


def even_size(height: int, width: int) -> tuple[int, int]:
    """Nearest even (height, width), at least 2: H.264 yuv420p has no odd sizes."""
    return max(2, 2 * round(height / 2)), max(2, 2 * round(width / 2))
