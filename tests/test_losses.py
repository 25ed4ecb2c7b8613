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
