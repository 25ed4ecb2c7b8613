"""Image sequences named by ffmpeg's printf patterns (``shot/f_%04d.png``), in and out.

In: every file the pattern matches, in number order from the lowest number there is; a gap in
the numbers is an error naming the first missing file (a frame is never skipped). The frames
show at ``--fps`` (24 when not given). Out: one image per frame (PNG, TIFF or JPEG, 16 bits per
channel where the format has them, ``--bit-depth``), numbered from ``--start-number`` (1), each
written to a temporary file and renamed.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Iterator, Optional

import numpy as np
import torch

from .. import images
from ..errors import InputError, UsageError
from .io import VideoInfo

DEFAULT_FPS = Fraction(24)
_PATTERN = re.compile(r"%(0?)(\d*)d")


def is_pattern(path: str | os.PathLike) -> bool:
    """A file name with one printf number field (``%d``, ``%04d``); ``%%`` is a literal %."""
    return len(_PATTERN.findall(Path(path).name.replace("%%", ""))) == 1


def frame_name(pattern: str | os.PathLike, number: int) -> Path:
    pattern = Path(pattern)
    field = _PATTERN.search(pattern.name.replace("%%", "\0"))
    name = pattern.name.replace("%%", "\0")
    name = name[:field.start()] + (field.group(0) % number) + name[field.end():]
    return pattern.with_name(name.replace("\0", "%"))


def plain_stem(pattern: str | os.PathLike) -> str:
    """The pattern's name without its number field or suffix: ``f_%04d.png`` -> ``f``."""
    stem = _PATTERN.sub("", Path(pattern).stem.replace("%%", "%")).strip("_-. ")
    return stem or "frames"


def _matcher(pattern: Path) -> re.Pattern:
    name = pattern.name.replace("%%", "\0")
    field = _PATTERN.search(name)
    zero, width = field.groups()
    digits = rf"\d{{{width},}}" if zero and width else r"\d+"
    before, after = (re.escape(part.replace("\0", "%")) for part in (name[:field.start()],
                                                                        name[field.end():]))
    return re.compile(f"{before}({digits}){after}$")


@dataclass(frozen=True)
class ImageSequence:
    pattern: Path
    files: tuple[Path, ...]
    first_number: int

    @classmethod
    def find(cls, pattern: str | os.PathLike) -> "ImageSequence":
        pattern = Path(pattern)
        folder = pattern.parent
        if not folder.is_dir():
            raise InputError(f"{pattern}: no folder {folder}")
        matcher = _matcher(pattern)
        numbered = {}
        for entry in os.listdir(folder):
            found = matcher.match(entry)
            if found and (folder / entry).is_file() and frame_name(pattern, int(found.group(1))).name == entry:
                numbered[int(found.group(1))] = folder / entry
        if not numbered:
            raise InputError(f"{pattern}: no file matches this pattern")
        first, last = min(numbered), max(numbered)
        for number in range(first, last + 1):
            if number not in numbered:
                raise InputError(f"{frame_name(pattern, number)} is missing from the sequence "
                                 f"{pattern.name} ({len(numbered)} frames numbered {first} to "
                                 f"{last}); no frame is skipped: add it or cut the sequence there")
        return cls(pattern, tuple(numbered[n] for n in range(first, last + 1)), first)

    def info(self, fps: Optional[Fraction]) -> VideoInfo:
        height, width = images.read_image(self.files[0]).shape[:2]
        return VideoInfo(width, height, Fraction(fps or DEFAULT_FPS), len(self.files), False)

    def digest(self) -> dict:
        """What the resume state compares: the names and sizes of the frames."""
        return {"pattern": self.pattern.name, "first": self.first_number, "frames": len(self.files),
                "bytes": sum(f.stat().st_size for f in self.files)}

    def frames(self) -> Iterator[np.ndarray]:
        """(H, W, 3) float32 RGB in [0, 1], in order; every frame the size of the first."""
        size = None
        for path in self.files:
            frame = images.read_image(path)
            if size is None:
                size = frame.shape
            elif frame.shape != size:
                raise InputError(f"{path} is {frame.shape[1]}x{frame.shape[0]}, the sequence's first "
                                 f"frame {size[1]}x{size[0]}; every frame must be the same size")
            yield frame


class SequenceWriter:
    """One image per frame, at the pattern's numbers from ``start_number``: the interface of
    ``io.VideoWriter``."""

    def __init__(self, pattern: str | os.PathLike, width: int, height: int, *,
                 start_number: int = 1, bit_depth: Optional[int] = None):
        self.pattern, self.width, self.height = Path(pattern), width, height
        self.start_number, self.bit_depth = start_number, bit_depth
        self.frames_written = 0

    def __enter__(self) -> "SequenceWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        pass

    def write(self, frame: np.ndarray | torch.Tensor) -> None:
        shape = tuple(frame.shape[-2:]) if isinstance(frame, torch.Tensor) else frame.shape[:2]
        if shape != (self.height, self.width):
            raise UsageError(f"frame of shape {tuple(frame.shape)} sent to a "
                             f"{self.width}x{self.height} sequence")
        self.pattern.parent.mkdir(parents=True, exist_ok=True)
        images.write_image(frame_name(self.pattern, self.start_number + self.frames_written),
                           frame, self.bit_depth)
        self.frames_written += 1


def check_output_pattern(pattern: Path, bit_depth: Optional[int]) -> None:
    """A writable image format and a bit depth it has, before any work (the folder is made with
    the first frame)."""
    fmt = images.output_format(pattern)
    images.check_bit_depth(fmt, bit_depth or images.default_bit_depth(pattern))
