"""Video I/O through imageio-ffmpeg. Every ffmpeg process is owned by a context manager.

Outputs are H.264 ``yuv420p`` MP4 with ``+faststart`` (plays in browsers), written to a temporary
file beside the target and renamed only when every frame went in: a failed or interrupted run
leaves no half-written video.
"""

from __future__ import annotations

import logging
import math
import os
import re
import subprocess
from contextlib import contextmanager
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Iterator, Optional, Sequence

import imageio_ffmpeg
import numpy as np
import torch

from ..errors import InputError, OutputError, UsageError
from .. import images

DEFAULT_CRF = 18  # visually lossless for stylized content
# x264's tuning for film grain: stylized frames are all fine texture that changes a little from
# frame to frame, which the default tuning quantises away in the predicted frames (a softer
# texture after the first frame, and a pulse at every keyframe). Measured on a stylized pan
# (benchmarks/video_quality.py): the style distance of late frames over the first's, 1.28 in the
# lossless frames, was 1.95 in the default-tuned MP4 and is 1.33 with this, at 1.4x the size.
ENCODER_TUNE = "grain"


class _NoLibraryLines(logging.Filter):
    """imageio-ffmpeg's own warnings are not for our users: a rotated clip's "frame size for
    reading ... is different" is ffmpeg applying the rotation (we read the size it delivers), and
    "had to kill ffmpeg" is us stopping it on purpose. Anything that matters reaches us as an
    exception, which the CLI turns into one line."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno >= logging.ERROR


logging.getLogger("imageio_ffmpeg").addFilter(_NoLibraryLines())


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
                output_params=["-crf", str(self.crf), "-tune", ENCODER_TUNE,
                               "-movflags", "+faststart"],
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
        check_encoded(self.path, temp, self.frames_written)


def check_encoded(target: Path, temp: Path, expected: int) -> None:
    try:
        encoded = probe(temp).frames
    except InputError:
        encoded = 0
    if encoded != expected:
        raise OutputError(f"{target}: the encoder wrote {encoded} of {expected} "
                          "frames (is the disk full?); no video was kept")


def frame_clock(durations: Sequence[Fraction], limit: int = 1_000_000) -> int:
    """Ticks per second in which every frame time is whole (the source's time base, in effect),
    or MPEG's 90 kHz when that would be finer than a microsecond."""
    clock = 1
    for duration in durations:
        clock = clock * Fraction(duration).denominator // math.gcd(clock, Fraction(duration).denominator)
        if clock > limit:
            return 90000
    return clock


class TimedVideoWriter:
    """An H.264 MP4 whose frames show at given times (a variable-rate source's), with the same
    interface as ``VideoWriter``. The frames are the PNG files already written for them (the work
    folder's); ``write`` checks and counts each, and when the block ends with all of them, one
    ffmpeg run encodes them through its concat demuxer, each with its exact duration, into a
    temporary file that is renamed only when every frame is in it.

    Each image is read with the frames' own tick as its time base (``option framerate``) and
    passthrough timing; the durations are written as whole microseconds of the running times, so
    every frame starts at its source time to the tick, with no drift however long the video. The
    concat demuxer gives the last frame a duration of one tick; with sound the file still lasts
    as long as the selection (the audio is cut to it)."""

    def __init__(self, path: str | os.PathLike, width: int, height: int,
                 frame_files: Sequence[Path], durations: Sequence[Fraction], *,
                 crf: int = DEFAULT_CRF):
        if width % 2 or height % 2:
            raise UsageError(f"H.264 yuv420p needs even width and height, got {width}x{height}")
        if len(frame_files) != len(durations):
            raise ValueError("one duration per frame file")
        self.path = Path(path)
        self.width, self.height, self.crf = width, height, crf
        self.frame_files, self.durations = list(frame_files), list(durations)
        self.frames_written = 0
        self.ticks_per_second = frame_clock(self.durations)

    def __enter__(self) -> "TimedVideoWriter":
        return self

    def write(self, frame: np.ndarray | torch.Tensor) -> None:
        shape = tuple(frame.shape[-2:]) if isinstance(frame, torch.Tensor) else frame.shape[:2]
        if shape != (self.height, self.width):
            raise UsageError(f"frame of shape {tuple(frame.shape)} sent to a "
                             f"{self.width}x{self.height} video")
        if self.frames_written >= len(self.frame_files):
            raise UsageError(f"more than the {len(self.frame_files)} frames planned sent to {self.path}")
        if not self.frame_files[self.frames_written].is_file():
            raise OutputError(f"{self.frame_files[self.frames_written]}: the frame to encode is missing")
        self.frames_written += 1

    def concat_list(self) -> str:
        """The ffconcat script: every frame file with its duration in seconds (exact decimals of
        whole ticks), read with the tick as its time base."""
        lines = ["ffconcat version 1.0"]
        elapsed = Fraction(0)
        for frame_file, duration in zip(self.frame_files, self.durations):
            micros = round((elapsed + duration) * 1_000_000) - round(elapsed * 1_000_000)
            elapsed += duration
            name = str(Path(frame_file).resolve()).replace("'", "'\\''")
            lines += [f"file '{name}'", f"option framerate {self.ticks_per_second}",
                      f"duration {max(1, micros) / 1_000_000:.6f}"]
        return "\n".join(lines) + "\n"

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None or not self.frames_written:
            return
        if self.frames_written != len(self.frame_files):
            return  # the caller's count check says what is missing; nothing is encoded
        temp = images.temp_beside(self.path, suffix=f".part{self.path.suffix}")
        script = images.temp_beside(self.path, suffix=".ffconcat")
        try:
            script.write_text(self.concat_list())
            done = _ffmpeg(["-y", "-loglevel", "error", "-f", "concat", "-safe", "0",
                            "-i", str(script), "-fps_mode", "passthrough", "-c:v", "libx264",
                            "-crf", str(self.crf), "-tune", ENCODER_TUNE, "-pix_fmt", "yuv420p",
                            "-video_track_timescale", str(self.ticks_per_second),
                            "-movflags", "+faststart", "-f", "mp4", str(temp)], self.path)
            if done.returncode != 0:
                last = (done.stderr.strip().splitlines() or ["unknown error"])[-1]
                raise OutputError(f"{self.path}: the encoder failed ({last}); no video was kept")
            check_encoded(self.path, temp, self.frames_written)
            os.replace(temp, self.path)
        finally:
            temp.unlink(missing_ok=True)
            script.unlink(missing_ok=True)


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
    fps: Fraction  # the nominal rate; a variable-rate video's frames follow ``timestamps``
    frames: int  # what the file really holds (decodable packets), not what its header says
    has_audio: bool
    audio_codec: Optional[str] = None
    # presentation time of each frame in seconds from the first, exact; empty: frame k at k/fps
    timestamps: tuple[Fraction, ...] = ()
    last_duration: Optional[Fraction] = None  # how long the last frame shows (variable rate)
    declared_frames: Optional[int] = None  # what the header promises, when it promises more
    damage: Optional[str] = None  # the demuxer's complaint about a truncated or damaged file

    @property
    def variable_rate(self) -> bool:
        return bool(self.timestamps)

    @property
    def truncated(self) -> bool:
        return self.damage is not None

    def time_of(self, index: int) -> Fraction:
        """When frame ``index`` shows, in seconds from the first frame."""
        return self.timestamps[index] if self.timestamps else index / self.fps

    def end_of(self, index: int) -> Fraction:
        """When frame ``index`` stops showing (the next one's time; for the last, its duration)."""
        if not self.timestamps:
            return (index + 1) / self.fps
        if index + 1 < len(self.timestamps):
            return self.timestamps[index + 1]
        return self.timestamps[index] + (self.last_duration or 1 / self.fps)

    @property
    def duration(self) -> Fraction:
        return self.end_of(self.frames - 1)

    def durations(self, first: int, count: int) -> list[Fraction]:
        """How long each of frames first..first+count-1 shows."""
        return [self.end_of(k) - self.time_of(k) for k in range(first, first + count)]

    def describe_rate(self) -> str:
        if not self.variable_rate:
            return f"{self.fps} fps"
        gaps = [b - a for a, b in zip(self.timestamps, self.timestamps[1:])] or [1 / self.fps]
        return (f"variable frame rate ({float(1 / max(gaps)):.3g} to {float(1 / min(gaps)):.3g} fps, "
                f"{float(self.frames / self.duration):.4g} on average)")


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
_PACKET = re.compile(r"^0,\s*(-?\d+),\s*(-?\d+),", re.MULTILINE)
_AUDIO = re.compile(r"Stream #\d+:\d+.*?: Audio: (\w+)")
_VIDEO_SIZE = re.compile(r"Stream #\d+:\d+.*?: Video: .*?, (\d{2,5})x(\d{2,5})")
_DURATION = re.compile(r"Duration: (\d+):(\d\d):(\d\d(?:\.\d+)?)")
NO_PTS = -(1 << 63)
# a clip whose every frame lies within this fraction of a frame of k/fps is constant-rate: its
# frames are encoded at that exact rational rate
CONSTANT_RATE_SLACK = Fraction(1, 4)


def _packet_times(listing: str) -> tuple[Optional[Fraction], list[int]]:
    """Time base and presentation times (sorted) of the video packets in a
    ``-c copy -copyts -f framemd5`` listing."""
    tb = _TB.search(listing)
    pts = sorted(int(p) for _, p in _PACKET.findall(listing))
    return (Fraction(int(tb.group(1)), int(tb.group(2))) if tb else None), pts


def frame_times(pts: Sequence[int], tb: Optional[Fraction],
                fps: Fraction) -> tuple[tuple[Fraction, ...], Optional[Fraction]]:
    """(timestamps, last frame's duration) of a variable-rate stream, or ((), None) when every
    frame is within a quarter frame of k/fps (constant rate) or the stream has no usable times."""
    if tb is None or len(pts) < 2 or NO_PTS in pts or len(set(pts)) != len(pts):
        return (), None
    times = tuple((p - pts[0]) * tb for p in pts)
    if all(abs(t - k / fps) <= CONSTANT_RATE_SLACK / fps for k, t in enumerate(times)):
        return (), None
    # packet durations are decode-order spacings, not the last frame's: it shows as long as
    # the one before it
    return times, times[-1] - times[-2]


def _declared_frames(head_stderr: str, counted: int, times: Sequence[Fraction],
                     fps: Fraction) -> Optional[int]:
    """The frames the header's duration promises, when that is more than were found."""
    found = _DURATION.search(head_stderr)
    if not found:
        return None
    hours, minutes, seconds = found.groups()
    duration = Fraction(int(hours) * 3600 + int(minutes) * 60) + Fraction(seconds)
    if times:  # variable rate: the missing span at the rate seen so far
        seen = times[-1] if len(times) > 1 else 1 / fps
        rate = (len(times) - 1) / seen if len(times) > 1 else fps
        promised = len(times) + round((duration - times[-1] - 1 / rate) * rate)
    else:
        promised = round(duration * fps)
    return promised if promised > counted else None


def probe(path: str | os.PathLike) -> VideoInfo:
    """Exact size, frame rate, frame times, frame count and audio of a video file.

    The nominal rate is the inverse of the time base that ffmpeg's framemd5 muxer reports for the
    first video stream (``#tb 0: 1001/30000``). The frames and their presentation times are what
    a full demux of that stream lists (``-c copy -copyts -f framemd5``: no decoding), so they
    hold for variable-rate files and files with wrong headers; a file whose frames stray from
    k/fps by more than a quarter frame is variable-rate and keeps its times. A demux that stops
    with an error (a cut download) is recorded as damage, with the count the header promised.
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
    listing = _ffmpeg(["-loglevel", "error", "-i", str(path), "-map", "0:v:0", "-c", "copy",
                       "-copyts", "-f", "framemd5", "-"], path)
    stream_tb, pts = _packet_times(listing.stdout)
    if listing.returncode != 0 and not pts or not pts:
        raise InputError(f"{path}: could not count its video frames")
    times, last_duration = frame_times(pts, stream_tb, fps)
    complaints = listing.stderr.strip().splitlines()
    damage = complaints[-1].split("] ", 1)[-1] if complaints else None
    declared = _declared_frames(head.stderr, len(pts), times, fps) if damage else None
    if damage:  # a packet that is there may still not decode: count what does
        decoded = _ffmpeg(["-loglevel", "quiet", "-i", str(path), "-map", "0:v:0",
                           "-fps_mode", "passthrough", "-f", "framemd5", "-"], path)
        kept = len(_PACKET.findall(decoded.stdout))
        if kept == 0:
            raise InputError(f"{path}: no frame of it decodes ({damage})")
        if kept < len(pts):
            declared = declared or len(pts)
            pts, times = pts[:kept], times[:kept]
    return VideoInfo(int(size.group(1)), int(size.group(2)), fps, len(pts),
                     audio is not None, audio.group(1) if audio else None,
                     timestamps=times, last_duration=last_duration,
                     declared_frames=declared, damage=damage)


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
