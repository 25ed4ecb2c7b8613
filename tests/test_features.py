import pytest
import torch
import torchvision

from nstvideo.errors import LayerError, WeightsError
from nstvideo.network.features import VGGFeatures, canonical_layer, layer_table
from nstvideo.network.weights import load_state_dict, locate, resolve


def test_layer_names_accept_paper_conv_and_keras_spellings():
    assert canonical_layer("relu4_2", "vgg19") == "relu4_2"
    assert canonical_layer("conv4_2", "vgg19") == "conv4_2"
    assert canonical_layer("block4_conv2", "vgg19") == "relu4_2"  # Keras convs include the ReLU
    assert canonical_layer("block3_pool", "vgg16") == "pool3"


def test_unknown_layer_suggests_close_match():
    with pytest.raises(LayerError, match="did you mean relu4_2"):
        canonical_layer("relu4_22", "vgg19")
    with pytest.raises(LayerError):
        canonical_layer("relu3_4", "vgg16")  # vgg16 has three convs in block 3


def test_layer_indices_match_torchvision():
    """Our layer order is torchvision's features.N order, so state dicts load as they are."""
    for arch, ctor in (("vgg19", torchvision.models.vgg19), ("vgg16", torchvision.models.vgg16)):
        reference = ctor().features
        table = layer_table(arch)
        assert len(table) == len(reference)
        for info, module in zip(table, reference):
            expected = {"conv": torch.nn.Conv2d, "relu": torch.nn.ReLU, "pool": torch.nn.MaxPool2d}
            assert isinstance(module, expected[info.kind]), info.name


def test_truncated_after_deepest_layer_and_frozen():
    net = VGGFeatures("vgg19", ["relu3_1", "relu1_1"])
    assert net.table[-1].name == "relu3_1"
    assert all(not p.requires_grad for p in net.parameters())
    assert not net.training
    out = net(torch.rand(1, 3, 32, 32))
    assert set(out) == {"relu1_1", "relu3_1"}
    assert out["relu3_1"].shape == (1, 256, 8, 8)
    assert net.stride == 4


def test_random_init_is_seeded_and_keeps_signal_to_relu5_1():
    a = VGGFeatures("vgg19", ["relu1_1", "relu5_1"])
    b = VGGFeatures("vgg19", ["relu1_1", "relu5_1"])
    x = torch.rand(1, 3, 64, 64)
    fa, fb = a(x), b(x)
    assert torch.equal(fa["relu5_1"], fb["relu5_1"])
    # He init: the deepest layer's activations are of the same order as the first's
    ratio = fa["relu5_1"].pow(2).mean().sqrt() / fa["relu1_1"].pow(2).mean().sqrt()
    assert 0.05 < float(ratio) < 20


def test_weights_file_loads_through_the_real_path(weights_file):
    state, source = resolve(str(weights_file), "vgg19")
    assert source.kind == "file"
    net = VGGFeatures("vgg19", ["relu5_1"], state_dict=state)
    reference = torchvision.models.vgg19()
    reference.load_state_dict(torch.load(weights_file, weights_only=True))
    x = torch.rand(1, 3, 48, 48)
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    expected = reference.features[:30]((x - mean) / std)
    torch.testing.assert_close(net(x)["relu5_1"], expected, rtol=1e-4, atol=1e-5)


def test_bf16_weights_are_cast_once_and_follow_weight_changes():
    net = VGGFeatures("vgg19", ["relu2_1"])
    x = torch.rand(1, 3, 32, 32)
    reference = net(x)["relu2_1"]
    with torch.autocast("cpu", dtype=torch.bfloat16):
        first = net(x)["relu2_1"]
        cast = net.body[0].__dict__["_cast"][1]
        again = net(x)["relu2_1"]
        assert net.body[0].__dict__["_cast"][1] is cast  # reused, not cast again
    assert first.dtype == torch.bfloat16
    assert relative_error(first, reference) < 0.02
    torch.testing.assert_close(again, first)
    with torch.no_grad():
        net.body[0].weight.mul_(2)  # a changed weight must not be served from the old copy
    with torch.autocast("cpu", dtype=torch.bfloat16):
        changed = net(x)["relu2_1"]
    assert relative_error(changed, net(x)["relu2_1"]) < 0.02
    assert relative_error(changed, first) > 0.5


def relative_error(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.float() - b.float()).norm() / b.float().norm())


def test_requested_conv_output_is_not_overwritten_by_its_relu():
    net = VGGFeatures("vgg19", ["conv1_2", "relu1_2"])
    out = net(torch.rand(1, 3, 16, 16))
    assert (out["conv1_2"] < 0).any()
    torch.testing.assert_close(out["relu1_2"], out["conv1_2"].clamp_min(0))


def test_features_only_state_dict_also_loads(tmp_path):
    features = torchvision.models.vgg16().features.state_dict()
    path = tmp_path / "features.pth"
    torch.save(features, path)
    net = VGGFeatures("vgg16", ["relu2_1"], state_dict=load_state_dict(str(path)))
    torch.testing.assert_close(net.body[0].weight, features["0.weight"])


def test_not_a_state_dict_is_a_weights_error(tmp_path):
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"definitely not a checkpoint")
    with pytest.raises(WeightsError, match="not a PyTorch state dict"):
        resolve(str(junk), "vgg19")
    wrong = tmp_path / "tensor.pth"
    torch.save(torch.zeros(3), wrong)
    with pytest.raises(WeightsError, match="no state dict"):
        resolve(str(wrong), "vgg19")
    vgg16 = tmp_path / "vgg16.pth"
    torch.save(torchvision.models.vgg16().features.state_dict(), vgg16)
    state, _ = resolve(str(vgg16), "vgg19")
    with pytest.raises(WeightsError, match="not a torchvision vgg19"):
        VGGFeatures("vgg19", ["relu5_1"], state_dict=state)


def test_missing_weights_file_and_env(tmp_path, monkeypatch):
    with pytest.raises(WeightsError, match="does not exist"):
        locate(str(tmp_path / "nope.pth"), "vgg19")
    monkeypatch.setenv("NSTVIDEO_WEIGHTS", str(tmp_path / "nope.pth"))
    with pytest.raises(WeightsError, match="NSTVIDEO_WEIGHTS"):
        locate(None, "vgg19")


def test_hub_cache_is_found(tmp_path, monkeypatch, weights_file):
    monkeypatch.delenv("NSTVIDEO_WEIGHTS", raising=False)
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    (tmp_path / "checkpoints").mkdir()
    (tmp_path / "checkpoints" / "vgg19-dcbb9e9d.pth").symlink_to(weights_file)
    source = locate(None, "vgg19")
    assert source.kind == "hub-cache"


def test_offline_download_failure_names_the_file(tmp_path, monkeypatch):
    monkeypatch.delenv("NSTVIDEO_WEIGHTS", raising=False)
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))

    def offline(*args, **kwargs):
        raise OSError("network is unreachable")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", offline)
    with pytest.raises(WeightsError, match="vgg19-dcbb9e9d.pth.*checkpoints"):
        resolve(None, "vgg19")


def test_avg_pooling():
    net = VGGFeatures("vgg19", ["relu2_1"], pooling="avg")
    assert isinstance(net.body[4], torch.nn.AvgPool2d)
