"""Where VGG weights come from (DESIGN.md section 4).

Order: ``--weights PATH`` (or ``random``), ``$NSTVIDEO_WEIGHTS``, the torch hub cache, then a
download through torchvision. Files are loaded with ``weights_only=True``: a weights file is data.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Optional

import torch

from ..errors import WeightsError

RANDOM = "random"
ENV_VAR = "NSTVIDEO_WEIGHTS"


@dataclass(frozen=True)
class WeightsSource:
    kind: str  # "file", "env", "hub-cache", "download" or "random"
    path: Optional[str]

    @property
    def is_random(self) -> bool:
        return self.kind == RANDOM

    def describe(self) -> str:
        if self.is_random:
            return "random (seeded He init: texture-only results, no semantic content)"
        return f"{self.path} ({self.kind})"


def torchvision_weights(arch: str):
    from torchvision.models import VGG16_Weights, VGG19_Weights

    return {"vgg19": VGG19_Weights, "vgg16": VGG16_Weights}[arch].IMAGENET1K_V1


def hub_cache_path(arch: str) -> Path:
    url = torchvision_weights(arch).url
    return Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(url)


def locate(spec: Optional[str], arch: str) -> Optional[WeightsSource]:
    """Find the weights without loading or downloading anything; None when only a download is left."""
    if spec is not None and spec.lower() == RANDOM:
        return WeightsSource(RANDOM, None)
    if spec is not None:
        path = Path(spec).expanduser()
        if not path.is_file():
            raise WeightsError(f"weights file {spec} does not exist; pass a torchvision "
                               f"{arch} state dict, or --weights random")
        return WeightsSource("file", str(path))
    env = os.environ.get(ENV_VAR)
    if env:
        if not Path(env).is_file():
            raise WeightsError(f"${ENV_VAR} names {env}, which does not exist")
        return WeightsSource("env", env)
    cached = hub_cache_path(arch)
    if cached.is_file():
        return WeightsSource("hub-cache", str(cached))
    return None


def load_state_dict(path: str) -> Mapping[str, torch.Tensor]:
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # untrusted bytes: any failure to parse means "not a state dict"
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise WeightsError(f"{path} is not a PyTorch state dict ({first_line[:120]})") from None
    if isinstance(state, Mapping) and "state_dict" in state and isinstance(state["state_dict"], Mapping):
        state = state["state_dict"]
    if not isinstance(state, Mapping) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise WeightsError(f"{path} holds no state dict of tensors; expected a torchvision VGG "
                           "state dict such as vgg19-dcbb9e9d.pth")
    return state


def download(arch: str) -> tuple[Mapping[str, torch.Tensor], WeightsSource]:
    weights = torchvision_weights(arch)
    target = hub_cache_path(arch)
    try:
        state = weights.get_state_dict(progress=sys.stderr.isatty(), check_hash=True)
    except Exception as exc:  # offline, proxy, partial file: all end in the same advice
        raise WeightsError(
            f"no {arch} weights here and the download failed ({type(exc).__name__}); place "
            f"{target.name} (torchvision {arch.upper()}_Weights.IMAGENET1K_V1, {weights.url}) in "
            f"{target.parent}/ or pass --weights PATH; --weights random runs without them"
        ) from None
    return state, WeightsSource("download", str(target))


def resolve(spec: Optional[str], arch: str) -> tuple[Optional[Mapping[str, torch.Tensor]], WeightsSource]:
    """Return (state dict or None for random init, where it came from)."""
    source = locate(spec, arch)
    if source is None:
        return download(arch)
    if source.is_random:
        return None, source
    return load_state_dict(source.path), source
