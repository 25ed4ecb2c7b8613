"""The global loss and its exact gradient, computed block by block (after SPST, Galerne et al. 2024).

Device memory is set by the block, not the canvas: one block's activations at a time.

Pass 1 (no gradient) runs every block and sums the inner regions' F Fᵀ into each layer's global
Gram matrix. The style loss, a function of the global Grams alone, gives dL/dG. Pass 2 runs every
block again with gradient and back-propagates the surrogate Σ_l ⟨dL/dG_l, F Fᵀ/(C·N_l)⟩ over its
inner features (its gradient is exactly the style gradient of those features), plus the block's
share of the local terms (content, TV, temporal), each normalised by the whole canvas's counts.
The per-block input gradients, added into the canvas gradient, equal the untiled gradient.
"""

from __future__ import annotations

from typing import Callable, Mapping, Optional, Sequence

import torch
import torch.nn.functional as F

from ..errors import UsageError
from ..network.features import VGGFeatures
from ..network.losses import energy, gram_matrix, region_share
from ..network.objective import blended_grams, normalised, precision_context, to_network_layout
from .tiling import Block, grid_of, margin_for, min_tile_size, plan_blocks

BlockCallback = Callable[[int, int], None]  # (blocks done in this evaluation, blocks per evaluation)
SHRINK = 0.75  # an out-of-memory block is retried at this fraction of its size


def _flat(features: torch.Tensor) -> torch.Tensor:
    """(1, C, h, w) -> (C, h·w), in the features' dtype: ``gram_matrix`` multiplies bf16 in bf16
    and returns fp32, as the untiled path does."""
    channels = features.shape[1]
    return features.reshape(channels, -1)


@torch.no_grad()
def grams_by_blocks(network: VGGFeatures, image: torch.Tensor, layers: Sequence[str],
                    blocks: Sequence[Block], precision: str = "fp32",
                    on_block: Optional[Callable[[int], None]] = None,
                    region: Optional[Mapping[str, tuple[torch.Tensor, float]]] = None):
    """Each layer's Gram matrix of the whole image, F Fᵀ/(C·N) summed over the blocks' inner parts.

    With ``region`` ({layer: (√weights over the whole feature map, Σweights)}), also the Gram of
    the weighted positions alone (``losses.masked_gram``), from the same pass: returns both."""
    device = next(network.parameters()).device
    strides = {info.name: info.stride for info in network.table}
    height, width = image.shape[-2:]
    sums: dict[str, torch.Tensor] = {}
    region_sums: dict[str, torch.Tensor] = {}
    for index, block in enumerate(blocks):
        crop = to_network_layout(image[(..., *block.outer.slices())].to(device))
        with precision_context(precision, device):
            features = network(crop)
        for layer in layers:
            rows, cols = block.feature_slices(strides[layer])
            inner = features[layer][..., rows, cols]
            product = gram_matrix(_flat(inner), 1.0)
            sums[layer] = sums[layer] + product if layer in sums else product
            if region is not None:
                roots = region[layer][0][(..., *block.feature_box(strides[layer]).slices())]
                weighted = gram_matrix(_flat(inner * roots.to(inner.device, inner.dtype)), 1.0)
                region_sums[layer] = region_sums[layer] + weighted if layer in region_sums else weighted
        if on_block is not None:
            on_block(index + 1)
    grams = {layer: (total / (total.shape[0] * (height // strides[layer]) * (width // strides[layer]))).unsqueeze(0)
             for layer, total in sums.items()}
    if region is None:
        return grams
    return grams, {layer: (total / (total.shape[0] * max(region[layer][1], 1e-12))).unsqueeze(0)
                   for layer, total in region_sums.items()}


class BlockwiseObjective:
    """Same terms and weights as ``StyleObjective``, evaluated block by block.

    ``evaluate(canvas)`` returns the weighted terms and leaves the exact gradient in canvas.grad,
    so it plugs into ``engine.optimize`` as it is. The canvas may live in host memory while the
    blocks run on ``network``'s device. The content image goes to the device a block at a time;
    its targets are kept on ``targets_device`` (default: where the content is).
    """

    def __init__(self, network: VGGFeatures, *, tile_size: int, content_layers: Sequence[str],
                 style_layers: Sequence[str], content: Optional[torch.Tensor],
                 styles: Sequence[torch.Tensor], style_blend: Optional[Sequence[float]] = None,
                 layer_weights: Optional[Sequence[float]] = None, content_weight: float = 1.0,
                 style_weight: float = 1.0, tv_weight: float = 0.0, precision: str = "fp32",
                 height: Optional[int] = None, width: Optional[int] = None,
                 style_grams: Optional[dict[str, torch.Tensor]] = None,
                 on_block: Optional[BlockCallback] = None,
                 targets_device: Optional[torch.device] = None):
        self.network = network
        self.device = next(network.parameters()).device
        self.precision = precision
        self.content_layers = list(content_layers) if content is not None and content_weight > 0 else []
        self.style_layers = list(style_layers)
        self.content_weight, self.style_weight, self.tv_weight = content_weight, style_weight, tv_weight
        self.layer_weights = normalised(layer_weights, len(style_layers), "--layer-weights")
        self.height, self.width = (content.shape[-2:] if content is not None else (height, width))
        self.strides = {info.name: info.stride for info in network.table}
        self.margin = margin_for(network.arch, list(network.layers))
        self.stride = network.stride
        self.on_block = on_block
        self.replan(tile_size)
        blend = normalised(style_blend, len(styles), "--style-weights") if styles else []
        self.style_targets = dict(style_grams or {})  # precomputed: a video computes them once
        for style, weight in zip(styles, blend):
            if max(style.shape[-2:]) > tile_size:  # a style bigger than a block goes by blocks too
                blocks = plan_blocks(style.shape[-2], style.shape[-1], tile_size, self.margin, self.stride)
                grams = grams_by_blocks(network, style, style_layers, blocks, precision)  # no region
            else:
                grams = blended_grams(network, [style.to(self.device)], [1.0], style_layers, precision)
            for layer in style_layers:
                contribution = weight * grams[layer]
                self.style_targets[layer] = self.style_targets.get(layer, 0.0) + contribution
        self.style_energy = {name: energy(g) for name, g in self.style_targets.items()}
        self.content_targets: dict[str, torch.Tensor] = {}
        if self.content_layers:
            self.content_targets = self._features_of(content, targets_device or content.device)
        self.content_energy = {name: energy(t) for name, t in self.content_targets.items()}
        self.warped: Optional[torch.Tensor] = None
        self.reliable: Optional[torch.Tensor] = None
        self.temporal_weight = 0.0
        self.local_weight = 0.0
        self.region: Optional[dict[str, tuple[torch.Tensor, float]]] = None

    # -- geometry -------------------------------------------------------------------------------
    def replan(self, tile_size: int) -> None:
        self.tile_size = tile_size
        self.blocks: list[Block] = plan_blocks(self.height, self.width, tile_size, self.margin, self.stride)
        self._staged: dict[tuple[int, str], torch.Tensor] = {}

    @property
    def grid(self) -> tuple[int, int]:
        return grid_of(self.blocks)

    def _content_target(self, index: int, block: Block, layer: str) -> torch.Tensor:
        """Block ``index``'s inner content target, on the device.

        The whole targets stay where the content was (the host, for a poster). A plain copy of a
        slice from there would wait for the GPU at every block of every iteration, so each
        block's slice is staged once in pinned memory and then copied without waiting."""
        target = self.content_targets[layer]
        part = target[(..., *block.feature_box(self.strides[layer]).slices())]
        if target.device == self.device:
            return part
        staged = self._staged.get((index, layer))
        if staged is None:
            staged = part.contiguous()
            if self.device.type == "cuda":
                staged = staged.pin_memory()
            self._staged[(index, layer)] = staged
        return staged.to(self.device, non_blocking=True)

    def positions(self, layer: str) -> int:
        stride = self.strides[layer]
        return (self.height // stride) * (self.width // stride)

    def set_temporal(self, warped: torch.Tensor, reliable: torch.Tensor, weight: float) -> None:
        self.warped, self.reliable, self.temporal_weight = warped, reliable, weight

    def set_local_style(self, region: torch.Tensor, weight: float) -> None:
        """As ``StyleObjective.set_local_style``: the region's own Gram, accumulated over the
        blocks in pass 1 beside the global one, its gradient in pass 2."""
        self.local_weight = weight * region_share(region)
        self.region = {}
        for layer in self.style_layers:
            stride = self.strides[layer]
            scaled = F.adaptive_avg_pool2d(region.float(), (self.height // stride, self.width // stride))
            self.region[layer] = (scaled.sqrt(), float(scaled.sum()))

    # -- passes ---------------------------------------------------------------------------------
    def _forward(self, crop: torch.Tensor) -> dict[str, torch.Tensor]:
        with precision_context(self.precision, self.device):
            return self.network(to_network_layout(crop))

    def _inner(self, features: dict[str, torch.Tensor], block: Block, layer: str) -> torch.Tensor:
        rows, cols = block.feature_slices(self.strides[layer])
        return features[layer][..., rows, cols]

    @torch.no_grad()
    def _features_of(self, image: torch.Tensor, where: torch.device) -> dict[str, torch.Tensor]:
        """Content features of the whole image, assembled from blocks, kept on ``where``."""
        out: dict[str, torch.Tensor] = {}
        for block in self.blocks:
            crop = image[(..., *block.outer.slices())].to(self.device)
            features = self._forward(crop)
            for layer in self.content_layers:
                inner = self._inner(features, block, layer).float()
                if layer not in out:
                    stride = self.strides[layer]
                    out[layer] = torch.zeros((1, inner.shape[1], self.height // stride, self.width // stride),
                                             device=where)
                box = block.feature_box(self.strides[layer])
                out[layer][..., box.y0:box.y0 + inner.shape[-2], box.x0:box.x0 + inner.shape[-1]] = inner.to(where)
        return out

    @torch.no_grad()
    def global_grams(self, canvas: torch.Tensor) -> dict[str, torch.Tensor]:
        return grams_by_blocks(self.network, canvas, self.style_layers, self.blocks,
                               self.precision, on_block=self._report)

    def _report(self, done: int) -> None:
        if self.on_block is not None:
            self.on_block(done, 2 * len(self.blocks))

    def _style_loss(self, grams: dict[str, torch.Tensor], scale: float = 1.0) -> torch.Tensor:
        style = torch.zeros((), device=self.device)
        for layer, weight in zip(self.style_layers, self.layer_weights):
            diff = grams[layer][0] - self.style_targets[layer][0]
            style = style + scale * self.style_weight * weight * diff.pow(2).mean() / self.style_energy[layer]
        return style

    def _style_upstream(self, grams: dict[str, torch.Tensor], scale: float = 1.0) -> dict[str, torch.Tensor]:
        """dL/dG_l of the weighted style term, a constant for pass 2."""
        upstream = {}
        for layer, weight in zip(self.style_layers, self.layer_weights):
            diff = grams[layer][0] - self.style_targets[layer][0]
            upstream[layer] = scale * self.style_weight * weight / self.style_energy[layer] * 2 * diff / diff.numel()
        return upstream

    def _local_terms(self, crop: torch.Tensor, block: Block) -> dict[str, torch.Tensor]:
        """This block's share of TV and temporal terms (inner pixels, whole-canvas normalisation)."""
        terms: dict[str, torch.Tensor] = {}
        inner, outer = block.inner, block.outer
        ry0, rx0 = inner.y0 - outer.y0, inner.x0 - outer.x0
        ry1, rx1 = ry0 + inner.height, rx0 + inner.width
        if self.tv_weight:
            last_row = min(inner.y1, self.height - 1) - outer.y0  # pairs (y, y+1) inside the image
            last_col = min(inner.x1, self.width - 1) - outer.x0
            down = crop[..., ry0 + 1:last_row + 1, rx0:rx1] - crop[..., ry0:last_row, rx0:rx1]
            right = crop[..., ry0:ry1, rx0 + 1:last_col + 1] - crop[..., ry0:ry1, rx0:last_col]
            down_count = 3 * (self.height - 1) * self.width
            right_count = 3 * self.height * (self.width - 1)
            terms["tv"] = self.tv_weight * (down.pow(2).sum() / down_count + right.pow(2).sum() / right_count)
        if self.temporal_weight and self.warped is not None:
            rows, cols = inner.slices()
            warped = self.warped[..., rows, cols].to(crop.device)
            reliable = self.reliable[..., rows, cols].to(crop.device)
            diff = crop[..., ry0:ry1, rx0:rx1] - warped
            terms["temporal"] = self.temporal_weight * (reliable * diff.pow(2)).sum() / (3 * self.height * self.width)
        return terms

    def _evaluate_once(self, canvas: torch.Tensor) -> dict[str, torch.Tensor]:
        local = self.local_weight > 0 and self.region is not None
        if local:
            grams, region_grams = grams_by_blocks(self.network, canvas.detach(), self.style_layers,
                                                  self.blocks, self.precision, on_block=self._report,
                                                  region=self.region)
            local_style = self._style_loss(region_grams, self.local_weight)
            local_upstream = self._style_upstream(region_grams, self.local_weight)
        else:
            grams = self.global_grams(canvas.detach())
        style = self._style_loss(grams)
        upstream = self._style_upstream(grams)
        gradient = torch.zeros_like(canvas)
        totals: dict[str, torch.Tensor] = {}
        for index, block in enumerate(self.blocks):
            crop = canvas.detach()[(..., *block.outer.slices())].to(self.device).requires_grad_(True)
            features = self._forward(crop)
            surrogate = torch.zeros((), device=self.device)
            for layer in self.style_layers:
                flat = _flat(self._inner(features, block, layer))
                partial = gram_matrix(flat, 1.0 / (flat.shape[0] * self.positions(layer)))
                surrogate = surrogate + (upstream[layer] * partial).sum()
                if local:
                    roots, weight_sum = self.region[layer]
                    inner = self._inner(features, block, layer)
                    box = roots[(..., *block.feature_box(self.strides[layer]).slices())]
                    weighted = gram_matrix(_flat(inner * box.to(inner.device, inner.dtype)),
                                           1.0 / (flat.shape[0] * max(weight_sum, 1e-12)))
                    surrogate = surrogate + (local_upstream[layer] * weighted).sum()
            terms = self._local_terms(crop, block)
            if self.content_layers:
                content = torch.zeros((), device=self.device)
                for layer in self.content_layers:
                    inner = self._inner(features, block, layer).float()
                    target = self._content_target(index, block, layer)
                    count = inner.shape[1] * self.positions(layer)
                    content = content + (inner - target).pow(2).sum() / (count * self.content_energy[layer])
                terms["content"] = self.content_weight * content / len(self.content_layers)
            (surrogate + sum(terms.values(), torch.zeros((), device=self.device))).backward()
            gradient[(..., *block.outer.slices())] += crop.grad.to(canvas.device)
            for name, value in terms.items():
                totals[name] = totals.get(name, 0.0) + value.detach()
            self._report(len(self.blocks) + index + 1)
        canvas.grad = gradient
        ordered = {name: totals[name] for name in ("content",) if name in totals}
        ordered["style"] = style.detach()
        if local:
            ordered["style_local"] = local_style.detach()
        ordered.update({name: totals[name] for name in ("tv", "temporal") if name in totals})
        ordered["total"] = sum(ordered.values())
        return ordered

    def evaluate(self, canvas: torch.Tensor) -> dict[str, torch.Tensor]:
        """Loss terms of the whole canvas; the exact gradient goes to canvas.grad.

        Out of device memory, the blocks shrink and the evaluation is redone: nothing is lost.
        """
        smallest = min_tile_size(self.margin, self.stride)
        while True:
            try:
                return self._evaluate_once(canvas)
            except torch.OutOfMemoryError:
                if self.tile_size <= smallest:
                    raise UsageError(f"out of device memory even with {self.tile_size}px blocks; "
                                     "free GPU memory or use --device cpu") from None
            # past the except block: the traceback no longer holds the failed attempt's tensors
            canvas.grad = None
            if self.device.type == "cuda":
                torch.cuda.empty_cache()
            self.replan(max(smallest, int(self.tile_size * SHRINK) // self.stride * self.stride))

    __call__ = evaluate
