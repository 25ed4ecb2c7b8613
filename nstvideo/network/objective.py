"""The weighted sum of loss terms that one unit (a scale, a frame) minimises.

Targets (content features, blended style Grams) are computed once when the objective is built and
reused at every iteration.
"""

from __future__ import annotations

import contextlib
from typing import Mapping, Optional, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .features import VGGFeatures
from .losses import (ContentLoss, StyleLoss, gram, masked_gram, region_share, style_loss,
                     temporal_loss, tv_loss)


def normalised(weights: Optional[Sequence[float]], count: int, what: str) -> list[float]:
    """Equal weights by default; given weights are scaled to sum to 1."""
    from ..errors import UsageError

    if weights is None:
        return [1.0 / count] * count
    if len(weights) != count:
        raise UsageError(f"{what} has {len(weights)} values but {count} are needed")
    total = float(sum(weights))
    return [w / total for w in weights]


def precision_context(precision: str, device: torch.device):
    if precision == "bf16":
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def to_network_layout(image: torch.Tensor) -> torch.Tensor:
    # channels_last is ~1.35x faster for VGG on CPU and what tensor cores want on GPU
    return image.contiguous(memory_format=torch.channels_last)


@torch.no_grad()
def extract(network: VGGFeatures, image: torch.Tensor, precision: str = "fp32") -> dict[str, torch.Tensor]:
    """Features of a target image (content or style), wherever the image was: on the network's
    device, in fp32."""
    device = next(network.parameters()).device
    with precision_context(precision, device):
        return {name: f.float() for name, f in network(to_network_layout(image.to(device))).items()}


@torch.no_grad()
def blended_grams(network: VGGFeatures, styles: Sequence[torch.Tensor], blend: Sequence[float],
                  layers: Sequence[str], precision: str = "fp32") -> dict[str, torch.Tensor]:
    """Target Gram per layer: the blend-weighted mean of each style image's Gram."""
    targets: dict[str, torch.Tensor] = {}
    for style, weight in zip(styles, blend):
        features = extract(network, style, precision)
        for name in layers:
            contribution = weight * gram(features[name])
            targets[name] = targets[name] + contribution if name in targets else contribution
    return targets


class StyleObjective(nn.Module):
    """content_weight·content + style_weight·style + tv_weight·tv (+ temporal_weight·temporal,
    + style_weight·local_weight·style of a region).

    ``forward`` returns the weighted terms and their ``total`` as 0-d tensors.
    """

    def __init__(self, network: VGGFeatures, *, content_layers: Sequence[str],
                 style_layers: Sequence[str], content: Optional[torch.Tensor],
                 styles: Sequence[torch.Tensor], style_blend: Optional[Sequence[float]] = None,
                 layer_weights: Optional[Sequence[float]] = None, content_weight: float = 1.0,
                 style_weight: float = 1.0, tv_weight: float = 0.0, precision: str = "fp32",
                 style_grams: Optional[Mapping[str, torch.Tensor]] = None):
        """``style_grams`` (from ``blended_grams``) replaces ``styles``: a video computes its
        style targets once and reuses them for every frame."""
        super().__init__()
        self.network = network
        self.precision = precision
        self.content_weight = content_weight if content is not None else 0.0
        self.style_weight = style_weight
        self.tv_weight = tv_weight
        self.style_layer_weights = normalised(layer_weights, len(style_layers), "--layer-weights")
        if style_grams is None:
            blend = normalised(style_blend, len(styles), "--style-weights")
            style_grams = blended_grams(network, styles, blend, style_layers, precision)
        grams = style_grams
        self.style_losses = nn.ModuleDict({name: StyleLoss(grams[name]) for name in style_layers})
        self.content_losses = nn.ModuleDict()
        if content is not None and self.content_weight > 0:
            features = extract(network, content, precision)
            self.content_losses.update({name: ContentLoss(features[name]) for name in content_layers})
        self.temporal_weight = 0.0
        self.register_buffer("warped", None)
        self.register_buffer("reliable", None)
        self.local_weight = 0.0
        self.register_buffer("region", None)
        self._region_at: dict[tuple[int, int], tuple[torch.Tensor, float]] = {}

    def set_temporal(self, warped: torch.Tensor, reliable: torch.Tensor, weight: float) -> None:
        """Add weight·mean(reliable·(x − warped)²): the warped previous frame, masked."""
        self.warped, self.reliable, self.temporal_weight = warped, reliable, weight

    def set_local_style(self, region: torch.Tensor, weight: float) -> None:
        """Add style_weight·weight·share·(the style loss of the Gram of ``region`` alone), region
        a (1, 1, H, W) map in [0, 1] and share its mean: a part of the canvas (what entered a
        video frame) gets style pressure of its own, which the global Gram, matched by the rest,
        no longer gives it. The share keeps that pressure per pixel at ``weight`` times the global
        term's whatever the region's size (see ``region_share``)."""
        self.region, self.local_weight = region, weight * region_share(region)
        self._region_at = {}

    def region_at(self, height: int, width: int) -> tuple[torch.Tensor, float]:
        """(√region, Σregion) at a layer's resolution (area-averaged), computed once per size."""
        if (height, width) not in self._region_at:
            scaled = F.adaptive_avg_pool2d(self.region.float(), (height, width))
            self._region_at[height, width] = (scaled.sqrt(), float(scaled.sum()))
        return self._region_at[height, width]

    def local_style(self, features: Mapping[str, torch.Tensor]) -> torch.Tensor:
        total = 0.0
        for (name, loss), weight in zip(self.style_losses.items(), self.style_layer_weights):
            roots, weight_sum = self.region_at(*features[name].shape[-2:])
            total = total + weight * style_loss(masked_gram(features[name], roots, weight_sum),
                                                loss.target, loss.target_energy)
        return total

    def forward(self, canvas: torch.Tensor) -> dict[str, torch.Tensor]:
        with precision_context(self.precision, canvas.device):
            features = self.network(to_network_layout(canvas))
        terms: dict[str, torch.Tensor] = {}
        if len(self.content_losses):
            content = sum(loss(features[name]) for name, loss in self.content_losses.items())
            terms["content"] = self.content_weight * content / len(self.content_losses)
        style = sum(w * self.style_losses[name](features[name])
                    for name, w in zip(self.style_losses, self.style_layer_weights))
        terms["style"] = self.style_weight * style
        if self.local_weight and self.region is not None:
            terms["style_local"] = self.style_weight * self.local_weight * self.local_style(features)
        if self.tv_weight:
            terms["tv"] = self.tv_weight * tv_loss(canvas)
        if self.temporal_weight and self.warped is not None:
            terms["temporal"] = self.temporal_weight * temporal_loss(canvas, self.warped, self.reliable)
        terms["total"] = sum(terms.values())
        return terms
