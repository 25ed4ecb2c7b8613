import torch

from nstvideo.config import OptimConfig
from nstvideo.optim.engine import Progress, autograd_evaluator, optimize
from nstvideo.network.objective import StyleObjective
from nstvideo.still.stylize import stylize_image


def _objective(network, content, style, **weights):
    defaults = dict(content_weight=1.0, style_weight=1000.0, tv_weight=10.0)
    defaults.update(weights)
    return StyleObjective(network, content_layers=["relu4_2"],
                          style_layers=["relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1"],
                          content=content, styles=[style], **defaults)


def test_both_optimizers_reduce_the_loss_and_keep_pixels_valid(network):
    torch.manual_seed(0)
    content, style = torch.rand(1, 3, 48, 48), torch.rand(1, 3, 64, 64)
    objective = _objective(network, content, style)
    for name in ("lbfgs", "adam"):
        config = OptimConfig(optimizer=name, iterations=15, tolerance=0)
        result = optimize(content, autograd_evaluator(objective), config)
        assert result.history[-1]["total"] < 0.5 * result.history[0]["total"], name
        assert result.canvas.min() >= 0 and result.canvas.max() <= 1
        assert result.iterations_run == 15


def test_progress_events_are_emitted_every_iteration(network):
    events: list[Progress] = []
    content = torch.rand(1, 3, 32, 32)
    objective = _objective(network, content, torch.rand(1, 3, 32, 32))
    optimize(content, autograd_evaluator(objective), OptimConfig(iterations=5, tolerance=0),
             callbacks=[events.append])
    assert [e.iteration for e in events] == [1, 2, 3, 4, 5]
    assert set(events[0].losses) >= {"content", "style", "tv", "total"}


def test_relative_tolerance_stops_early(network):
    image = torch.rand(1, 3, 32, 32)
    objective = _objective(network, image, image, tv_weight=0.0)  # already optimal: loss ~ 0
    config = OptimConfig(optimizer="adam", lr=1e-6, iterations=200, tolerance=1e-2,
                         tolerance_every=10)
    result = optimize(image, autograd_evaluator(objective), config)
    assert result.stopped_early and result.iterations_run < 200


def test_same_seed_same_output_other_seed_differs(network, small_config):
    style = torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    config = small_config.replace(schedule={"init": "noise", "size": 48, "min_scale": 48},
                                  optim={"iterations": 4})
    a = stylize_image(None, [style], config, network=network).image
    b = stylize_image(None, [style], config, network=network).image
    c = stylize_image(None, [style], config.replace(schedule={"seed": 7}), network=network).image
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


def test_coarse_to_fine_runs_each_scale_from_the_previous(network, small_config):
    content = torch.rand(1, 3, 60, 80)
    config = small_config.replace(schedule={"size": 80, "min_scale": 20}, optim={"iterations": 3})
    result = stylize_image(content, [torch.rand(1, 3, 64, 64)], config, network=network)
    # 15x20 is below relu5_1's stride of 16 px, so the coarsest scale is left out
    assert [(r.step.height, r.step.width) for r in result.scales] == [(30, 40), (60, 80)]
    assert result.image.shape == (1, 3, 60, 80)


def test_style_blend_weights_matter(network, small_config):
    content = torch.rand(1, 3, 32, 32)
    red = torch.zeros(1, 3, 32, 32)
    red[:, 0] = 1
    blue = torch.zeros(1, 3, 32, 32)
    blue[:, 2] = 1
    config = small_config.replace(schedule={"size": 32, "min_scale": 32},
                                  optim={"iterations": 20}, loss={"content_weight": 0.0})
    mostly_red = stylize_image(content, [red, blue], config.replace(loss={"style_weights": (0.9, 0.1)}),
                               network=network).image
    mostly_blue = stylize_image(content, [red, blue], config.replace(loss={"style_weights": (0.1, 0.9)}),
                                network=network).image
    assert mostly_red[:, 0].mean() - mostly_red[:, 2].mean() > mostly_blue[:, 0].mean() - mostly_blue[:, 2].mean()


def test_auto_precision_is_concrete_per_device():
    from nstvideo.runtime import cpu_has_native_bf16, resolve_precision

    assert resolve_precision("auto", torch.device("cpu")) == ("bf16" if cpu_has_native_bf16() else "fp32")
    assert resolve_precision("auto", torch.device("cuda")) == "tf32"
    assert resolve_precision("fp32", torch.device("cpu")) == "fp32"


def test_targets_follow_the_network_to_its_device():
    """Content and style images may sit on the host while the network is on a GPU: the targets
    are computed on the network's device (checked here with the meta device, CPU-only)."""
    from nstvideo.network.features import VGGFeatures
    from nstvideo.network.objective import StyleObjective

    network = VGGFeatures("vgg19", ["relu1_1", "relu2_1"]).to("meta")
    objective = StyleObjective(network, content_layers=["relu2_1"], style_layers=["relu1_1"],
                               content=torch.rand(1, 3, 16, 16), styles=[torch.rand(1, 3, 16, 16)])
    assert objective.style_losses["relu1_1"].target.device.type == "meta"
    assert objective.content_losses["relu2_1"].target.device.type == "meta"
