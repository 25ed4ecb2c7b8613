"""Still-image I/O: decode anything OpenCV reads into [0,1] RGB tensors, write atomically.

Alpha is composited over white, grey becomes RGB, 8/16-bit and float inputs are scaled to [0,1],
and the EXIF orientation is applied (also for images with alpha, which OpenCV's own
orientation-aware read would drop).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Optional

import cv2
import numpy as np
import torch

from .errors import InputError, UsageError

WRITABLE = {".png": ".png", ".jpg": ".jpg", ".jpeg": ".jpg", ".tif": ".tiff", ".tiff": ".tiff",
            ".webp": ".webp", ".bmp": ".bmp"}
SIXTEEN_BIT = {".png", ".tiff"}
JPEG_QUALITY = 95


def _dihedral(image: np.ndarray) -> list[np.ndarray]:
    """The 8 rotations/flips an EXIF orientation can ask for."""
    out = []
    for flipped in (image, image[:, ::-1]):
        for turns in range(4):
            out.append(np.rot90(flipped, turns))
    return out


def _oriented_alpha(raw: np.ndarray, oriented_colour: np.ndarray) -> np.ndarray:
    """Apply to the alpha plane whatever orientation turned raw's colour into oriented_colour."""
    colour = raw[..., :3]
    alpha = raw[..., 3]
    for candidate_colour, candidate_alpha in zip(_dihedral(colour), _dihedral(alpha)):
        if candidate_colour.shape == oriented_colour.shape and np.array_equal(candidate_colour, oriented_colour):
            return np.ascontiguousarray(candidate_alpha)
    return alpha


def _unit_range(array: np.ndarray) -> np.ndarray:
    if array.dtype == np.uint8:
        return array.astype(np.float32) / 255.0
    if array.dtype == np.uint16:
        return array.astype(np.float32) / 65535.0
    if np.issubdtype(array.dtype, np.floating):
        return np.clip(np.nan_to_num(array.astype(np.float32)), 0.0, 1.0)
    info = np.iinfo(array.dtype)
    return (array.astype(np.float32) - info.min) / float(info.max - info.min)


def read_image(path: str | os.PathLike) -> np.ndarray:
    """(H, W, 3) float32 RGB in [0, 1]."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such file")
    data = np.fromfile(path, dtype=np.uint8)
    raw = cv2.imdecode(data, cv2.IMREAD_UNCHANGED) if data.size else None
    if raw is None:
        raise InputError(f"{path}: not an image OpenCV can decode (corrupt or unsupported format)")
    # IMREAD_COLOR applies EXIF orientation; ANYDEPTH keeps 16-bit precision.
    oriented = cv2.imdecode(data, cv2.IMREAD_COLOR | cv2.IMREAD_ANYDEPTH)
    if oriented is None or oriented.size == 0:
        raise InputError(f"{path}: not an image OpenCV can decode (corrupt or unsupported format)")
    rgb = _unit_range(cv2.cvtColor(oriented, cv2.COLOR_BGR2RGB))
    if raw.ndim == 3 and raw.shape[2] == 4:
        alpha = _unit_range(_oriented_alpha(raw, oriented))
        if alpha.shape != rgb.shape[:2]:
            alpha = np.ones(rgb.shape[:2], np.float32)
        rgb = rgb * alpha[..., None] + (1.0 - alpha[..., None])  # over white
    if min(rgb.shape[:2]) < 1:
        raise InputError(f"{path}: image has no pixels")
    return np.ascontiguousarray(rgb, dtype=np.float32)


def to_tensor(image: np.ndarray) -> torch.Tensor:
    """(H, W, 3) array -> (1, 3, H, W) tensor."""
    return torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1))).unsqueeze(0).float()


def to_array(image: torch.Tensor) -> np.ndarray:
    """(1, 3, H, W) tensor -> (H, W, 3) float32 array in [0, 1]."""
    return image.detach().float().clamp(0, 1)[0].permute(1, 2, 0).cpu().numpy()


def to_uint8(image: torch.Tensor | np.ndarray) -> np.ndarray:
    """(1, 3, H, W) tensor or (H, W, 3) array in [0, 1] -> (H, W, 3) uint8, rounded."""
    array = to_array(image) if isinstance(image, torch.Tensor) else image
    if array.dtype == np.uint8:
        return array
    return np.clip(np.rint(array * 255.0), 0, 255).astype(np.uint8)


def load(path: str | os.PathLike) -> torch.Tensor:
    return to_tensor(read_image(path))


def output_format(path: str | os.PathLike) -> str:
    suffix = Path(path).suffix.lower()
    if suffix not in WRITABLE:
        raise UsageError(f"cannot write {Path(path).name}: use one of "
                         f"{', '.join(sorted(WRITABLE))}")
    return WRITABLE[suffix]


def default_bit_depth(path: str | os.PathLike) -> int:
    return 16 if output_format(path) == ".tiff" else 8


def check_bit_depth(fmt: str, bit_depth: int) -> None:
    if bit_depth not in (8, 16):
        raise UsageError(f"--bit-depth must be 8 or 16, got {bit_depth}")
    if bit_depth == 16 and fmt not in SIXTEEN_BIT:
        raise UsageError(f"16-bit output needs PNG or TIFF, not {fmt}")


def encode(image: np.ndarray, fmt: str, bit_depth: int) -> bytes:
    check_bit_depth(fmt, bit_depth)
    scale, dtype = (65535.0, np.uint16) if bit_depth == 16 else (255.0, np.uint8)
    pixels = np.clip(np.rint(image * scale), 0, scale).astype(dtype)
    bgr = cv2.cvtColor(pixels, cv2.COLOR_RGB2BGR)
    params = [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY] if fmt == ".jpg" else []
    ok, buffer = cv2.imencode(fmt, bgr, params)
    if not ok:
        raise InputError(f"OpenCV could not encode a {fmt} image of {image.shape[1]}x{image.shape[0]}")
    return buffer.tobytes()


def _process_umask() -> int:
    mask = os.umask(0)  # the umask can only be read by setting it
    os.umask(mask)
    return mask


# Read once at import, before any worker thread writes files: setting it later, even briefly,
# would touch every thread's file creation.
UMASK = _process_umask()


def temp_beside(path: Path, suffix: str = ".part") -> Path:
    """An empty temporary file in the target's folder (same filesystem: the rename is atomic),
    with the permissions a plain open() would give."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=suffix, dir=path.parent)
    os.close(handle)
    os.chmod(temp, 0o666 & ~UMASK)
    return Path(temp)


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write beside the target, then rename: readers never see half a file."""
    path = Path(path)
    temp = temp_beside(path)
    try:
        temp.write_bytes(data)
        os.replace(temp, path)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise


def write_image(path: str | os.PathLike, image: torch.Tensor | np.ndarray,
                bit_depth: Optional[int] = None) -> None:
    array = to_array(image) if isinstance(image, torch.Tensor) else image
    fmt = output_format(path)
    atomic_write_bytes(path, encode(array, fmt, bit_depth or default_bit_depth(path)))
