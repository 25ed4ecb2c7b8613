"""Colour preservation: luminance-only transfer (Gatys et al. 2016, "Preserving colour").

The style is transferred on luminance alone (style luminance matched to the content's mean and
spread), then the result's luminance is recombined with the content's chroma in YIQ space.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

_RGB_TO_YIQ = torch.tensor([[0.299, 0.587, 0.114],
                            [0.595716, -0.274453, -0.321263],
                            [0.211456, -0.522591, 0.311135]])


def rgb_to_yiq(image: torch.Tensor) -> torch.Tensor:
    return torch.einsum("ij,bjhw->bihw", _RGB_TO_YIQ.to(image), image)


def yiq_to_rgb(image: torch.Tensor) -> torch.Tensor:
    return torch.einsum("ij,bjhw->bihw", torch.linalg.inv(_RGB_TO_YIQ).to(image), image)


def luminance_rgb(image: torch.Tensor) -> torch.Tensor:
    """Grey image (3 equal channels) of the luminance."""
    return rgb_to_yiq(image)[:, :1].expand(-1, 3, -1, -1).contiguous()


def matched_luminance(style: torch.Tensor, content: torch.Tensor) -> torch.Tensor:
    """The style's luminance, shifted and scaled to the content's luminance mean and spread."""
    style_y = rgb_to_yiq(style)[:, :1]
    content_y = rgb_to_yiq(content)[:, :1]
    scaled = (style_y - style_y.mean()) * (content_y.std() / style_y.std().clamp_min(1e-6))
    return (scaled + content_y.mean()).clamp(0, 1).expand(-1, 3, -1, -1).contiguous()


def recombine(stylized: torch.Tensor, content: torch.Tensor) -> torch.Tensor:
    """Stylized luminance with the content's chroma."""
    if content.shape[-2:] != stylized.shape[-2:]:
        content = F.interpolate(content, size=stylized.shape[-2:], mode="bicubic",
                                align_corners=False).clamp(0, 1)
    yiq = torch.cat([rgb_to_yiq(stylized)[:, :1], rgb_to_yiq(content)[:, 1:]], dim=1)
    return yiq_to_rgb(yiq).clamp(0, 1)
