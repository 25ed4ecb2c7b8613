"""Resume state shared by every job: what decides the pixels (a fingerprint), how two differ,
and the resume point of a still image.

A job's state is plain JSON next to lossless 16-bit images; a run whose fingerprint differs from
the saved one is refused rather than mixed.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Sequence

import torch

from . import images
from .config import StylizeConfig
from .errors import UsageError

STATE_VERSION = 1
# Settings that change no pixel: they may differ between an interrupted run and its resumption.
# --max-memory is as neutral as the device: a rerun after running out of memory may lower it.
NEUTRAL = {"output": None, "record": None, "model": {"device", "max_memory"},
           "video": {"work_dir", "keep_work"}}


def file_digest(path: str | os.PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def settings_fingerprint(config: StylizeConfig) -> dict[str, Any]:
    settings = config.to_dict()
    for section, fields in NEUTRAL.items():
        if fields is None:
            settings.pop(section, None)
        elif section in settings:
            for name in fields:
                settings[section].pop(name, None)
    return settings


def job_fingerprint(input_path: Optional[str], style_paths: Sequence[str], config: StylizeConfig,
                    **extra: Any) -> dict[str, Any]:
    """Everything that decides a job's pixels, as plain JSON."""
    record: dict[str, Any] = {"styles": [file_digest(p) for p in style_paths],
                              "settings": settings_fingerprint(config), **extra}
    if input_path is not None:
        record["input"] = {"name": Path(input_path).name, "bytes": os.stat(input_path).st_size}
    return json.loads(json.dumps(record, default=str))


def differences(old: Any, new: Any, prefix: str = "") -> list[str]:
    """Dotted names of the fields that differ between two fingerprints."""
    if isinstance(old, dict) and isinstance(new, dict):
        out = []
        for key in sorted(set(old) | set(new)):
            out += differences(old.get(key), new.get(key), f"{prefix}.{key}" if prefix else key)
        return out
    return [] if old == new else [prefix or "value"]


def read_state(path: Path, record: dict[str, Any], fields: Sequence[str], *, holds: str,
               start_over: str) -> dict[str, int]:
    """The integer ``fields`` of a job's state.json; refuses a file that is not one, and the state
    of any job whose fingerprint differs from ``record`` (its files are never mixed in)."""
    try:
        state = json.loads(path.read_text())
        old, values = state["job"], {name: int(state[name]) for name in fields}
    except (ValueError, KeyError, TypeError):
        raise UsageError(f"{path} is not a resume state of nstvideo; {start_over} to start "
                         "over") from None
    changed = differences(old, record)
    if changed:
        raise UsageError(f"{path.parent} holds {holds} of a different job "
                         f"({', '.join(changed[:4])} changed); refusing to mix them: rerun the "
                         f"original command to resume, or {start_over} to start over")
    return values


def write_state(path: Path, record: dict[str, Any], **fields: int) -> None:
    """state.json, atomically: written after the files it names."""
    state = {"version": STATE_VERSION, "job": record, **fields}
    images.atomic_write_bytes(path, (json.dumps(state, indent=1) + "\n").encode())


@dataclass(frozen=True)
class ResumePoint:
    """Where an interrupted still image stopped: a scale, iterations done in it, its canvas."""

    scale_index: int
    iterations_done: int
    canvas: torch.Tensor  # (1, 3, H, W) in [0, 1], on the CPU


class StillState:
    """OUTPUT.resume/: state.json and canvas.png (16 bits) of an interrupted still image."""

    def __init__(self, output: Path):
        self.path = output.with_name(output.name + ".resume")
        self.state_path = self.path / "state.json"
        self.canvas_path = self.path / "canvas.png"

    def load(self, record: dict[str, Any]) -> Optional[ResumePoint]:
        if not self.state_path.is_file():
            return None
        state = read_state(self.state_path, record, ("scale_index", "iterations_done"),
                           holds="an interrupted run", start_over=f"remove {self.path}")
        return ResumePoint(state["scale_index"], state["iterations_done"],
                           images.load(self.canvas_path))

    def save(self, record: dict[str, Any], point: ResumePoint) -> None:
        """Canvas first, state second: the state never names a canvas that is not on disk."""
        self.path.mkdir(parents=True, exist_ok=True)
        images.write_image(self.canvas_path, point.canvas, 16)
        write_state(self.state_path, record, scale_index=point.scale_index,
                    iterations_done=point.iterations_done)

    def remove(self) -> None:
        """Delete only what this job wrote."""
        for item in (self.state_path, self.canvas_path):
            item.unlink(missing_ok=True)
        try:
            self.path.rmdir()
        except OSError:
            pass
