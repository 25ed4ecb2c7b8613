"""Loss terms: pure functions, plus thin modules that hold a fixed target.

Exact formulas (x: canvas in [0,1], N: number of elements, F: features of shape C x (H*W)):

    gram(F)          = F Fᵀ / (C·H·W)
    content(F, Fc)   = mean((F − Fc)²) / mean(Fc²)
    style(G, Gs)     = mean((G − Gs)²) / mean(Gs²)          (G, Gs: Gram matrices)
    tv(x)            = mean((x[i+1,j] − x[i,j])²) + mean((x[i,j+1] − x[i,j])²)
    temporal(x, w, c)= mean(c · (x − w)²)                     (w: warped previous output, c: mask)

Means (not sums) and the Gram's 1/(C·H·W) make every term independent of the image size. The
content and style terms are divided by their target's energy, a constant fixed when the target is
set, so the gradient is that of a plain MSE, and layers, networks (pretrained or random) and
styles are comparable: a value of 1.0 means an error as large as the target itself.
"""

from __future__ import annotations

import torch
from torch import nn

EPS = 1e-12


class _Gram(torch.autograd.Function):
    """F Fᵀ · scale with a one-matmul backward: dF = (dG + dGᵀ) F · scale.

    Autograd's own backward of F @ Fᵀ runs two matmuls (one per operand); the Gram matrices are
    about a tenth of an iteration's arithmetic, so this saves ~5% of every iteration.

    Features in bf16 are multiplied in bf16 (fp32 accumulation, 2.5x the fp32 speed on CPUs
    with bf16 instructions) and the Gram is returned in fp32 for the loss; its gradient goes back
    in bf16, the precision the network's backward pass runs in anyway.
    """

    @staticmethod
    def forward(ctx, flat: torch.Tensor, scale: float) -> torch.Tensor:
        ctx.save_for_backward(flat)
        ctx.scale = scale
        product = torch.matmul(flat, flat.transpose(-1, -2))
        return (product.float() if product.dtype == torch.bfloat16 else product) * scale

    @staticmethod
    def backward(ctx, upstream: torch.Tensor):
        (flat,) = ctx.saved_tensors
        symmetric = ((upstream + upstream.transpose(-1, -2)) * ctx.scale).to(flat.dtype)
        if flat.stride(-2) == 1 and flat.stride(-1) != 1:
            # Features in channels_last give a column-major flat view. Build the gradient in
            # the same layout ((Fᵀ S)ᵀ = S F, as S is symmetric): a row-major gradient would
            # meet the network's channels_last gradients in the ReLU backward and the gradient
            # sums, and mixed layouts take slow strided loops (~10% of a CPU iteration).
            return torch.matmul(flat.transpose(-1, -2), symmetric).transpose(-1, -2), None
        return torch.matmul(symmetric, flat), None


def gram_matrix(flat: torch.Tensor, scale: float) -> torch.Tensor:
    """(..., C, N) -> (..., C, C) = flat flatᵀ · scale."""
    return _Gram.apply(flat, scale)


def gram(features: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W) -> (B, C, C), normalised by C·H·W."""
    batch, channels, height, width = features.shape
    flat = features.reshape(batch, channels, height * width)
    return gram_matrix(flat, 1.0 / (channels * height * width))


def masked_gram(features: torch.Tensor, root_weights: torch.Tensor, weight_sum: float) -> torch.Tensor:
    """The Gram of some positions only: Σ_x w(x) F(x) F(x)ᵀ / (C·Σw), from ``root_weights`` = √w,
    a (1, 1, H, W) map at the features' resolution, and its precomputed ``weight_sum`` = Σw."""
    batch, channels, height, width = features.shape
    flat = (features * root_weights.to(features.dtype)).reshape(batch, channels, height * width)
    return gram_matrix(flat, 1.0 / (channels * max(weight_sum, EPS)))


def region_share(region: torch.Tensor) -> float:
    """The share of the canvas a (1, 1, H, W) region map in [0, 1] covers: the factor that turns
    the style loss of the region's own Gram into a term whose gradient per pixel is as strong as
    the global Gram's. Unscaled, that gradient grows as 1/Σw: on a thin strip or a small
    uncovered patch (whose Gram at the deep layers is of low rank) the term outweighed the rest
    of the loss and painted speckled blotches there."""
    return float(region.float().mean())


def energy(target: torch.Tensor) -> torch.Tensor:
    return target.float().pow(2).mean().clamp_min(EPS)


def content_loss(features: torch.Tensor, target: torch.Tensor, target_energy: torch.Tensor) -> torch.Tensor:
    return (features.float() - target).pow(2).mean() / target_energy


def style_loss(gram_matrix: torch.Tensor, target_gram: torch.Tensor, target_energy: torch.Tensor) -> torch.Tensor:
    return (gram_matrix - target_gram).pow(2).mean() / target_energy


def tv_loss(image: torch.Tensor) -> torch.Tensor:
    down = (image[..., 1:, :] - image[..., :-1, :]).pow(2).mean()
    right = (image[..., :, 1:] - image[..., :, :-1]).pow(2).mean()
    return down + right


def temporal_loss(image: torch.Tensor, warped: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    return (mask * (image - warped).pow(2)).mean()


class ContentLoss(nn.Module):
    def __init__(self, target: torch.Tensor):
        super().__init__()
        self.register_buffer("target", target.detach().float())
        self.register_buffer("target_energy", energy(target.detach()))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return content_loss(features, self.target, self.target_energy)


class StyleLoss(nn.Module):
    """Holds a target Gram matrix (possibly a blend of several styles' Grams)."""

    def __init__(self, target_gram: torch.Tensor):
        super().__init__()
        self.register_buffer("target", target_gram.detach().float())
        self.register_buffer("target_energy", energy(target_gram.detach()))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return style_loss(gram(features), self.target, self.target_energy)
