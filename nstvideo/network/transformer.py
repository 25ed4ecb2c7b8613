"""The feed-forward style network (Johnson et al. 2016, with Ulyanov et al.'s instance norm): one
pass paints an image in the style it was trained for. Tensors in, tensors out.

    reflection pad + 9x9 conv (32) ─ two stride-2 3x3 convs (64, 128) ─ 5 residual blocks (128)
    ─ two nearest-upsample x2 + 3x3 convs (64, 32) ─ reflection pad + 9x9 conv (3)

Every convolution but the last is followed by an affine instance norm and a ReLU (a residual
block: conv, norm, ReLU, conv, norm, plus its input). The network takes and returns [0, 1] RGB;
``pixel_scale`` is the range its weights were trained on (1 for ours, 255 for pytorch/examples'
``fast_neural_style`` models): the input is multiplied by it and the output divided by it. Ours
end in Johnson et al.'s scaled tanh, (1 + tanh)/2, so training sees [0, 1] pixels from step 0 (an
unbounded output made the style loss, quartic in the pixel scale, jump by 100x between steps);
pytorch/examples' end linear (``squash=False``) and their output is clamped.
Inputs of any size work: sides are reflection-padded to a multiple of 4 (the two strides) and the
output is cropped back, so the output has the input's size.
"""

from __future__ import annotations

import re
from typing import Mapping

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import WeightsError

RESIDUAL_BLOCKS = 5
DOWN_CHANNELS = (32, 64, 128)
TOTAL_STRIDE = 4


class ConvNorm(nn.Module):
    """Reflection padding, a convolution, then (unless ``norm=False``) instance norm and ReLU.
    ``upsample`` doubles the size first (nearest), instead of a transposed convolution's
    checkerboard."""

    def __init__(self, in_channels: int, out_channels: int, kernel: int, stride: int = 1, *,
                 upsample: bool = False, norm: bool = True, relu: bool = True):
        super().__init__()
        self.kernel, self.stride, self.upsample, self.relu = kernel, stride, upsample, relu and norm
        self.conv = nn.Conv2d(in_channels, out_channels, kernel, stride)
        self.norm = nn.InstanceNorm2d(out_channels, affine=True) if norm else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.upsample:
            x = F.interpolate(x, scale_factor=2, mode="nearest")
        pad = self.kernel // 2
        x = self.conv(F.pad(x, (pad, pad, pad, pad), mode="reflect"))
        if self.norm is not None:
            x = self.norm(x)
        return F.relu(x) if self.relu else x


class Residual(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.first = ConvNorm(channels, channels, 3)
        self.second = ConvNorm(channels, channels, 3, relu=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.second(self.first(x))


class TransformerNet(nn.Module):
    """[0, 1] RGB (B, 3, H, W) -> RGB of the same size, in [0, 1] with ``squash`` (else clamp it
    to show it)."""

    def __init__(self, pixel_scale: float = 1.0, squash: bool = True):
        super().__init__()
        c1, c2, c3 = DOWN_CHANNELS
        self.pixel_scale, self.squash = float(pixel_scale), squash
        self.down = nn.ModuleList([ConvNorm(3, c1, 9), ConvNorm(c1, c2, 3, 2), ConvNorm(c2, c3, 3, 2)])
        self.residual = nn.ModuleList([Residual(c3) for _ in range(RESIDUAL_BLOCKS)])
        self.up = nn.ModuleList([ConvNorm(c3, c2, 3, upsample=True), ConvNorm(c2, c1, 3, upsample=True)])
        self.out = ConvNorm(c1, 3, 9, norm=False)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        height, width = image.shape[-2:]
        bottom, right = -height % TOTAL_STRIDE, -width % TOTAL_STRIDE
        x = image * self.pixel_scale
        if bottom or right:
            x = F.pad(x, (0, right, 0, bottom), mode="reflect")
        for layer in (*self.down, *self.residual, *self.up, self.out):
            x = layer(x)
        x = x[..., :height, :width] / self.pixel_scale
        return (1 + torch.tanh(x)) / 2 if self.squash else x


def _their_name_to_ours() -> dict[str, str]:
    """pytorch/examples fast_neural_style module names -> ours."""
    names = {"conv1.conv2d": "down.0.conv", "in1": "down.0.norm",
             "conv2.conv2d": "down.1.conv", "in2": "down.1.norm",
             "conv3.conv2d": "down.2.conv", "in3": "down.2.norm",
             "deconv1.conv2d": "up.0.conv", "in4": "up.0.norm",
             "deconv2.conv2d": "up.1.conv", "in5": "up.1.norm",
             "deconv3.conv2d": "out.conv"}
    for block in range(RESIDUAL_BLOCKS):
        for theirs, ours in (("conv1.conv2d", "first.conv"), ("in1", "first.norm"),
                             ("conv2.conv2d", "second.conv"), ("in2", "second.norm")):
            names[f"res{block + 1}.{theirs}"] = f"residual.{block}.{ours}"
    return names


THEIR_NAMES = _their_name_to_ours()
# old PyTorch InstanceNorm2d kept running statistics it never used in eval with affine=True models
_RUNNING_STATS = re.compile(r"\.(running_mean|running_var|num_batches_tracked)$")
FAST_NEURAL_STYLE_SCALE = 255.0  # their network reads and writes 0..255 pixels


def is_fast_neural_style(state: Mapping[str, object]) -> bool:
    return "conv1.conv2d.weight" in state


def from_fast_neural_style(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Their state dict renamed to ours, without the running statistics of old InstanceNorm."""
    renamed = {}
    for key, tensor in state.items():
        if _RUNNING_STATS.search(key):
            continue
        module, _, part = key.rpartition(".")
        if module not in THEIR_NAMES:
            raise WeightsError(f"unexpected tensor {key!r}: not a pytorch/examples "
                               "fast_neural_style TransformerNet state dict")
        renamed[f"{THEIR_NAMES[module]}.{part}"] = tensor
    return renamed


def load_transformer(state: Mapping[str, torch.Tensor], pixel_scale: float,
                     squash: bool) -> TransformerNet:
    """A frozen network from our state dict; every tensor present with its shape, or WeightsError."""
    net = TransformerNet(pixel_scale, squash)
    expected = net.state_dict()
    missing = sorted(set(expected) - set(state))
    extra = sorted(set(state) - set(expected))
    if missing or extra:
        what = f"missing {missing[0]!r}" if missing else f"unexpected {extra[0]!r}"
        raise WeightsError(f"not a transformer network state dict ({what}, "
                           f"{len(missing)} missing, {len(extra)} unexpected)")
    for key, tensor in state.items():
        if not isinstance(tensor, torch.Tensor) or tensor.shape != expected[key].shape:
            shape = tuple(tensor.shape) if isinstance(tensor, torch.Tensor) else type(tensor).__name__
            raise WeightsError(f"tensor {key!r} is {shape}, expected {tuple(expected[key].shape)}")
    net.load_state_dict({key: tensor.float() for key, tensor in state.items()})
    net.eval()
    net.requires_grad_(False)
    return net


def new_transformer(seed: int) -> TransformerNet:
    """A freshly initialised network, the same for the same seed (the global RNG is untouched)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return TransformerNet()
