"""Dense CLIP features at several rotations, and prompt features, both differentiable (training).

Image: the first N-1 blocks of open_clip's ViT as they are; the last block keeps only its value path,
``x + out_proj(v) → + MLP(ln_2(·))`` (CAT-Seg's dense CLIP), then ln_post and the projection. Each
rotation k of ``rot90`` runs through CLIP and its map is rotated back, so the R maps are aligned.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from engine.clip.positional import interpolate_positional_embedding


def value_path_block(block: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """An open_clip ResidualAttentionBlock with identity attention: ``x + out_proj(v)``, then its MLP.

    ``x``: (B, N, D) batch-first tokens → (B, N, D).
    """
    attention: nn.MultiheadAttention = block.attn
    width = x.shape[-1]
    weight = attention.in_proj_weight[2 * width :]
    bias = attention.in_proj_bias[2 * width :]
    value = F.linear(block.ln_1(x), weight, bias)
    x = x + block.ls_1(attention.out_proj(value))
    return x + block.ls_2(block.mlp(block.ln_2(x)))


def dense_clip(visual: nn.Module, images: torch.Tensor, keep_blocks: tuple[int, ...] = ()) -> torch.Tensor:
    """(B, 3, H, W) CLIP-normalised images (H, W multiples of the patch) → (B, E, H/p, W/p) features."""
    x = visual.conv1(images)
    grid = (x.shape[-2], x.shape[-1])
    x = x.flatten(2).transpose(1, 2)
    cls = visual.class_embedding.to(x.dtype).expand(x.shape[0], 1, -1)
    x = torch.cat([cls, x], dim=1)
    x = x + interpolate_positional_embedding(visual.positional_embedding, grid).to(x.dtype)
    x = visual.ln_pre(x)
    transformer = visual.transformer
    batch_first = getattr(transformer, "batch_first", True)
    blocks = transformer.resblocks
    if not batch_first:
        x = x.transpose(0, 1)
    for block in blocks[:-1]:
        x = block(x)
    if not batch_first:
        x = x.transpose(0, 1)
    x = value_path_block(blocks[-1], x)
    tokens = visual.ln_post(x[:, 1:])
    if visual.proj is not None:
        tokens = tokens @ visual.proj
    return tokens.transpose(1, 2).reshape(tokens.shape[0], tokens.shape[2], *grid)


def rotated_dense_clip(visual: nn.Module, images: torch.Tensor, rotations: int) -> torch.Tensor:
    """(B, 3, H, W) → (B, R, E, H/p, W/p): dense features of rot90(image, k), rotated back, k = 0..R-1.

    The rotations run as one batch of R·B images (square crops; non-square ones run one rotation at a
    time since their grids differ).
    """
    batch = images.shape[0]
    if images.shape[-1] == images.shape[-2]:
        stacked = torch.cat([torch.rot90(images, k, dims=(-2, -1)) for k in range(rotations)])
        features = dense_clip(visual, stacked).split(batch)
    else:
        features = [dense_clip(visual, torch.rot90(images, k, dims=(-2, -1))) for k in range(rotations)]
    aligned = [torch.rot90(f, -k, dims=(-2, -1)) for k, f in enumerate(features)]
    return torch.stack(aligned, dim=1)


def prompt_features(clip: nn.Module, tokenizer, names: list[str], prompts: tuple[str, ...]) -> torch.Tensor:
    """(T, P, E) L2-normalised text features of every class name under every prompt template.

    Differentiable: the text tower's query and value projections train, so this runs every step.
    """
    sentences = [prompt.format(name) for name in names for prompt in prompts]
    device = next(clip.parameters()).device
    tokens = tokenizer(sentences).to(device)
    features = clip.encode_text(tokens)
    return F.normalize(features.float(), dim=-1).view(len(names), len(prompts), -1)
