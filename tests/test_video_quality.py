"""Every frame as stylized as the first, everywhere: what enters a panning frame gets style of its
own, the warp keeps detail, new pixels start from painted colours, and with --new-iterations what
an occluder uncovers is painted in boxes of its own.

A synthetic pan with exact motion (the camera moves right and down), a random network cut after
relu3_1, the real command at a low budget: seconds on a CPU.
"""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch

from nstvideo import images
from nstvideo.cli.main import main
from nstvideo.network.features import VGGFeatures
from nstvideo.network.losses import gram, masked_gram
from nstvideo.network.objective import StyleObjective
from nstvideo.video import flow as flowlib
from nstvideo.video import quality
from nstvideo.video.io import open_frames

from conftest import SAMPLES, moving_frames, write_clip

FAST = ["--weights", "random", "--device", "cpu", "--quiet", "--iterations", "15",
        "--first-iterations", "60"]
OLD_WAY = ["--warp", "bilinear", "--local-style-weight", "0", "--fill", "content"]
COUNT, HEIGHT, WIDTH, SHIFT = 12, 48, 96, (2, 1)


@pytest.fixture(scope="module")
def pan(tmp_path_factory):
    folder = tmp_path_factory.mktemp("pan")
    clip = write_clip(folder / "pan.mp4", moving_frames(COUNT, HEIGHT, WIDTH, shift=SHIFT,
                                                        occluder=False))
    return folder, clip


def stylized(pan, style_path, name, extra):
    folder, clip = pan
    output = folder / f"{name}.mp4"
    assert main(["stylize", str(clip), "--style", str(style_path), "-o", str(output),
                 *FAST, *extra]) == 0
    with open_frames(output) as frames:
        return [f.astype(np.float32) / 255 for f in frames]


@pytest.fixture(scope="module")
def runs(pan):
    style_path = SAMPLES / "swirls.png"
    probe = quality.probe_network(layers=("relu1_1", "relu2_1"))
    grams = quality.probe_grams(probe, images.load(style_path))
    outputs = {name: stylized(pan, style_path, name, extra)
               for name, extra in (("default", []), ("old", OLD_WAY),
                                   ("inpaint", ["--fill", "inpaint"]),
                                   ("none", ["--temporal", "none"]))}
    return outputs, probe, grams


def last_frame_alone(folder, clip, style_path, count: int) -> np.ndarray:
    """The clip's last frame stylized on its own with the first frame's budget."""
    assert main(["stylize", str(clip), "--style", str(style_path), "-o", str(folder / "f_%d.png"),
                 "--bit-depth", "16", *FAST, "--temporal", "none",
                 "--start", f"{(count - 1.5) / 24:.4f}"]) == 0
    return images.to_array(images.load(folder / "f_1.png"))


def test_what_enters_the_frame_is_painted_like_the_rest(runs, pan):
    outputs, probe, grams = runs
    fresh = images.to_tensor(last_frame_alone(*pan, SAMPLES / "swirls.png", COUNT))
    strips = {"right": (..., slice(None), slice(-SHIFT[0] * (COUNT - 1), None)),
              "bottom": (..., slice(-SHIFT[1] * (COUNT - 1), None), slice(None))}

    def against_fresh(frame):  # the same strip, the same content: 1 is a first frame's paint
        return {name: quality.style_distance(probe, images.to_tensor(frame)[where], grams)
                / quality.style_distance(probe, fresh[where], grams) for name, where in strips.items()}

    ratios = {name: against_fresh(frames[-1]) for name, frames in outputs.items()}
    # measured: right 0.85 and bottom 1.15 by default, 1.10 and 1.57 the old way; 2.0 is the
    # issue's low-budget bound (the old test's bottom/top strip ratio compared the fur at the
    # bottom with the forehead at the top: content, as much as paint)
    assert max(ratios["default"].values()) < 2.0, ratios
    assert ratios["old"]["bottom"] > 1.25 * ratios["default"]["bottom"], ratios
    # the leading edge (what entered in the last four frames), by its detail across the motion:
    # an inpainted fill lines up into streaks there, a smooth one stays unpainted
    edge = np.zeros((HEIGHT, WIDTH), dtype=bool)
    edge[:, -4 * SHIFT[0]:] = True
    detail = {name: quality.region_detail(frames[-1], edge)
              / quality.region_detail(images.to_array(fresh), edge) for name, frames in outputs.items()}
    # measured: 0.81 of a fresh frame's by default, 0.21 with --fill inpaint, 0.07 the old way
    assert detail["default"] > 0.5, detail
    assert detail["default"] > 1.5 * detail["inpaint"], detail


def test_late_frames_keep_the_first_frames_detail(runs):
    outputs, _, _ = runs
    detail = {name: np.mean([quality.laplacian_variance(f) for f in frames[-4:]])
              / quality.laplacian_variance(frames[0]) for name, frames in outputs.items()}
    # measured: 0.90 by default, 0.69 with the bilinear warp and no local style
    assert detail["default"] >= 0.8
    assert detail["default"] > detail["old"] + 0.1


def test_flicker_stays_low(runs):
    outputs, _, _ = runs
    error = quality.shifted_warping_error(outputs["default"], SHIFT)
    assert error <= 0.6 * quality.shifted_warping_error(outputs["none"], SHIFT)


def test_bicubic_warp_keeps_detail_that_bilinear_blurs_away():
    rng = np.random.default_rng(0)
    image = rng.random((40, 40, 3), dtype=np.float32)
    half = np.full((40, 40, 2), 0.5, dtype=np.float32)
    kept = {}
    for interpolation in ("bilinear", "bicubic"):
        moved = image
        for _ in range(4):  # half a pixel there and back, twice
            moved = flowlib.warp(flowlib.warp(moved, half, interpolation), -half, interpolation)
        inner = (slice(8, -8), slice(8, -8))
        kept[interpolation] = (quality.laplacian_variance(moved[inner])
                               / quality.laplacian_variance(image[inner]))
    assert kept["bicubic"] > 2 * kept["bilinear"]
    assert 0.0 <= moved.min() and moved.max() <= 1.0  # bicubic overshoot is clipped


def test_inpainted_fill_takes_the_colours_around_the_hole():
    image = np.zeros((20, 30, 3), dtype=np.float32)
    image[..., 2] = 0.8  # painted blue
    mask = np.ones((20, 30), dtype=np.float32)
    mask[:, -4:] = 0  # the strip that entered
    image[:, -4:] = (1.0, 0.0, 0.0)  # whatever the warp left there
    filled = flowlib.inpaint_unreliable(image, mask)
    assert np.allclose(filled[:, -4:, 2], 0.8, atol=0.02) and filled[:, -4:, 0].max() < 0.05
    assert np.array_equal(filled[:, :-4], image[:, :-4])


def test_an_inpainted_hole_keeps_the_frames_own_detail():
    """What an occluder uncovers (an eye) must not be lost to a smooth smear: the hole gets the
    painted colours around it plus the current frame's fine detail."""
    painted = np.zeros((24, 24, 3), dtype=np.float32)
    painted[..., 2] = 0.6
    mask = np.ones((24, 24), dtype=np.float32)
    mask[6:18, 6:18] = 0
    content = np.full((24, 24, 3), 0.5, dtype=np.float32)
    content[::2, :, :] = 0.9  # fine stripes: the detail
    plain = flowlib.inpaint_unreliable(painted, mask)
    detailed = flowlib.inpaint_unreliable(painted, mask, detail_from=content)
    hole = (slice(8, 16), slice(8, 16))
    assert quality.laplacian_variance(plain[hole]) < 1e-4
    assert quality.laplacian_variance(detailed[hole]) > 0.01
    assert abs(float(detailed[hole][..., 2].mean()) - 0.6) < 0.1  # still the painted colour
    assert np.array_equal(detailed[mask > 0.5], painted[mask > 0.5])


def test_a_transferred_fill_is_what_the_painting_shows_there_without_streaks():
    """A strip entering at the right edge of a painting whose colours are a per-channel remap of
    the content: the transferred fill gives the hole the content's structure in the painting's
    colours (close to what the painting holds there); inpainting draws the column beside the
    hole across it, plus the content's fine detail at the content's contrast, not the
    painting's."""
    rng = np.random.default_rng(0)
    content = cv2.GaussianBlur(rng.random((48, 64, 3), dtype=np.float32), (0, 0), 1.2)
    content = (content - content.min()) / (content.max() - content.min())
    painting = np.clip(np.array([0.5, 0.1, 0.2], np.float32)
                       + (content - 0.5) * np.array([0.4, 1.6, 2.2], np.float32) + 0.3, 0, 1)
    mask = np.ones((48, 64), dtype=np.float32)
    mask[:, -6:] = 0
    start = painting.copy()
    start[:, -6:] = 0.0  # whatever the warp left there
    filled = {"transfer": flowlib.transfer_unreliable(start, mask, content, grain=0),
              "inpaint": flowlib.inpaint_unreliable(start, mask, detail_from=content)}
    hole = np.zeros((48, 64), dtype=bool)
    hole[:, -6:] = True
    error = {name: float(np.abs(image - painting)[hole].mean()) for name, image in filled.items()}
    detail = {name: quality.region_detail(image, hole) / quality.region_detail(painting, hole)
              for name, image in filled.items()}
    # measured: error 0.013 transferred, 0.12 inpainted; detail 0.75 and 0.54 of the painting's
    assert error["transfer"] < 0.06 and error["inpaint"] > 2 * error["transfer"], error
    assert detail["transfer"] > 0.7 and detail["transfer"] > 1.3 * detail["inpaint"], detail
    assert np.array_equal(filled["transfer"][~hole], start[~hole])


def test_a_transferred_fill_puts_the_contents_light_and_dark_on_the_paintings_colour_axis():
    """A painting in two colours, yellow where the content is light and blue where it is dark (as
    the swirls paint a photo): the fill predicts it across channels. A per-channel map (each
    channel's local mean and spread, the earlier fill) cannot turn light and dark into yellow and
    blue: it started each pixel at the palette's mean, a dull grey, and the frames after left a
    pale trail where a square had passed."""
    rng = np.random.default_rng(0)
    content = cv2.GaussianBlur(rng.random((48, 64, 3), dtype=np.float32), (0, 0), 1.2)
    light = content.mean(-1, keepdims=True)
    light = (light - light.min()) / (light.max() - light.min())
    blue, yellow = np.array([0.1, 0.2, 0.8], np.float32), np.array([0.9, 0.8, 0.1], np.float32)
    painting = blue + light * (yellow - blue)
    mask = np.ones((48, 64), dtype=np.float32)
    mask[:, -6:] = 0
    hole = mask < 0.5
    start = painting.copy()
    start[hole] = 0.0
    filled = flowlib.transfer_unreliable(start, mask, content, grain=0)
    error = float(np.abs(filled - painting)[hole].mean())
    red_against_blue = np.corrcoef(filled[hole][:, 0], filled[hole][:, 2])[0, 1]
    # measured: error 0.0006, correlation -1.00; a per-channel map: 0.10 and -0.21
    assert error < 0.02 and red_against_blue < -0.9, (error, red_against_blue)


def test_a_fill_over_smooth_content_gets_the_paintings_grain():
    """Where the content is smooth, the transferred fill is smooth too, and a later frame's few
    iterations leave a smooth start unpainted: the fill carries the painting's grain, seeded noise
    as strong as the painted pixels' fine detail around the hole, the same for the same seed."""
    rng = np.random.default_rng(1)
    strokes = cv2.GaussianBlur(rng.standard_normal((40, 60, 3)).astype(np.float32), (0, 0), 1.0)
    painting = np.clip(0.5 + 0.25 * strokes / strokes.std(), 0, 1)
    content = np.full((40, 60, 3), 0.4, dtype=np.float32)  # a smooth sky
    mask = np.ones((40, 60), dtype=np.float32)
    mask[:, -8:] = 0
    hole = mask < 0.5
    grained = flowlib.transfer_unreliable(painting, mask, content, seed=3)
    smooth = flowlib.transfer_unreliable(painting, mask, content, grain=0)
    detail = {name: quality.region_detail(image, hole) / quality.region_detail(painting, hole)
              for name, image in (("grain", grained), ("smooth", smooth))}
    # measured: 0.94 of the painting's detail with the grain, 0.03 without
    assert detail["grain"] > 0.3 and detail["grain"] > 5 * detail["smooth"], detail
    assert np.array_equal(grained, flowlib.transfer_unreliable(painting, mask, content, seed=3))
    assert not np.array_equal(grained, flowlib.transfer_unreliable(painting, mask, content, seed=4))
    assert np.array_equal(grained[~hole], painting[~hole])


def test_masked_gram_is_the_gram_of_the_region():
    features = torch.rand(1, 5, 6, 8, generator=torch.Generator().manual_seed(0))
    region = torch.zeros(1, 1, 6, 8)
    region[..., 3:] = 1
    assert torch.allclose(masked_gram(features, region.sqrt(), float(region.sum())),
                          gram(features[..., 3:]), atol=1e-6)


def test_the_local_region_reaches_past_the_untrusted_pixels():
    mask = np.ones((30, 40), dtype=np.float32)
    mask[:, -2:] = 0
    region = flowlib.around_unreliable(mask, reach=6)
    assert region[:, -8:].min() == 1 and region[:, :-9].max() == 0
    assert flowlib.around_unreliable(np.ones((5, 5), np.float32), 6).max() == 0


def test_block_wise_frames_get_the_same_local_style_term():
    """Frames too big for the device: the region's own Gram is accumulated over the blocks and its
    gradient equals the whole frame's (the term must matter, or the check means nothing)."""
    from conftest import whole_and_tiled_objectives
    from nstvideo.optim.engine import autograd_evaluator

    whole, tiled, canvas, _ = whole_and_tiled_objectives()
    region = torch.zeros(1, 1, 48, 64)
    region[..., 36:] = 1
    x = canvas.clone().requires_grad_(True)
    autograd_evaluator(whole)(x)
    without = x.grad.clone()
    for objective in (whole, tiled):
        objective.set_local_style(region, 2.0)
    x, y = canvas.clone().requires_grad_(True), canvas.clone().requires_grad_(True)
    expected, got = autograd_evaluator(whole)(x), tiled.evaluate(y)
    for name in ("style_local", "total"):
        assert float(got[name]) == pytest.approx(float(expected[name]), rel=1e-5), name
    assert float((y.grad - x.grad).norm() / x.grad.norm()) < 1e-4
    assert float((x.grad - without).norm() / x.grad.norm()) > 0.1


def test_the_local_style_term_presses_a_small_region_no_harder_than_the_whole_frame():
    """The region's own Gram term is scaled by the region's share of the frame, so its pull on
    each of the region's pixels is the global term's, whatever the region's size. Unscaled it grew
    as 1/Σw: on a 2-px strip or a small uncovered patch the term outweighed the rest of the loss
    (90 against 11 for the global style on a trained VGG16) and painted speckled blotches."""
    layers = ("relu1_1", "relu2_1", "relu3_1", "relu4_1")
    generator = torch.Generator().manual_seed(0)
    canvas = torch.rand(1, 3, 64, 128, generator=generator)  # the same statistics everywhere
    style = torch.rand(1, 3, 64, 64, generator=generator) ** 2
    objective = StyleObjective(VGGFeatures("vgg19", layers), content_layers=(), style_layers=layers,
                               content=None, styles=[style], style_weight=1.0)

    def pull(term: str, columns: int = 128) -> float:
        """Mean |gradient| of a term over the region (the right ``columns``) per pixel."""
        region = torch.zeros(1, 1, 64, 128)
        region[..., -columns:] = 1
        objective.set_local_style(region, 1.0)
        x = canvas.clone().requires_grad_(True)
        objective(x)[term].backward()
        return float(x.grad[..., -columns:].abs().mean())

    whole = pull("style")
    assert pull("style_local") == pytest.approx(whole, rel=1e-5)  # the whole frame: the same term
    # measured: 1.00, 0.80 and 0.68 of the global term's pull; unscaled 2.0, 6.4 and 11
    ratios = [pull("style_local", columns) / whole for columns in (64, 16, 8)]
    assert all(0.5 < ratio < 1.5 for ratio in ratios), ratios


def test_blotches_are_clusters_of_single_pixels_of_every_hue_not_strokes():
    """The figure the benchmark reads blotches by: strokes of the style's colours (changes in
    runs) and grey grain read low however strong, a small cluster of pixels of random hues reads
    high."""
    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:64, 0:96].astype(np.float32)
    phase = np.sin((x + 0.5 * y) / 3.0)[..., None]  # blue and yellow strokes, hard-edged
    strokes = np.where(phase > 0, [0.1, 0.2, 0.8], [0.9, 0.8, 0.2]).astype(np.float32)
    blotched = strokes.copy()
    blotched[20:32, 40:52] = rng.random((12, 12, 3), dtype=np.float32)  # under 3% of the frame
    grain = strokes.copy()
    grain[20:32, 40:52] = rng.random((12, 12, 1), dtype=np.float32)  # light and dark, no hue
    # measured: 3.3 for the strokes, 5.3 for the grey grain, 51 for the blotch
    assert max(quality.blotches(strokes), quality.blotches(grain)) < 0.25 * quality.blotches(blotched)


def test_boxes_cover_what_entered_a_panning_frame_in_strips():
    region = np.zeros((106, 160), np.float32)
    region[:, -15:] = 1  # entered on the right
    region[-14:, :] = 1  # and at the bottom
    boxes = flowlib.covering_boxes(region, 32)
    covered = np.zeros_like(region)
    for y0, y1, x0, x1 in boxes:
        assert y1 - y0 >= 32 and x1 - x0 >= 32
        covered[y0:y1, x0:x1] += 1
    assert covered[region > 0].min() == 1 and covered.max() == 1  # all of it, once
    assert covered.mean() < 0.5  # one box would be the whole frame
    assert flowlib.covering_boxes(np.zeros((8, 8), np.float32), 32) == []


OCCLUSION = dict(count=10, height=80, width=120, side=20, step=6)


@pytest.fixture(scope="module")
def occlusion(tmp_path_factory):
    """The cat photo, still, a flat square passing in front of it left to right."""
    import cv2

    o = OCCLUSION
    photo = cv2.cvtColor(cv2.imread(str(SAMPLES / "cat.jpg")), cv2.COLOR_BGR2RGB)
    scene = cv2.resize(photo, (o["width"], o["width"] * photo.shape[0] // photo.shape[1]),
                       interpolation=cv2.INTER_AREA)[:o["height"]]
    frames = []
    for t in range(o["count"]):
        frame = scene.copy()
        x = 10 + o["step"] * t
        frame[o["height"] // 3:o["height"] // 3 + o["side"], x:x + o["side"]] = (220, 40, 40)
        frames.append(frame)
    folder = tmp_path_factory.mktemp("occlusion")
    return folder, write_clip(folder / "occlusion.mp4", frames)


def test_what_an_occluder_uncovers_is_painted_like_a_first_frame(occlusion):
    style_path = SAMPLES / "swirls.png"
    probe = quality.probe_network()
    grams = quality.probe_grams(probe, images.load(style_path))
    last = {name: stylized(occlusion, style_path, name, extra)[-1]
            for name, extra in (("new", ["--new-iterations", "15"]), ("off", []))}
    last["fresh"] = last_frame_alone(*occlusion, style_path, OCCLUSION["count"])
    o = OCCLUSION
    now = 10 + o["step"] * (o["count"] - 1)  # the square's left edge in the last frame
    uncovered = (..., slice(o["height"] // 3, o["height"] // 3 + o["side"]), slice(10, now))
    distance = {name: quality.style_distance(probe, images.to_tensor(frame)[uncovered], grams)
                for name, frame in last.items()}
    # measured: 1.38x the fresh frame's with --new-iterations 15, 1.58x without (2.0: the issue's
    # low-budget bound; with the inpainted fill of before --fill transfer, 1.69x and 2.18x)
    assert distance["new"] <= 2.0 * distance["fresh"], distance
    assert distance["off"] > 1.1 * distance["new"], distance
