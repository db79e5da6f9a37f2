"""AerOSeg's blocks against slow, plain re-implementations (loops over windows, classes, pixels)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from engine.methods.aeroseg.class_attention import ClassRefinement, linear_attention
from engine.methods.aeroseg.clip_features import dense_clip, rotated_dense_clip, value_path_block
from engine.methods.aeroseg.correlation import correlation_volume
from engine.methods.aeroseg.sam_guidance import sam_block_features
from engine.methods.aeroseg.spatial import GuidedSwinBlock
from tests.engine.aeroseg_models import tiny_aeroseg

pytestmark = pytest.mark.usefixtures("one_thread")


def swin_reference(block: GuidedSwinBlock, x: torch.Tensor, guidance: torch.Tensor) -> torch.Tensor:
    """One guided Swin block, window by window, token by token, with the shift done by index arithmetic:
    a token attends to another of its (rolled) window iff both or neither were wrapped by the roll."""
    n_items, height, width, dim = x.shape
    window, shift, attention = block.window, block.shift, block.attention
    heads, head_dim = attention.heads, dim // attention.heads
    y = block.norm1(x)
    out = torch.zeros_like(x)
    for n in range(n_items):
        for wi in range(height // window):
            for wj in range(width // window):
                cells = [(wi * window + a, wj * window + b) for a in range(window) for b in range(window)]
                source = [((i + shift) % height, (j + shift) % width) for i, j in cells]
                wrapped = [
                    (i >= height - shift, j >= width - shift) if shift else (False, False) for i, j in cells
                ]
                feats = torch.stack([y[n, i, j] for i, j in source])
                guide = torch.stack([guidance[n, i, j] for i, j in source])
                joined = torch.cat([feats, guide], dim=-1)
                q, k, v = attention.q(joined), attention.k(joined), attention.v(feats)
                mixed = torch.zeros_like(feats)
                for h in range(heads):
                    part = slice(h * head_dim, (h + 1) * head_dim)
                    for a in range(len(cells)):
                        allowed = [b for b in range(len(cells)) if wrapped[a] == wrapped[b]]
                        logits = torch.stack([q[a, part] @ k[b, part] for b in allowed]) * head_dim**-0.5
                        weights = torch.softmax(logits, dim=0)
                        mixed[a, part] = sum(w * v[b, part] for w, b in zip(weights, allowed))
                result = attention.proj(mixed)
                for index, (i, j) in enumerate(source):
                    out[n, i, j] = result[index]
    x = x + out
    return x + block.mlp(block.norm2(x))


@pytest.mark.parametrize("shift", [0, 2])
def test_guided_swin_block_matches_a_per_window_loop(shift):
    torch.manual_seed(1)
    block = GuidedSwinBlock(dim=8, guidance=4, heads=2, window=4, shift=shift, mlp_ratio=2.0).eval()
    x, guidance = torch.randn(2, 8, 8, 8), torch.randn(2, 8, 8, 4)
    with torch.no_grad():
        torch.testing.assert_close(
            block(x, guidance), swin_reference(block, x, guidance), atol=1e-5, rtol=1e-5
        )


def test_shifted_windows_differ_from_unshifted_ones():
    """The mask and roll change the result (a test that would pass with shift ignored is no test)."""
    torch.manual_seed(2)
    plain = GuidedSwinBlock(8, 4, 2, 4, 0, 2.0).eval()
    shifted = GuidedSwinBlock(8, 4, 2, 4, 2, 2.0).eval()
    shifted.load_state_dict(plain.state_dict())
    x, guidance = torch.randn(1, 8, 8, 8), torch.randn(1, 8, 8, 4)
    with torch.no_grad():
        assert (plain(x, guidance) - shifted(x, guidance)).abs().max() > 1e-3


def test_linear_attention_matches_a_per_query_loop():
    torch.manual_seed(3)
    q, k, v = torch.randn(3, 2, 5, 4), torch.randn(3, 2, 7, 4), torch.randn(3, 2, 7, 6)
    expected = torch.zeros(3, 2, 5, 6)
    for n in range(3):
        for h in range(2):
            for query in range(5):
                phi_q = F.elu(q[n, h, query]) + 1
                weights = torch.stack([phi_q @ (F.elu(k[n, h, s]) + 1) for s in range(7)])
                expected[n, h, query] = (weights[:, None] * v[n, h]).sum(0) / (weights.sum() + 1e-6)
    torch.testing.assert_close(linear_attention(q, k, v), expected, atol=1e-5, rtol=1e-5)


def test_class_refinement_matches_a_per_class_loop_with_padding():
    torch.manual_seed(4)
    refine = ClassRefinement(dim=8, guidance=4, heads=2, mlp_ratio=2.0, pad=6, pool=2).eval()
    torch.nn.init.normal_(refine.pad_token)
    x, text = torch.randn(1, 8, 3, 2, 2), torch.randn(1, 3, 4)
    block = refine.block
    expected = torch.zeros_like(x)
    with torch.no_grad():
        for i in range(2):
            for j in range(2):
                tokens = [x[0, :, t, i, j] for t in range(3)] + [refine.pad_token[0, 0]] * 3
                guides = [text[0, t] for t in range(3)] + [torch.zeros(4)] * 3
                normed = [block.norm1(t) for t in tokens]
                q = [block.q(torch.cat([a, g])) for a, g in zip(normed, guides)]
                k = [block.k(torch.cat([a, g])) for a, g in zip(normed, guides)]
                v = [block.v(a) for a in normed]
                for t in range(3):  # only the real classes come out
                    mixed = torch.zeros(8)
                    for h in range(2):
                        part = slice(4 * h, 4 * h + 4)
                        w = torch.stack([(F.elu(q[t][part]) + 1) @ (F.elu(k[s][part]) + 1) for s in range(6)])
                        mixed[part] = sum(w[s] * v[s][part] for s in range(6)) / (w.sum() + 1e-6)
                    y = tokens[t] + block.proj(mixed)
                    expected[0, :, t, i, j] = y + block.mlp(block.norm2(y))
        torch.testing.assert_close(refine(x, text), expected, atol=1e-5, rtol=1e-5)


def test_correlation_matches_a_per_pixel_cosine():
    torch.manual_seed(5)
    image, text = torch.randn(2, 2, 6, 3, 4), F.normalize(torch.randn(3, 4, 6), dim=-1)
    volume = correlation_volume(image, text)
    assert volume.shape == (2, 8, 3, 3, 4)
    for b in range(2):
        for r in range(2):
            for p in range(4):
                for t in range(3):
                    for i in range(3):
                        for j in range(4):
                            cosine = F.cosine_similarity(image[b, r, :, i, j], text[t, p], dim=0)
                            assert abs(volume[b, r * 4 + p, t, i, j] - cosine) < 1e-5


def test_value_path_block_is_the_block_under_identity_attention():
    """x + out_proj(v) + MLP equals open_clip's own block run with an attention mask allowing only self."""
    model = tiny_aeroseg()
    block = model.clip.visual.transformer.resblocks[-1]
    x = torch.randn(2, 5, model.clip.visual.transformer.width)
    only_self = torch.full((5, 5), float("-inf")).fill_diagonal_(0.0)
    with torch.no_grad():
        torch.testing.assert_close(
            value_path_block(block, x), block(x, attn_mask=only_self), atol=1e-5, rtol=1e-5
        )


def test_rotations_are_aligned_back():
    """Features of the image turned by 90° at rotation k are the turned features of the image at k + 1."""
    model = tiny_aeroseg()
    visual = model.clip.visual
    torch.manual_seed(6)
    images = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        features = rotated_dense_clip(visual, images, 4)
        turned = rotated_dense_clip(visual, torch.rot90(images, 1, dims=(-2, -1)), 4)
        assert features.shape == (1, 4, visual.output_dim, 4, 4)
        for k in range(4):
            expected = torch.rot90(features[:, (k + 1) % 4], 1, dims=(-2, -1))
            torch.testing.assert_close(turned[:, k], expected, atol=1e-4, rtol=1e-4)
        torch.testing.assert_close(features[:, 0], dense_clip(visual, images), atol=1e-5, rtol=1e-5)


def test_sam_block_features_at_native_size_are_the_encoders_own():
    """At 1024 px (no position resize) the last block's output through SAM's neck is SAM's embedding."""
    model = tiny_aeroseg()
    encoder = model.sam_encoder
    images = torch.randn(1, 3, 1024, 1024)
    with torch.no_grad():
        (last,) = sam_block_features(encoder, images, (len(encoder.blocks) - 1,))
        torch.testing.assert_close(encoder.neck(last), encoder(images), atol=1e-4, rtol=1e-4)
        small = sam_block_features(encoder, images[..., :128, :128], (0, 1))
    assert [tuple(m.shape) for m in small] == [(1, 32, 8, 8)] * 2


def test_head_is_equivariant_to_the_class_order_and_gives_quarter_resolution_logits():
    model = tiny_aeroseg().eval()
    torch.manual_seed(7)
    images = torch.randint(0, 256, (1, 3, 128, 128)).float()
    with torch.no_grad():
        text = model.text_features(["building", "road", "tree"])
        logits = model(images, text).logits
        swapped = model(images, text[[2, 0, 1]]).logits
    assert logits.shape == (1, 3, 32, 32)
    torch.testing.assert_close(swapped, logits[:, [2, 0, 1]], atol=1e-4, rtol=1e-4)
