import torch

from nstvideo.network.losses import (ContentLoss, StyleLoss, content_loss, energy, gram, gram_matrix, style_loss,
                             temporal_loss, tv_loss)


def test_gram_formula():
    f = torch.randn(1, 4, 3, 5)
    flat = f.reshape(4, 15)
    torch.testing.assert_close(gram(f)[0], flat @ flat.T / (4 * 3 * 5))


def test_gram_backward_matches_autograd():
    f = torch.randn(2, 6, 5, 7, dtype=torch.float64, requires_grad=True)
    upstream = torch.randn(2, 6, 6, dtype=torch.float64)
    (gram(f) * upstream).sum().backward()
    ours = f.grad.clone()
    f.grad = None
    flat = f.reshape(2, 6, 35)
    ((flat @ flat.transpose(1, 2) / (6 * 35)) * upstream).sum().backward()
    torch.testing.assert_close(ours, f.grad)
    flat64 = torch.randn(1, 4, 9, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda x: gram_matrix(x, 0.1), (flat64,))


def test_gram_gradient_keeps_the_channels_last_layout():
    """The gradient comes back in the features' own layout (mixed layouts are slow) and equal."""
    base = torch.randn(1, 6, 5, 7, dtype=torch.float64)
    upstream = torch.randn(1, 6, 6, dtype=torch.float64)
    grads = []
    for fmt in (torch.contiguous_format, torch.channels_last):
        f = base.clone().contiguous(memory_format=fmt).requires_grad_(True)
        (gram(f) * upstream).sum().backward()
        assert f.grad.is_contiguous(memory_format=fmt)
        grads.append(f.grad)
    torch.testing.assert_close(grads[0], grads[1])


def test_bf16_gram_is_fp32_and_close_with_a_bf16_gradient():
    base = torch.rand(1, 16, 12, 10)
    upstream = torch.randn(1, 16, 16)
    f32 = base.clone().requires_grad_(True)
    f16 = base.bfloat16().requires_grad_(True)
    g32, g16 = gram(f32), gram(f16)
    assert g16.dtype == torch.float32
    torch.testing.assert_close(g16, gram(f16.detach().float()), rtol=1e-2, atol=1e-4)
    (g32 * upstream).sum().backward()
    (g16 * upstream).sum().backward()
    assert f16.grad.dtype == torch.bfloat16
    assert float((f16.grad.float() - f32.grad).norm() / f32.grad.norm()) < 1e-2


def test_gram_statistics_add_up_over_blocks():
    """Per-block F Fᵀ summed equals the whole image's: what exact tiling relies on."""
    f = torch.randn(1, 8, 6, 10)
    left, right = f[..., :4], f[..., 4:]
    parts = gram(left) * (8 * 6 * 4) + gram(right) * (8 * 6 * 6)
    torch.testing.assert_close(parts / (8 * 6 * 10), gram(f))


def test_modules_agree_with_functions():
    target, x = torch.randn(1, 8, 5, 5), torch.randn(1, 8, 5, 5)
    torch.testing.assert_close(ContentLoss(target)(x), content_loss(x, target, energy(target)))
    g = gram(target)
    torch.testing.assert_close(StyleLoss(g)(x), style_loss(gram(x), g, energy(g)))


def test_losses_are_zero_at_target_and_relative():
    target = torch.randn(1, 8, 5, 5)
    assert float(ContentLoss(target)(target)) == 0.0
    assert float(StyleLoss(gram(target))(target)) == 0.0
    # relative: scaling features and target together leaves the loss unchanged
    x = torch.randn(1, 8, 5, 5)
    torch.testing.assert_close(ContentLoss(3 * target)(3 * x), ContentLoss(target)(x))


def test_style_loss_is_size_invariant_for_a_repeated_texture():
    tile = torch.randn(1, 8, 6, 6)
    big = tile.repeat(1, 1, 3, 3)
    torch.testing.assert_close(gram(big), gram(tile))


def test_tv_and_temporal():
    flat = torch.full((1, 3, 8, 8), 0.3)
    assert float(tv_loss(flat)) == 0.0
    ramp = torch.linspace(0, 1, 8).view(1, 1, 1, 8).expand(1, 3, 8, 8)
    torch.testing.assert_close(tv_loss(ramp), torch.tensor((1 / 7) ** 2))
    x, w = torch.zeros(1, 3, 4, 4), torch.ones(1, 3, 4, 4)
    mask = torch.zeros(1, 1, 4, 4)
    mask[..., :2, :] = 1
    assert float(temporal_loss(x, w, mask)) == 0.5


# --- the README's formulas, by value, on tensors small enough to work out by hand ---------------

def test_gram_by_hand():
    # F = [[1, 2], [3, 4]]: C = 2 channels, H·W = 1·2 positions; F Fᵀ = [[5, 11], [11, 25]], / 4
    f = torch.tensor([[1.0, 2.0], [3.0, 4.0]]).view(1, 2, 1, 2)
    torch.testing.assert_close(gram(f)[0], torch.tensor([[1.25, 2.75], [2.75, 6.25]]))


def test_content_loss_by_hand():
    # mean((F − Fc)²) = (1 + 0 + 1 + 0) / 4 = 0.5; mean(Fc²) = (0 + 4 + 4 + 16) / 4 = 6
    f = torch.tensor([1.0, 2.0, 3.0, 4.0]).view(1, 1, 2, 2)
    target = torch.tensor([0.0, 2.0, 2.0, 4.0]).view(1, 1, 2, 2)
    torch.testing.assert_close(ContentLoss(target)(f), torch.tensor(0.5 / 6))
    torch.testing.assert_close(energy(target), torch.tensor(6.0))


def test_style_loss_by_hand():
    # G − Gs = [[-1, 0], [0, 1]]: mean of squares 0.5; mean(Gs²) = 4 / 4 = 1
    g = torch.eye(2)[None]
    target = torch.tensor([[2.0, 0.0], [0.0, 0.0]])[None]
    torch.testing.assert_close(style_loss(g, target, energy(target)), torch.tensor(0.5))
    # through the module, from features whose Gram is g: F = 2·I (C = 2, H·W = 2: F Fᵀ / 4 = I)
    features = (2 * torch.eye(2)).view(1, 2, 1, 2)
    torch.testing.assert_close(StyleLoss(target)(features), torch.tensor(0.5))


def test_tv_by_hand():
    # x = [[0, 1], [2, 4]]: down differences 2, 3 (mean of squares 6.5), right 1, 2 (2.5)
    x = torch.tensor([[0.0, 1.0], [2.0, 4.0]]).view(1, 1, 2, 2)
    torch.testing.assert_close(tv_loss(x), torch.tensor(9.0))
    # only one direction varies: only that mean counts
    torch.testing.assert_close(tv_loss(torch.tensor([[0.0, 0.0], [3.0, 3.0]]).view(1, 1, 2, 2)),
                               torch.tensor(9.0))
    torch.testing.assert_close(tv_loss(torch.tensor([[0.0, 3.0], [0.0, 3.0]]).view(1, 1, 2, 2)),
                               torch.tensor(9.0))


def test_temporal_by_hand():
    # the mask covers one pixel of four, in all three channels: 3 of 12 squared differences of 2
    x, warped = torch.ones(1, 3, 2, 2), torch.full((1, 3, 2, 2), 3.0)
    mask = torch.tensor([[1.0, 0.0], [0.0, 0.0]]).view(1, 1, 2, 2)
    torch.testing.assert_close(temporal_loss(x, warped, mask), torch.tensor(3 * 4.0 / 12))


def test_an_empty_target_has_no_division_by_zero():
    zeros = torch.zeros(1, 2, 2, 2)
    value = ContentLoss(zeros)(torch.ones(1, 2, 2, 2))
    assert torch.isfinite(value) and float(value) > 1e6


def test_every_term_holds_across_sizes():
    """What lets the defaults work at 256 px and at 4K: the same picture at twice the size (here,
    features and images tiled 2x2) gives the same content, style and TV values."""
    generator = torch.Generator().manual_seed(0)
    f, target = torch.randn(1, 4, 5, 6, generator=generator), torch.randn(1, 4, 5, 6, generator=generator)
    big_f, big_target = f.repeat(1, 1, 2, 2), target.repeat(1, 1, 2, 2)
    torch.testing.assert_close(ContentLoss(big_target)(big_f), ContentLoss(target)(f))
    torch.testing.assert_close(StyleLoss(gram(big_target))(big_f), StyleLoss(gram(target))(f))
    # a periodic image (period 2 px): tiling it adds no new kind of neighbour
    checker = torch.tensor([[0.0, 1.0], [1.0, 0.0]]).repeat(4, 4).view(1, 1, 8, 8)
    torch.testing.assert_close(tv_loss(checker.repeat(1, 1, 4, 4)), tv_loss(checker))
    # and the style term is relative: brighter features and target together, the same value
    torch.testing.assert_close(StyleLoss(gram(3 * target))(3 * f), StyleLoss(gram(target))(f))


def test_the_objective_is_the_weighted_sum_the_readme_gives():
    """total = content_weight·content + style_weight·Σ w_l·style_l + tv_weight·tv
    (+ temporal_weight·temporal for a video frame), with
    --layer-weights scaled to sum 1, styles blended by --style-weights scaled to sum 1, and the
    content averaged over the content layers."""
    from nstvideo.network.features import VGGFeatures
    from nstvideo.network.objective import StyleObjective, extract

    network = VGGFeatures("vgg19", ("relu1_1", "relu2_1"))
    generator = torch.Generator().manual_seed(1)
    content, style_a, style_b, canvas = (torch.rand(1, 3, 24, 32, generator=generator) for _ in range(4))
    objective = StyleObjective(network, content_layers=("relu1_1", "relu2_1"),
                               style_layers=("relu1_1", "relu2_1"), content=content,
                               styles=[style_a, style_b], style_blend=(3, 1), layer_weights=(6, 2),
                               content_weight=2.0, style_weight=50.0, tv_weight=7.0)
    warped = torch.rand(1, 3, 24, 32, generator=generator)
    mask = (torch.rand(1, 1, 24, 32, generator=generator) > 0.5).float()
    objective.set_temporal(warped, mask, 30.0)
    terms = objective(canvas)
    x, c, a, b = (extract(network, image) for image in (canvas, content, style_a, style_b))
    layers = ("relu1_1", "relu2_1")
    content_value = sum(content_loss(x[l], c[l], energy(c[l])) for l in layers) / 2
    blended = {l: 0.75 * gram(a[l]) + 0.25 * gram(b[l]) for l in layers}
    style_value = (0.75 * style_loss(gram(x["relu1_1"]), blended["relu1_1"], energy(blended["relu1_1"]))
                   + 0.25 * style_loss(gram(x["relu2_1"]), blended["relu2_1"], energy(blended["relu2_1"])))
    expected = {"content": 2.0 * content_value, "style": 50.0 * style_value,
                "tv": 7.0 * tv_loss(canvas), "temporal": 30.0 * temporal_loss(canvas, warped, mask)}
    for name, value in expected.items():
        torch.testing.assert_close(terms[name], value, rtol=1e-5, atol=0), name
    torch.testing.assert_close(terms["total"], sum(expected.values()), rtol=1e-5, atol=0)
