"""Optical flow between frames (OpenCV DIS), backward warping and the reliability mask.

Pure functions on arrays: (H, W, 3) float32 RGB frames in [0, 1] or uint8, (H, W, 2) float32 flow
in pixels (x then y), (H, W) float32 masks in {0, 1}. No files, no processes.

Convention: ``flow(a, b)`` is the flow w with a(x) ≈ b(x + w(x)); ``warp(b, w)`` samples b at
x + w(x), so ``warp(b, flow(a, b))`` brings b onto a. To bring the previous stylized frame onto
the current one (Ruder et al.), use the backward flow ``flow(current, previous)``.
"""

from __future__ import annotations

import functools
from typing import Optional, Sequence

import cv2
import numpy as np

from ..images import to_uint8

PRESETS = {"ultrafast": cv2.DISOPTICAL_FLOW_PRESET_ULTRAFAST,
           "fast": cv2.DISOPTICAL_FLOW_PRESET_FAST,
           "medium": cv2.DISOPTICAL_FLOW_PRESET_MEDIUM}

# Ruder et al. (artistic-videos): disocclusion and motion-boundary thresholds, in pixels².
CONSISTENCY_RELATIVE, CONSISTENCY_ABSOLUTE = 0.01, 0.5
BOUNDARY_RELATIVE, BOUNDARY_ABSOLUTE = 0.01, 0.002
# A warped input pixel this far from the current one (largest RGB difference, on [0, 1]) shows
# another surface: DIS gives a flat occluder the background's motion, which the forward-backward
# check cannot catch, and the occluder's stylization would be carried onto what it uncovers.
PHOTOMETRIC_LIMIT = 0.1


def to_gray(frame: np.ndarray) -> np.ndarray:
    """uint8 luminance, what DIS works on."""
    return cv2.cvtColor(np.ascontiguousarray(to_uint8(frame)), cv2.COLOR_RGB2GRAY)


def make_dis(preset: str = "medium") -> cv2.DISOpticalFlow:
    return cv2.DISOpticalFlow_create(PRESETS[preset])


def flow(a: np.ndarray, b: np.ndarray, dis: cv2.DISOpticalFlow | None = None) -> np.ndarray:
    """w with a(x) ≈ b(x + w(x)); a and b are frames of the same size (RGB or grey)."""
    dis = dis or make_dis()
    a_gray = a if a.ndim == 2 else to_gray(a)
    b_gray = b if b.ndim == 2 else to_gray(b)
    return dis.calc(a_gray, b_gray, None)


@functools.lru_cache(maxsize=4)
def _pixel_grid(height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """Pixel coordinates (ys, xs), read-only: built once per frame size, not at every warp and
    check (np.mgrid is four fifths of ``sample_grid``'s time)."""
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    ys.flags.writeable = xs.flags.writeable = False
    return ys, xs


def sample_grid(flow_field: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    ys, xs = _pixel_grid(*flow_field.shape[:2])
    return xs + flow_field[..., 0], ys + flow_field[..., 1]


INTERPOLATIONS = {"bilinear": cv2.INTER_LINEAR, "bicubic": cv2.INTER_CUBIC}


def warp(image: np.ndarray, flow_field: np.ndarray, interpolation: str = "bilinear") -> np.ndarray:
    """Sample image at x + w(x); outside the image the nearest border pixel is used (the
    reliability mask marks those pixels unreliable). Bicubic keeps the detail that bilinear
    sampling blurs away at every fractional shift (it compounds over a video's frames); it can
    overshoot, so a [0, 1] image stays clipped to [0, 1]."""
    map_x, map_y = sample_grid(flow_field)
    warped = cv2.remap(np.ascontiguousarray(image), map_x, map_y, INTERPOLATIONS[interpolation],
                       borderMode=cv2.BORDER_REPLICATE)
    if interpolation != "bilinear" and image.dtype == np.float32 and image.ndim == 3:
        np.clip(warped, 0.0, 1.0, out=warped)
    return warped


def inside_image(flow_field: np.ndarray) -> np.ndarray:
    """Where x + w(x) samples the image. Half a pixel past the edge still samples only the edge
    pixel (the warp replicates the border), so a still border with flow noise stays reliable."""
    height, width = flow_field.shape[:2]
    map_x, map_y = sample_grid(flow_field)
    return ((map_x >= -0.5) & (map_x <= width - 0.5) & (map_y >= -0.5) & (map_y <= height - 0.5))


def consistent(flow_ab: np.ndarray, flow_ba: np.ndarray) -> np.ndarray:
    """Forward-backward check: going a→b and back lands where it started, up to
    |w + ŵ(x+w)|² < 0.01(|w|² + |ŵ(x+w)|²) + 0.5. False marks disocclusions and bad flow."""
    back = warp(flow_ba, flow_ab)
    error = ((flow_ab + back) ** 2).sum(-1)
    scale = (flow_ab ** 2).sum(-1) + (back ** 2).sum(-1)
    return error < CONSISTENCY_RELATIVE * scale + CONSISTENCY_ABSOLUTE


def motion_boundary(flow_ab: np.ndarray) -> np.ndarray:
    """|∇u|² + |∇v|² > 0.01|w|² + 0.002: where neighbouring pixels move apart."""
    gradients = 0.0
    for channel in range(2):
        component = np.ascontiguousarray(flow_ab[..., channel])
        gx = cv2.Sobel(component, cv2.CV_32F, 1, 0, ksize=1, scale=0.5)
        gy = cv2.Sobel(component, cv2.CV_32F, 0, 1, ksize=1, scale=0.5)
        gradients = gradients + gx ** 2 + gy ** 2
    return gradients > BOUNDARY_RELATIVE * (flow_ab ** 2).sum(-1) + BOUNDARY_ABSOLUTE


def reliability(flow_ab: np.ndarray, flow_ba: np.ndarray) -> np.ndarray:
    """1 where warp(b, flow_ab) can be trusted as a prediction of a, else 0 (Ruder et al.)."""
    reliable = consistent(flow_ab, flow_ba) & ~motion_boundary(flow_ab) & inside_image(flow_ab)
    return reliable.astype(np.float32)


def photometric_match(a: np.ndarray, b: np.ndarray, flow_ab: np.ndarray) -> np.ndarray:
    """1 where b warped onto a looks like a (within PHOTOMETRIC_LIMIT), else 0; a and b of one
    dtype (OpenCV's per-channel maximum: a third of numpy's time at 720p)."""
    difference = cv2.absdiff(np.ascontiguousarray(a), warp(b, flow_ab))
    if difference.ndim == 3:
        difference = cv2.max(cv2.max(difference[..., 0], difference[..., 1]), difference[..., 2])
    limit = PHOTOMETRIC_LIMIT * (255.0 if a.dtype == np.uint8 else 1.0)
    return (difference < limit).astype(np.float32)


def flow_and_mask(a: np.ndarray, b: np.ndarray, dis: cv2.DISOpticalFlow | None = None
                  ) -> tuple[np.ndarray, np.ndarray]:
    """Flow a→b and its reliability mask: both directions of DIS flow agree (``reliability``)
    and b warped onto a looks like a (``photometric_match``)."""
    dis = dis or make_dis()
    a_gray, b_gray = to_gray(a) if a.ndim == 3 else a, to_gray(b) if b.ndim == 3 else b
    flow_ab = flow(a_gray, b_gray, dis)
    flow_ba = flow(b_gray, a_gray, dis)
    return flow_ab, reliability(flow_ab, flow_ba) * photometric_match(a, b, flow_ab)


def nearest_reliable(warped: Sequence[np.ndarray], masks: Sequence[np.ndarray]
                     ) -> tuple[np.ndarray, np.ndarray]:
    """Ruder et al.'s long-term consistency as one target: each pixel from the nearest earlier
    output (``warped`` is nearest first) whose warp is reliable there; the mask is where any is.

    Their long-term weights, max(c_j − Σ_{k<j} c_k, 0), give each pixel to exactly that frame
    when the masks are 0 or 1, so the sum of their per-frame terms is this one term."""
    target = np.array(warped[0], copy=True)
    covered = masks[0] > 0.5
    for image, mask in zip(warped[1:], masks[1:]):
        take = (mask > 0.5) & ~covered
        target[take] = image[take]
        covered |= take
    return target, covered.astype(np.float32)


def around_unreliable(mask: np.ndarray, reach: int) -> np.ndarray:
    """Where the warp cannot be trusted, widened by ``reach`` px: (H, W) float32 in {0, 1}. A
    region that enters a panning frame is a couple of pixels a frame; widened, each pixel stays in
    it for several frames, and the region is wide enough for the deeper layers to see."""
    unreliable = (mask < 0.5).astype(np.uint8)
    if reach > 0 and unreliable.any():
        kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * reach + 1, 2 * reach + 1))
        unreliable = cv2.dilate(unreliable, kernel)
    return unreliable.astype(np.float32)


DETAIL_SIGMA = 3.0  # px: what finer than this comes from the frame's own content in a filled hole


def inpaint_unreliable(image: np.ndarray, mask: np.ndarray, detail_from: np.ndarray | None = None,
                       radius: int = 3) -> np.ndarray:
    """An (H, W, 3) [0, 1] image with its unreliable pixels filled from the reliable ones around
    them (OpenCV's Telea inpainting, at 8 bits per channel). With ``detail_from`` (the current
    input frame), the holes also get that frame's detail (itself less its Gaussian blur at
    DETAIL_SIGMA): inpainting alone leaves a smear in which what an occluder uncovered (an eye,
    say) is gone, and the content term cannot bring it back in a few iterations."""
    holes = (mask < 0.5).astype(np.uint8)
    if not holes.any():
        return image
    levels = np.round(np.clip(image, 0, 1) * 255.0).astype(np.uint8)
    filled = cv2.inpaint(levels, holes, radius, cv2.INPAINT_TELEA).astype(np.float32) / 255.0
    if detail_from is not None:
        content = np.ascontiguousarray(detail_from, dtype=np.float32)
        filled = np.clip(filled + content - cv2.GaussianBlur(content, (0, 0), DETAIL_SIGMA), 0, 1)
    return np.where(holes[..., None] > 0, filled, image)


FILL_SIGMA = 6.0  # px: how far around a hole the painted pixels give the statistics it takes
FILL_REGULARISER = 1e-4  # added to the content's local colour covariance: a spread of 0.01
FILL_GRAIN = 1.0  # the fill's grain, in units of the painting's local fine-detail spread
GRAIN_SIGMA = 1.0  # px: the grain's blur


def _local_means(values: np.ndarray, weights: np.ndarray, sigma: float) -> np.ndarray:
    """The mean of each channel of ``values`` (H, W, K) over the pixels ``weights`` (H, W, 0 or
    1) marks, Gaussian-weighted around every pixel (normalised convolution). The sums are smooth,
    so they are blurred at half the resolution when the frame is large enough for the Gaussian.
    Where no marked pixel is near enough to carry weight, the mean of all the marked pixels."""
    height, width = weights.shape
    factor = 2 if min(height, width) >= 8 * sigma else 1
    size = (width // factor, height // factor)

    def smoothed(image: np.ndarray) -> np.ndarray:
        if factor > 1:
            image = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
        image = cv2.GaussianBlur(image, (0, 0), sigma / factor)
        if factor > 1:
            image = cv2.resize(image, (width, height), interpolation=cv2.INTER_LINEAR)
        return image.reshape(height, width, -1)

    weighted = values * weights[..., None]
    # OpenCV filters at most four channels at a time
    sums = np.concatenate([smoothed(np.ascontiguousarray(weighted[..., k:k + 4]))
                           for k in range(0, values.shape[-1], 4)], axis=-1)
    total = smoothed(weights)[..., 0]
    means = sums / np.maximum(total, 1e-6)[..., None]
    far = total < 1e-3
    if far.any():
        means[far] = values[weights > 0].mean(0)
    return means


def _outer(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(H, W, 3) x (H, W, 3) -> (H, W, 9): a_i b_j per pixel."""
    return (a[..., :, None] * b[..., None, :]).reshape(*a.shape[:-1], 9)


def transfer_unreliable(image: np.ndarray, mask: np.ndarray, content: np.ndarray,
                        sigma: float = FILL_SIGMA, grain: float = FILL_GRAIN,
                        seed: int = 0) -> np.ndarray:
    """An (H, W, 3) [0, 1] image with its unreliable pixels filled with the current input frame
    ``content`` in the painting's colours: at each pixel, the painting predicted from the content
    by a linear regression over the reliable pixels around it (a Gaussian of ``sigma`` px), from
    the content's three channels to the painting's (the guided filter's local linear model, with
    a full 3x3 map). Inpainting draws the pixels beside a hole across it; where something enters a
    frame, a strip every frame, the strips line up into streaks along the motion that the frame's
    iterations do not undo. This fill has the content's structure (an uncovered eye is there) in
    the colours the painting gives that structure nearby.

    The map is across channels: the content's variation is mostly luminance, and a painting in
    two colours (the swirls' blue and yellow) puts luminance on a blue-yellow axis. The earlier
    per-channel map (each channel's local mean and spread, positive gains) could not: a filled
    pixel started at the palette's mean, a dull grey-cyan, with grey light and dark, and the
    frames after left that pale trail where a square had passed.

    Where the content is smooth the fill is smooth, and a frame's iterations (15 to 100, not a
    first frame's) do not paint a smooth start: the strip stays unpainted. So the fill also gets
    ``grain`` times the painting's own grain: seeded noise at GRAIN_SIGMA px, with the local
    colour covariance of the painted pixels' fine detail (the painting less its Gaussian blur at
    DETAIL_SIGMA) around it, which the iterations turn into strokes."""
    holes = mask < 0.5
    if not holes.any() or holes.all():
        return image
    weights = (~holes).astype(np.float32)
    painted = np.ascontiguousarray(image, dtype=np.float32)
    content = np.ascontiguousarray(content, dtype=np.float32)
    fine = painted - cv2.GaussianBlur(painted, (0, 0), DETAIL_SIGMA)
    noise = None
    if grain > 0:  # one field for the frame: the same grain whatever boxes the holes fall in
        noise = np.random.default_rng(seed).standard_normal((*painted.shape[:2], 3),
                                                            dtype=np.float32)
        noise = cv2.GaussianBlur(noise, (0, 0), GRAIN_SIGMA)
        noise /= np.maximum(noise.reshape(-1, 3).std(0), 1e-6)
    out = np.array(painted, copy=True)
    height, width = holes.shape
    margin = int(np.ceil(3 * sigma))  # the statistics a hole pixel takes come from this near
    # the holes' boxes with that margin, not the whole frame: the moments are 33 channels
    # boxes may overlap: each hole pixel is filled once, by the last box that holds it
    unfilled = holes.copy()
    for y0, y1, x0, x1 in reversed(covering_boxes(holes, 2 * margin)):
        outer = (slice(max(0, y0 - margin), min(height, y1 + margin)),
                 slice(max(0, x0 - margin), min(width, x1 + margin)))
        box = np.zeros_like(holes)
        box[y0:y1, x0:x1] = unfilled[y0:y1, x0:x1]
        unfilled[y0:y1, x0:x1] = False
        if not box.any():
            continue
        if not weights[outer].any():  # nothing painted this near: the frame's painting
            outer = (slice(None), slice(None))
        here = box[outer]
        filled = _regressed(content[outer], painted[outer], fine[outer], weights[outer], here,
                            sigma, None if noise is None else grain * noise[outer][here])
        out[outer][here] = np.clip(filled, 0.0, 1.0)
    return out


def _regressed(content: np.ndarray, painted: np.ndarray, fine: np.ndarray, weights: np.ndarray,
               holes: np.ndarray, sigma: float, noise: Optional[np.ndarray]) -> np.ndarray:
    """``transfer_unreliable``'s values at ``holes`` (N, 3): the local regression of the painting
    on the content, plus ``noise`` (N, 3, unit variance) coloured by the fine detail's local
    covariance."""
    moments = _local_means(np.concatenate([content, painted, _outer(content, content),
                                           _outer(painted, content), _outer(fine, fine)], -1),
                           weights, sigma)[holes]
    content_mean, paint_mean = moments[:, 0:3], moments[:, 3:6]
    content_cov = (moments[:, 6:15].reshape(-1, 3, 3)
                   - content_mean[:, :, None] * content_mean[:, None, :])
    cross_cov = (moments[:, 15:24].reshape(-1, 3, 3)
                 - paint_mean[:, :, None] * content_mean[:, None, :])
    eye = np.eye(3, dtype=np.float32)
    # map = cross · content⁻¹, solved as content mapᵀ = crossᵀ (content is symmetric)
    mapping = np.linalg.solve(content_cov + FILL_REGULARISER * eye,
                              cross_cov.transpose(0, 2, 1)).transpose(0, 2, 1)
    filled = paint_mean + np.einsum("nij,nj->ni", mapping, content[holes] - content_mean)
    if noise is not None:
        # light and dark grain in the painting's colours (its fine detail's covariance), not
        # speckles of every colour
        root = np.linalg.cholesky(moments[:, 24:33].reshape(-1, 3, 3) + 1e-6 * eye)
        filled = filled + np.einsum("nij,nj->ni", root, noise)
    return filled


def warping_error(frame_a: np.ndarray, frame_b: np.ndarray, flow_ab: np.ndarray,
                  mask: np.ndarray) -> float:
    """Lai et al.: mean squared difference between frame a and frame b warped back onto it, over
    reliable pixels, on [0, 1] RGB (mean over the three channels)."""
    warped = warp(frame_b, flow_ab)
    squared = ((frame_a - warped) ** 2).mean(-1)
    count = float(mask.sum())
    return float((squared * mask).sum() / count) if count else 0.0


Box = tuple[int, int, int, int]  # y0, y1, x0, x1: rows y0..y1-1, columns x0..x1-1


def covering_boxes(region: np.ndarray, least: int, fill: float = 0.5) -> list[Box]:
    """Boxes that cover the nonzero pixels of an (H, W) map, none with a side under ``least`` px
    (unless the map is smaller), each at least ``fill`` full or no longer worth splitting: a box
    too empty is cut across its longer side and each half covered again. What enters a panning
    frame is an L (a strip at the right, one at the bottom) whose one box would be the whole
    frame; its cover is a few strips."""
    height, width = region.shape

    def grown(a: int, b: int, size: int) -> tuple[int, int]:
        side = min(size, max(least, b - a))
        a = max(0, min(a - (side - (b - a)) // 2, size - side))
        return a, a + side

    def cover(y0: int, y1: int, x0: int, x1: int) -> list[Box]:
        ys, xs = np.nonzero(region[y0:y1, x0:x1])
        if not len(ys):
            return []
        y0, y1, x0, x1 = y0 + ys.min(), y0 + ys.max() + 1, x0 + xs.min(), x0 + xs.max() + 1
        full = len(ys) / ((y1 - y0) * (x1 - x0))
        if full < fill and max(y1 - y0, x1 - x0) >= 2 * least:
            if x1 - x0 >= y1 - y0:
                middle = (x0 + x1) // 2
                return cover(y0, y1, x0, middle) + cover(y0, y1, middle, x1)
            middle = (y0 + y1) // 2
            return cover(y0, middle, x0, x1) + cover(middle, y1, x0, x1)
        (a, b), (c, d) = grown(y0, y1, height), grown(x0, x1, width)
        return [(int(a), int(b), int(c), int(d))]

    return cover(0, height, 0, width)
