"""Feed-forward style networks: the transformer and its file formats, training (loss, resume),
painting in tiles, ``stylize --net`` for stills and video, and the hybrid ``--init net:``.

Random-weight VGG, tiny images and few steps: seconds on a CPU.
"""

from __future__ import annotations

import dataclasses
from fractions import Fraction
from pathlib import Path

import cv2
import pytest
import torch
import torch.nn.functional as F

from conftest import gradient_image, stripes_image
from nstvideo import images
from nstvideo.cli.main import main
from nstvideo.config import StylizeConfig, TrainConfig
from nstvideo.network import netfile
from nstvideo.network.objective import blended_grams
from nstvideo.network.transformer import RESIDUAL_BLOCKS, new_transformer
from nstvideo.optim.training import Trainer
from nstvideo.still.painting import axis_weights, paint, tile_spans
from nstvideo.video import io as video

TRAIN = ["--weights", "random", "--device", "cpu", "--train-size", "32", "--batch-size", "1",
         "--quiet"]
STYLE_LAYERS = ("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1")


def run(capsys, *argv):
    code = main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.err


def one_line_error(code, err):
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("nstvideo: error:") and "Traceback" not in err, err
    return lines[0]


@pytest.fixture
def image_folder(tmp_path) -> Path:
    folder = tmp_path / "photos"
    folder.mkdir()
    for seed in range(2):
        cv2.imwrite(str(folder / f"photo{seed}.png"), gradient_image(40, 56, seed=seed))
    return folder


# --- the network and its files ---------------------------------------------------------------

def fast_neural_style_state(generator: torch.Generator) -> dict[str, torch.Tensor]:
    """A state dict with pytorch/examples fast_neural_style's names and shapes, including the
    running statistics old InstanceNorm checkpoints carry."""
    def conv(name, cin, cout, k):
        return {f"{name}.conv2d.weight": torch.randn(cout, cin, k, k, generator=generator) * (2 / (cin * k * k)) ** 0.5,
                f"{name}.conv2d.bias": torch.randn(cout, generator=generator) * 0.1}

    def norm(name, c):
        return {f"{name}.weight": 1 + 0.1 * torch.randn(c, generator=generator),
                f"{name}.bias": 0.1 * torch.randn(c, generator=generator),
                f"{name}.running_mean": torch.randn(c), f"{name}.running_var": torch.rand(c)}

    state = {**conv("conv1", 3, 32, 9), **norm("in1", 32), **conv("conv2", 32, 64, 3), **norm("in2", 64),
             **conv("conv3", 64, 128, 3), **norm("in3", 128)}
    for block in range(1, RESIDUAL_BLOCKS + 1):
        state.update({**conv(f"res{block}.conv1", 128, 128, 3), **norm(f"res{block}.in1", 128),
                      **conv(f"res{block}.conv2", 128, 128, 3), **norm(f"res{block}.in2", 128)})
    state.update({**conv("deconv1", 128, 64, 3), **norm("in4", 64), **conv("deconv2", 64, 32, 3),
                  **norm("in5", 32), **conv("deconv3", 32, 3, 9)})
    return state


def reference_fast_neural_style(state, x255: torch.Tensor) -> torch.Tensor:
    """Their forward pass written out with torch.nn.functional, on 0..255 pixels."""
    def conv(x, name, stride=1, upsample=False):
        weight = state[f"{name}.conv2d.weight"]
        if upsample:
            x = F.interpolate(x, scale_factor=2, mode="nearest")
        pad = weight.shape[-1] // 2
        return F.conv2d(F.pad(x, [pad] * 4, mode="reflect"), weight, state[f"{name}.conv2d.bias"], stride)

    def norm(x, name):
        return F.instance_norm(x, weight=state[f"{name}.weight"], bias=state[f"{name}.bias"], eps=1e-5)

    y = F.relu(norm(conv(x255, "conv1"), "in1"))
    y = F.relu(norm(conv(y, "conv2", 2), "in2"))
    y = F.relu(norm(conv(y, "conv3", 2), "in3"))
    for block in range(1, RESIDUAL_BLOCKS + 1):
        r = F.relu(norm(conv(y, f"res{block}.conv1"), f"res{block}.in1"))
        y = y + norm(conv(r, f"res{block}.conv2"), f"res{block}.in2")
    y = F.relu(norm(conv(y, "deconv1", upsample=True), "in4"))
    y = F.relu(norm(conv(y, "deconv2", upsample=True), "in5"))
    return conv(y, "deconv3")


def test_fast_neural_style_pth_loads_and_matches_their_network(tmp_path):
    generator = torch.Generator().manual_seed(1)
    state = fast_neural_style_state(generator)
    path = tmp_path / "candy.pth"
    torch.save(state, path)
    loaded = netfile.load(path)
    image = torch.rand(1, 3, 32, 48, generator=generator)
    expected = reference_fast_neural_style(state, image * 255) / 255
    with torch.no_grad():
        got = loaded.net(image)
    assert got.shape == image.shape
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-4)
    assert loaded.header["origin"] == "pytorch/examples fast_neural_style"
    with torch.no_grad():  # sides that are not multiples of 4: the same size comes back
        assert loaded.net(torch.rand(1, 3, 30, 45)).shape == (1, 3, 30, 45)


def test_saved_network_reloads_with_identical_output(tmp_path):
    net = new_transformer(seed=3).eval()
    path = tmp_path / "net.nstnet"
    images.atomic_write_bytes(path, netfile.to_bytes(net, {"styles": [{"name": "s.png"}]}))
    loaded = netfile.load(path)
    image = torch.rand(1, 3, 36, 44, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.equal(loaded.net(image), net(image))
    assert loaded.header["architecture"]["output"] == "tanh"
    assert not any(p.requires_grad for p in loaded.net.parameters())


# --- painting in tiles -------------------------------------------------------------------------

@pytest.mark.parametrize("length,tile,overlap", [(100, 40, 8), (171, 90, 10), (64, 64, 8), (257, 64, 16)])
def test_tile_spans_cover_with_overlap(length, tile, overlap):
    spans = tile_spans(length, tile, overlap)
    assert spans[0][0] == 0 and spans[-1][1] == length
    assert all(end - start <= tile for start, end in spans)
    assert all(a[1] - b[0] >= overlap for a, b in zip(spans, spans[1:]) if len(spans) > 1)
    for (start, end), weight in zip(spans, axis_weights(length, spans)):
        assert weight.shape == (end - start,) and (weight > 0).all() and (weight <= 1).all()


def test_blend_weights_ramp_across_each_overlap():
    spans = tile_spans(100, 40, 8)
    assert spans == [(0, 40), (30, 70), (60, 100)]
    first, middle, last = axis_weights(100, spans)
    falling = torch.arange(9.5, 0, -1) / 10  # 0.95 .. 0.05 at pixel centres
    torch.testing.assert_close(first, torch.cat([torch.ones(30), falling]))
    torch.testing.assert_close(middle, torch.cat([falling.flip(0), torch.ones(20), falling]))
    torch.testing.assert_close(last, torch.cat([falling.flip(0), torch.ones(30)]))


def test_tiled_painting_blends_to_a_partition_of_unity():
    identity = torch.nn.Conv2d(3, 3, 1, bias=False)
    with torch.no_grad():
        identity.weight.copy_(torch.eye(3)[:, :, None, None])
    # 171 px in 90 px tiles: the first and third tile overlap too, where ramps alone sum past 1
    image = torch.rand(1, 3, 70, 171, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(paint(identity, image, tile=90, overlap=10), image)


# --- training ----------------------------------------------------------------------------------

def small_trainer(network, seed=0, **train) -> Trainer:
    config = StylizeConfig()
    generator = torch.Generator().manual_seed(seed)
    photos = [images.to_tensor(cv2.cvtColor(gradient_image(40, 48, seed=s), cv2.COLOR_BGR2RGB) / 255.0)
              for s in range(2)]
    style = images.to_tensor(stripes_image(32) / 255.0)
    grams = blended_grams(network, [style], [1.0], STYLE_LAYERS)
    settings = dataclasses.replace(TrainConfig(), train_size=32, batch_size=2, **train)
    return Trainer(new_transformer(seed), network, grams, photos, config.loss, settings, seed=seed), generator


def test_a_few_training_steps_lower_the_loss(network):
    trainer, _ = small_trainer(network)
    fixed = torch.cat([trainer.images[0][..., :32, :32], trainer.images[1][..., 8:40, 8:40]])

    def loss() -> float:
        with torch.no_grad():
            return float(trainer.objective(fixed, trainer.net(fixed))["total"])

    before = loss()
    trainer.run(6)
    assert len(trainer.history) == 6
    assert loss() < 0.7 * before


def train(capsys, style_path, folder, output, *extra):
    return run(capsys, "train", "--style", style_path, "--images", folder, "-o", output, *TRAIN, *extra)


def test_interrupted_training_resumes_step_for_step(tmp_path, capsys, style_path, image_folder,
                                                    monkeypatch):
    whole = tmp_path / "whole.nstnet"
    assert train(capsys, style_path, image_folder, whole, "--steps", "4")[0] == 0

    real_step = Trainer.train_step
    calls = {"n": 0}

    def interrupt_third(self):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return real_step(self)

    monkeypatch.setattr(Trainer, "train_step", interrupt_third)
    resumed = tmp_path / "resumed.nstnet"
    code, err = train(capsys, style_path, image_folder, resumed, "--steps", "4",
                      "--checkpoint-every", "3")
    assert code == 130 and "step 2 is saved" in err and not resumed.exists()
    monkeypatch.setattr(Trainer, "train_step", real_step)
    code, err = run(capsys, "train", "--style", style_path, "--images", image_folder, "-o", resumed,
                    "--weights", "random", "--device", "cpu", "--train-size", "32",
                    "--batch-size", "1", "--steps", "4", "--checkpoint-every", "3")
    assert code == 0 and "resuming at step 3/4" in err
    a, b = netfile.load(whole), netfile.load(resumed)
    assert a.header["losses"]["curve"] == b.header["losses"]["curve"]
    for key, tensor in a.net.state_dict().items():
        assert torch.equal(tensor, b.net.state_dict()[key]), key
    assert not (tmp_path / "resumed.nstnet.work").exists()


@pytest.fixture(scope="module")
def trained_net(tmp_path_factory):
    """A network trained for a few steps through the command line, and its training folder."""
    root = tmp_path_factory.mktemp("trained")
    folder = root / "photos"
    folder.mkdir()
    for seed in range(2):
        cv2.imwrite(str(folder / f"p{seed}.png"), gradient_image(48, 64, seed=seed))
    style = root / "style.png"
    cv2.imwrite(str(style), stripes_image(64))
    output = root / "stripes.nstnet"
    # 100 crops: the fewest with which the hybrid below wins clearly (random VGG, 64 px)
    code = main([str(a) for a in ("train", "--style", style, "--images", folder, "-o", output, *TRAIN,
                                  "--steps", "50", "--batch-size", "2", "--train-size", "48")])
    assert code == 0
    return output, style


# --- stylize --net -----------------------------------------------------------------------------

def test_stylize_a_still_with_a_network(tmp_path, capsys, trained_net, content_path):
    net, _ = trained_net
    out = tmp_path / "painted.png"
    code, err = run(capsys, "stylize", content_path, "--net", net, "-o", out, "--quiet")
    assert code == 0, err
    assert cv2.imread(str(out)).shape == (48, 64, 3)  # the input's own size without --size
    tiled = tmp_path / "tiled.png"
    assert run(capsys, "stylize", content_path, "--net", net, "-o", tiled, "--tile-size", "40",
               "--quiet")[0] == 0
    whole, blended = cv2.imread(str(out)), cv2.imread(str(tiled))
    # tiles see their own instance-norm statistics, so they differ, but far less than the
    # picture's own contrast (looked at: the same texture, no seam)
    assert cv2.absdiff(whole, blended).mean() < 0.5 * whole.std()


def test_video_through_a_network_keeps_frames_times_and_audio(tmp_path, capsys, trained_net,
                                                             clip_factory):
    net, _ = trained_net
    clip = clip_factory(count=5, height=48, width=64, audio=True)
    out = tmp_path / "painted.mp4"
    code, err = run(capsys, "stylize", clip, "--net", net, "-o", out, "--device", "cpu")
    assert code == 0, err
    source, painted = video.probe(clip), video.probe(out)
    assert (painted.frames, painted.fps, painted.has_audio) == (5, Fraction(24000, 1001), True)
    assert painted.duration == source.duration
    assert not (tmp_path / "painted.mp4.work").exists()


def test_video_through_a_network_resumes_after_ctrl_c(tmp_path, capsys, trained_net, clip_factory,
                                                     monkeypatch):
    from conftest import interrupt_after_saving

    net, _ = trained_net
    clip = clip_factory(count=4, height=48, width=64)
    whole, resumed = tmp_path / "whole.mp4", tmp_path / "resumed.mp4"
    assert run(capsys, "stylize", clip, "--net", net, "-o", whole, "--quiet")[0] == 0
    restore = interrupt_after_saving(monkeypatch, 1)
    code, err = run(capsys, "stylize", clip, "--net", net, "-o", resumed, "--quiet")
    assert code == 130 and "after 2/4 frames" in err and not resumed.exists()
    restore()
    code, err = run(capsys, "stylize", clip, "--net", net, "-o", resumed)
    assert code == 0 and "resuming at frame 3/4" in err
    with video.open_frames(whole) as a, video.open_frames(resumed) as b:
        pairs = list(zip(a, b))
    assert len(pairs) == 4 and all((x == y).all() for x, y in pairs)


def test_bad_inputs_are_one_line_errors(tmp_path, capsys, style_path, image_folder, content_path):
    net = tmp_path / "net.nstnet"
    line = one_line_error(*train(capsys, style_path, tmp_path / "missing", net, "--steps", "1"))
    assert "no such folder" in line
    (tmp_path / "empty").mkdir()
    assert "no images" in one_line_error(*train(capsys, style_path, tmp_path / "empty", net))
    assert ".nstnet" in one_line_error(*train(capsys, style_path, image_folder, tmp_path / "n.pt"))
    corrupt = tmp_path / "corrupt.nstnet"
    corrupt.write_bytes(b"PK\x03\x04 not really a zip")
    line = one_line_error(*run(capsys, "stylize", content_path, "--net", corrupt, "-o",
                               tmp_path / "o.png"))
    assert "corrupt.nstnet" in line and not (tmp_path / "o.png").exists()
    assert "not found" in one_line_error(*run(capsys, "stylize", content_path, "--net",
                                              tmp_path / "none.nstnet"))
    assert "--style" in one_line_error(*run(capsys, "stylize", content_path, "--net", corrupt,
                                            "--style", style_path))
    assert "not found" in one_line_error(*run(
        capsys, "stylize", content_path, "--style", style_path, "--init", "net:" + str(tmp_path / "x"),
        "--weights", "random", "--size", "48", "--iterations", "2", "-o", tmp_path / "h.png"))
    # the workers of --workers build their frames without a network's pass: refused, not ignored
    assert "--workers" in one_line_error(*run(capsys, "stylize", content_path, "--net", corrupt,
                                              "--workers", "2"))
    assert "--workers" in one_line_error(*run(
        capsys, "stylize", content_path, "--style", style_path, "--init", "net:" + str(corrupt),
        "--workers", "2", "--weights", "random"))


# --- the hybrid ----------------------------------------------------------------------------------

def test_hybrid_reaches_content_inits_loss_in_fewer_iterations(trained_net, content_path, network):
    from nstvideo.still.stylize import stylize_image

    net_path, style_path = trained_net
    content, style = images.load(content_path), images.load(style_path)
    config = StylizeConfig().replace(model={"weights": "random", "device": "cpu"},
                                     schedule={"size": 64, "min_scale": 64},
                                     optim={"iterations": 20, "tolerance": 0}, output={"quiet": True})
    from_content = stylize_image(content, [style], config, network=network)
    target = from_content.scales[-1].result.history[-1]["total"]
    painting = paint(netfile.load(net_path).net, content)
    hybrid = stylize_image(content, [style], config.replace(schedule={"init": "net:" + str(net_path)}),
                           network=network, init_image=painting)
    totals = [h["total"] for h in hybrid.scales[-1].result.history]
    assert totals[0] < 0.5 * from_content.scales[-1].result.history[0]["total"]
    reached = next((i + 1 for i, total in enumerate(totals) if total <= target), None)
    assert reached is not None and reached < 20, (totals, target)  # 14 of 20 when written


def test_init_net_starts_stills_and_video_frames_from_the_painting(tmp_path, capsys, trained_net,
                                                                   content_path, clip_factory):
    import json

    net, style = trained_net
    common = ["--style", style, "--weights", "random", "--device", "cpu", "--size", "64", "--quiet"]
    first = {}
    for init in ("content", f"net:{net}"):
        report = tmp_path / "still.json"
        assert run(capsys, "stylize", content_path, "-o", tmp_path / "still.png", "--init", init,
                   "--iterations", "2", "--report", report, *common)[0] == 0
        first[init] = json.loads(report.read_text())["scales"][0]["losses"]["first"]["total"]
    assert first[f"net:{net}"] < 0.5 * first["content"]

    clip = clip_factory(count=2, height=48, width=64, audio=True)
    final = {}
    for init in ("content", f"net:{net}"):
        report = tmp_path / "video.json"
        code, err = run(capsys, "stylize", clip, "-o", tmp_path / "video.mp4", "--init", init,
                        "--iterations", "1", "--first-iterations", "1", "--report", report, *common)
        assert code == 0, err
        frames = json.loads(report.read_text())["frames_this_run"]
        final[init] = [frame["losses"]["total"] for frame in frames]
    assert final[f"net:{net}"][0] < 0.5 * final["content"][0]  # one iteration from the painting
    assert video.probe(tmp_path / "video.mp4").frames == 2
