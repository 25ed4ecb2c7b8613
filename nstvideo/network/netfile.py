"""Trained style networks on disk: our ``.nstnet`` (a state dict plus a small JSON header) and
pytorch/examples ``fast_neural_style`` ``.pth`` state dicts. Both load with
``torch.load(weights_only=True)``: no pickled code runs.

A ``.nstnet`` is ``{"header": JSON text, "state": {name: tensor}}``; the header names the format
and architecture, the styles it was trained on and the settings; ``describe`` shows it.
"""

from __future__ import annotations

import io
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import torch

from ..errors import InputError, WeightsError
from .transformer import (FAST_NEURAL_STYLE_SCALE, RESIDUAL_BLOCKS, TransformerNet,
                          from_fast_neural_style, is_fast_neural_style, load_transformer)

FORMAT = "nstvideo-transformer"
FORMAT_VERSION = 1
SUFFIX = ".nstnet"


@dataclass(frozen=True)
class StyleNet:
    net: TransformerNet
    header: dict[str, Any]
    path: str

    def describe(self) -> str:
        styles = ", ".join(s.get("name", "?") for s in self.header.get("styles", [])) or "unknown styles"
        return f"{Path(self.path).name} ({self.header.get('origin', FORMAT)}; {styles})"


def architecture(net: TransformerNet) -> dict[str, Any]:
    return {"name": "johnson2016", "residual_blocks": RESIDUAL_BLOCKS, "norm": "instance",
            "pixel_scale": net.pixel_scale, "output": "tanh" if net.squash else "linear"}


def to_bytes(net: TransformerNet, header: Mapping[str, Any]) -> bytes:
    """The file's contents: write them with ``images.atomic_write_bytes``."""
    full = {"format": FORMAT, "version": FORMAT_VERSION, "architecture": architecture(net), **header}
    buffer = io.BytesIO()
    torch.save({"header": json.dumps(full, default=str),
                "state": {k: v.detach().cpu().clone() for k, v in net.state_dict().items()}}, buffer)
    return buffer.getvalue()


def load(path: str | os.PathLike) -> StyleNet:
    """A frozen network (CPU) from a ``.nstnet`` or a fast_neural_style ``.pth``; InputError when
    the file is missing, WeightsError when it is not one of those."""
    path = str(path)
    if not os.path.isfile(path):
        raise InputError(f"style network {path} not found (make one with 'nstvideo train')")
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # a truncated zip, a pickle with code in it, not a torch file
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise WeightsError(f"{path} is not a readable style network ({reason[:120]})") from None
    if isinstance(data, Mapping) and "header" in data and "state" in data:
        try:
            header = json.loads(data["header"])
        except (TypeError, ValueError):
            raise WeightsError(f"{path}: its header is not JSON; not an {SUFFIX} file") from None
        if header.get("format") != FORMAT or int(header.get("version", 0)) > FORMAT_VERSION:
            raise WeightsError(f"{path}: format {header.get('format')!r} version "
                               f"{header.get('version')}, expected {FORMAT} up to {FORMAT_VERSION}")
        arch = header.get("architecture", {})
        net = _load_state(data["state"], float(arch.get("pixel_scale", 1.0)), path,
                          squash=arch.get("output", "tanh") == "tanh")
        return StyleNet(net, header, path)
    if isinstance(data, Mapping) and is_fast_neural_style(data):
        net = _load_state(from_fast_neural_style(data), FAST_NEURAL_STYLE_SCALE, path, squash=False)
        header = {"format": FORMAT, "origin": "pytorch/examples fast_neural_style",
                  "architecture": architecture(net), "styles": [{"name": Path(path).stem}]}
        return StyleNet(net, header, path)
    raise WeightsError(f"{path} holds neither an {SUFFIX} network nor a pytorch/examples "
                       "fast_neural_style state dict")


def _load_state(state: Any, pixel_scale: float, path: str, *, squash: bool) -> TransformerNet:
    if not isinstance(state, Mapping):
        raise WeightsError(f"{path}: expected a state dict of tensors, found a {type(state).__name__}")
    try:
        return load_transformer(state, pixel_scale, squash)
    except WeightsError as exc:
        raise WeightsError(f"{path}: {exc}") from None
