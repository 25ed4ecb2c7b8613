"""VGG19/VGG16 feature extractors with semantically named layers.

Layer names follow the Gatys paper: ``conv4_2`` is the convolution's output, ``relu4_2`` the same
after its ReLU, ``pool4`` the pooling after block 4. Keras names are accepted: ``block4_conv2``
already includes the ReLU there, so it means ``relu4_2``; ``block4_pool`` means ``pool4``.

The module keeps torchvision's ``features.N`` indexing, so a torchvision state dict loads as is.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass
from typing import Iterable, Mapping, Optional, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import LayerError, WeightsError

CONVS_PER_BLOCK = {"vgg19": (2, 2, 4, 4, 4), "vgg16": (2, 2, 3, 3, 3)}
BLOCK_CHANNELS = (64, 128, 256, 512, 512)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
RANDOM_WEIGHTS_SEED = 0  # the network is the same whatever --seed says; --seed varies the canvas

_KERAS = re.compile(r"^block(\d)_(conv(\d)|pool)$")


@dataclass(frozen=True)
class LayerInfo:
    name: str
    kind: str  # "conv", "relu" or "pool"
    in_channels: int
    out_channels: int
    stride: int  # total stride of the network at this layer's output
    receptive_field: int  # in input pixels


def layer_table(arch: str) -> list[LayerInfo]:
    """Every layer of the network's feature stack, in order, with its geometry."""
    table: list[LayerInfo] = []
    channels, stride, field = 3, 1, 1
    for block, (n_convs, width) in enumerate(zip(CONVS_PER_BLOCK[arch], BLOCK_CHANNELS), start=1):
        for conv in range(1, n_convs + 1):
            field += 2 * stride  # a 3x3 convolution widens the field by one step each side
            table.append(LayerInfo(f"conv{block}_{conv}", "conv", channels, width, stride, field))
            table.append(LayerInfo(f"relu{block}_{conv}", "relu", width, width, stride, field))
            channels = width
        field += stride
        stride *= 2
        table.append(LayerInfo(f"pool{block}", "pool", width, width, stride, field))
    return table


def canonical_layer(name: str, arch: str) -> str:
    """Map any accepted spelling to our name, or raise LayerError with a suggestion."""
    known = [info.name for info in layer_table(arch)]
    text = name.strip().lower()
    keras = _KERAS.match(text)
    if keras:
        block, conv = keras.group(1), keras.group(3)
        text = f"relu{block}_{conv}" if conv else f"pool{block}"
    if text in known:
        return text
    close = difflib.get_close_matches(text, known, n=1)
    hint = f"; did you mean {close[0]}?" if close else f"; {arch} has {known[0]} .. {known[-1]}"
    raise LayerError(f"unknown layer {name!r} for {arch}{hint}")


def canonical_layers(names: Iterable[str], arch: str) -> tuple[str, ...]:
    return tuple(canonical_layer(n, arch) for n in names)


def deepest(layers: Iterable[str], arch: str) -> LayerInfo:
    table = layer_table(arch)
    position = {info.name: i for i, info in enumerate(table)}
    return table[max(position[name] for name in layers)]


class VGGFeatures(nn.Module):
    """Frozen VGG truncated after the deepest requested layer; takes [0,1] RGB.

    ImageNet normalisation happens inside, so callers never see it.
    """

    def __init__(self, arch: str, layers: Sequence[str], pooling: str = "max",
                 state_dict: Optional[Mapping[str, torch.Tensor]] = None):
        super().__init__()
        if arch not in CONVS_PER_BLOCK:
            raise LayerError(f"unknown model {arch!r}; expected one of {sorted(CONVS_PER_BLOCK)}")
        self.arch = arch
        self.layers = canonical_layers(layers, arch)
        table = layer_table(arch)
        last = table.index(deepest(self.layers, arch))
        self.table = table[: last + 1]
        modules: list[nn.Module] = []
        for info in self.table:
            if info.kind == "conv":
                modules.append(nn.Conv2d(info.in_channels, info.out_channels, 3, padding=1))
            elif info.kind == "relu":
                modules.append(nn.ReLU(inplace=False))  # a conv output may itself be requested
            else:
                pool = nn.MaxPool2d if pooling == "max" else nn.AvgPool2d
                modules.append(pool(kernel_size=2, stride=2))
        self.body = nn.Sequential(*modules)
        # ReLUs that may overwrite their convolution's output: all but those after a requested
        # convolution (a convolution's backward does not need its output: a pass over memory less)
        self.inplace_relus = frozenset(after.name for before, after in zip(self.table, self.table[1:])
                                       if after.kind == "relu" and before.name not in self.layers)
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1))
        if state_dict is None:
            self.init_random(RANDOM_WEIGHTS_SEED)
        else:
            self.load_vgg_state(state_dict)
        self.eval()
        self.requires_grad_(False)

    @property
    def stride(self) -> int:
        """Total stride at the deepest layer: block origins must be multiples of it."""
        return deepest(self.layers, self.arch).stride

    @property
    def receptive_field(self) -> int:
        return deepest(self.layers, self.arch).receptive_field

    def init_random(self, seed: int) -> None:
        """Variance-preserving (He) init, so every layer down to relu5_1 carries signal."""
        generator = torch.Generator().manual_seed(seed)
        for module in self.body:
            if isinstance(module, nn.Conv2d):
                fan_in = module.in_channels * 9
                with torch.no_grad():
                    module.weight.copy_(torch.randn(module.weight.shape, generator=generator)
                                        * (2.0 / fan_in) ** 0.5)
                    module.bias.zero_()

    def load_vgg_state(self, state_dict: Mapping[str, torch.Tensor]) -> None:
        """Load a torchvision VGG state dict (whole model or its ``features`` alone)."""
        if not isinstance(state_dict, Mapping):
            raise WeightsError(f"weights file holds a {type(state_dict).__name__}, "
                               "expected a state dict of tensors")
        prefix = "features." if any(k.startswith("features.") for k in state_dict) else ""
        wanted = {}
        for index, module in enumerate(self.body):
            if not isinstance(module, nn.Conv2d):
                continue
            for part in ("weight", "bias"):
                key = f"{prefix}{index}.{part}"
                tensor = state_dict.get(key)
                expected = getattr(module, part).shape
                if not isinstance(tensor, torch.Tensor):
                    raise WeightsError(f"weights have no tensor {key!r}: not a torchvision "
                                       f"{self.arch} state dict (is --model right?)")
                if tensor.shape != expected:
                    raise WeightsError(f"weights tensor {key!r} has shape {tuple(tensor.shape)}, "
                                       f"expected {tuple(expected)}: not a torchvision {self.arch}")
                wanted[f"body.{index}.{part}"] = tensor.float()
        self.load_state_dict(wanted, strict=False)

    def forward(self, image: torch.Tensor) -> dict[str, torch.Tensor]:
        x = (image - self.mean) / self.std
        dtype = compute_dtype(x)
        out: dict[str, torch.Tensor] = {}
        for info, module in zip(self.table, self.body):
            if isinstance(module, nn.Conv2d):
                weight, bias = cast_parameters(module, dtype)
                x = F.conv2d(x.to(dtype), weight, bias, padding=1)
            elif isinstance(module, nn.ReLU):
                x = F.relu(x, inplace=info.name in self.inplace_relus)
            else:
                x = module(x)
            if info.name in self.layers:
                out[info.name] = x
        return out


def compute_dtype(x: torch.Tensor) -> torch.dtype:
    """The dtype convolutions run in: autocast's when it is on for this device, else x's."""
    device = x.device.type
    if torch.amp.is_autocast_available(device) and torch.is_autocast_enabled(device):
        return torch.get_autocast_dtype(device)
    return x.dtype


def cast_parameters(conv: nn.Conv2d, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """The frozen weight and bias in ``dtype`` and the weight's memory format, cast once.

    Autocast keeps its casts of a weight only while the weight requires grad; ours are frozen, so
    it would cast all of VGG's weights again on every forward pass (~3% of a bf16 iteration on
    the CPU). The copy is rebuilt when the weight is replaced or changed in place.
    """
    weight, bias = conv.weight, conv.bias
    if weight.dtype == dtype:
        return weight, bias
    key = (dtype, weight.device, weight.data_ptr(), weight._version, bias._version,
           weight.is_contiguous(memory_format=torch.channels_last))
    cached = conv.__dict__.get("_cast")
    if cached is None or cached[0] != key:
        fmt = torch.channels_last if key[-1] else torch.contiguous_format
        cached = (key, weight.to(dtype, memory_format=fmt), bias.to(dtype))
        conv.__dict__["_cast"] = cached
    return cached[1], cached[2]
