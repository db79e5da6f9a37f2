"""Analytic FLOP counts of the models the engine runs, for model-FLOP utilisation (MFU).

Convention: a multiply-add is 2 FLOPs, and only the dense linear algebra is counted (linear layers,
1×1 convolutions, patch embeddings, attention score and mixing products, the adaptive convolution):
the work ``torch.utils.flop_counter.FlopCounterMode`` sees. Softmax, normalisation, GELU, bicubic
resampling and other element-wise work is left out (a few percent of the total).

The counts are the *nominal* work of each model as its reference code structures it (e.g. the
upsampler's adaptive convolution as d² taps per high-resolution pixel and its last 1×1 convolution at
full resolution). An engine that reorganises the same mathematics into less work gets credit for it:
its achieved GFLOP/s (nominal FLOPs / seconds) then exceeds what the hardware executes.
"""

from __future__ import annotations

from dataclasses import dataclass


def _ceil_div(a: int, b: int) -> int:
    return -(-a // b)


@dataclass(frozen=True)
class VitSpec:
    """A ViT image tower: patch edge (pixels), width, depth, MLP hidden width, output projection width."""

    patch: int = 16
    width: int = 768
    layers: int = 12
    mlp_width: int = 3072
    output_dim: int = 512  # 0: no projection

    @classmethod
    def from_open_clip(cls, visual) -> VitSpec:
        """The spec of an open_clip ``VisionTransformer`` (``model.visual``)."""
        patch = visual.patch_size
        blocks = visual.transformer.resblocks
        mlp = blocks[0].mlp.c_fc.out_features
        proj = getattr(visual, "proj", None)
        return cls(
            patch=int(patch[0] if isinstance(patch, tuple | list) else patch),
            width=int(visual.transformer.width),
            layers=len(blocks),
            mlp_width=int(mlp),
            output_dim=int(proj.shape[1]) if proj is not None else 0,
        )


#: open_clip ViT-B-16's image tower (the backbone SegEarth-OV and ReSeg-CLIP use).
VIT_B_16 = VitSpec()


def _block_flops(tokens: int, width: int, mlp_width: int) -> int:
    """A standard pre-norm block: qkv, scores, mixing, out-projection, two MLP layers."""
    linear = (
        2 * tokens * width * (3 * width) + 2 * tokens * width * width + 2 * 2 * tokens * width * mlp_width
    )
    attention = 2 * (2 * tokens * tokens * width)  # q·kᵀ and weights·v, summed over heads
    return linear + attention


def _dense_last_block_flops(tokens: int, width: int, terms: int) -> int:
    """SegEarth-style last block: qkv + out-projection, ``terms`` similarity products, one mixing, no MLP."""
    linear = 2 * tokens * width * (3 * width) + 2 * tokens * width * width
    mixing = 2 * tokens * tokens * width if terms else 0
    return linear + terms * 2 * tokens * tokens * width + mixing


def clip_image_flops(
    height: int, width: int, spec: VitSpec = VIT_B_16, last_block_terms: int | None = 3
) -> int:
    """FLOPs of one (height × width) crop through the image tower, padded up to the patch size.

    ``last_block_terms``: None runs the last block as CLIP does; an integer is the number of summed
    attention softmaxes of a dense method's modified last block (SegEarth-OV: 3, qq + kk + vv; its MLP
    and residual are dropped). The output projection is applied to every token (dense methods need
    all of them).
    """
    grid = _ceil_div(height, spec.patch) * _ceil_div(width, spec.patch)
    tokens = grid + 1
    total = 2 * grid * (3 * spec.patch * spec.patch) * spec.width  # patch embedding
    standard = spec.layers if last_block_terms is None else spec.layers - 1
    total += standard * _block_flops(tokens, spec.width, spec.mlp_width)
    if last_block_terms is not None:
        total += _dense_last_block_flops(tokens, spec.width, last_block_terms)
    total += 2 * tokens * spec.width * spec.output_dim
    return total


@dataclass(frozen=True)
class TextSpec:
    """CLIP's text tower: context length, width, depth, MLP width, output projection width."""

    context: int = 77
    width: int = 512
    layers: int = 12
    mlp_width: int = 2048
    output_dim: int = 512


def clip_text_flops(sentences: int, spec: TextSpec = TextSpec()) -> int:
    """FLOPs of encoding ``sentences`` prompts (every sentence padded to the context length)."""
    per = spec.layers * _block_flops(spec.context, spec.width, spec.mlp_width)
    return sentences * (per + 2 * spec.width * spec.output_dim)  # projection of the EOT token only


@dataclass(frozen=True)
class JbuSpec:
    """A ×16 stack of four ×2 joint bilateral steps (SimFeatUp ``jbu_one``: radius 5; FeatUp stack: 3)."""

    channels: int = 512
    radius: int = 5
    key_dim: int = 32
    guidance_dim: int = 3
    steps: int = 4


#: SimFeatUp's jbu_one on ViT-B-16 features (SegEarth-OV's upsampler).
JBU_ONE = JbuSpec()


def jbu_step_flops(out_height: int, out_width: int, spec: JbuSpec = JBU_ONE) -> int:
    """One ×2 step producing (out_height × out_width) pixels, nominal (reference) formulation.

    Per output pixel: the guidance key projection (two 1×1 convs), d² key dot products, the kernel
    correction (two 1×1 convs on guidance + d² kernel channels) and the adaptive convolution of C
    channels over d² taps.
    """
    pixels = out_height * out_width
    taps = (2 * spec.radius + 1) ** 2
    keys = 2 * (spec.guidance_dim * spec.key_dim + spec.key_dim * spec.key_dim)
    range_logits = 2 * spec.key_dim * taps
    fixup = 2 * ((spec.guidance_dim + taps) * taps + taps * taps)
    adaptive = 2 * spec.channels * taps
    return pixels * (keys + range_logits + fixup + adaptive)


def jbu_flops(height: int, width: int, spec: JbuSpec = JBU_ONE, patch: int = 16) -> int:
    """All steps plus the final full-resolution C×C 1×1 convolution, for a (height × width) crop whose
    features are (⌈height/patch⌉ × ⌈width/patch⌉)."""
    grid_h, grid_w = _ceil_div(height, patch), _ceil_div(width, patch)
    total = 0
    for _ in range(spec.steps):
        grid_h, grid_w = 2 * grid_h, 2 * grid_w
        total += jbu_step_flops(grid_h, grid_w, spec)
    return total + 2 * grid_h * grid_w * spec.channels * spec.channels


def dense_logit_flops(height: int, width: int, channels: int, queries: int) -> int:
    """Cosine logits of every pixel against the query embeddings."""
    return 2 * height * width * channels * queries


@dataclass(frozen=True)
class SamEncoderSpec:
    """segment-anything's image encoder (ViT with windowed attention, decomposed relative positions)."""

    image_size: int = 1024
    patch: int = 16
    width: int = 768
    depth: int = 12
    global_blocks: int = 4  # ViT-B: blocks 2, 5, 8, 11
    window: int = 14
    mlp_ratio: int = 4
    neck_dim: int = 256


SAM_VIT_B = SamEncoderSpec()


def sam_encoder_flops(spec: SamEncoderSpec = SAM_VIT_B) -> int:
    """One image-encoder pass (SAM resizes every input to ``image_size``, so this is per pass)."""
    grid = spec.image_size // spec.patch
    tokens = grid * grid
    total = 2 * tokens * (3 * spec.patch * spec.patch) * spec.width
    padded_grid = _ceil_div(grid, spec.window) * spec.window
    windows = (padded_grid // spec.window) ** 2
    window_tokens = spec.window * spec.window
    for index in range(spec.depth):
        is_global = index >= spec.depth - spec.global_blocks  # which blocks is irrelevant to the count
        # Windowed blocks pad the token grid to whole windows before the attention's projections.
        attn_tokens = tokens if is_global else windows * window_tokens
        total += 2 * attn_tokens * spec.width * 4 * spec.width  # qkv + out projection
        if is_global:
            groups, side, n = 1, grid, tokens
        else:
            groups, side, n = windows, spec.window, window_tokens
        total += groups * 2 * (2 * n * n * spec.width)  # scores + mixing
        total += groups * 2 * (2 * n * side * spec.width)  # decomposed relative positions (rows, columns)
        total += 2 * 2 * tokens * spec.width * spec.mlp_ratio * spec.width  # MLP
    total += 2 * tokens * spec.width * spec.neck_dim  # neck 1×1
    total += 2 * tokens * spec.neck_dim * spec.neck_dim * 9  # neck 3×3
    return total


@dataclass(frozen=True)
class CropFlops:
    """Nominal FLOPs of one crop, split by model part."""

    clip: int
    upsampler: int
    logits: int

    @property
    def total(self) -> int:
        return self.clip + self.upsampler + self.logits


def segearth_crop_flops(
    height: int,
    width: int,
    queries: int,
    spec: VitSpec = VIT_B_16,
    upsampler: JbuSpec | None = JBU_ONE,
    attention_terms: int = 3,
) -> CropFlops:
    """One SegEarth-OV crop: dense CLIP, the upsampler (if any) and the per-pixel cosine logits."""
    pad_h, pad_w = _ceil_div(height, spec.patch) * spec.patch, _ceil_div(width, spec.patch) * spec.patch
    clip = clip_image_flops(height, width, spec, attention_terms)
    up = jbu_flops(height, width, upsampler, spec.patch) if upsampler is not None else 0
    logits = dense_logit_flops(pad_h, pad_w, spec.output_dim, queries)
    return CropFlops(clip, up, logits)


def reseg_crop_flops(height: int, width: int, queries: int, spec: VitSpec = VIT_B_16) -> CropFlops:
    """One ReSeg-CLIP crop: the full (masked) tower, every token projected, bilinear features, logits.

    Masked attention still computes every score, so the tower costs what CLIP costs. SAM is separate
    (``sam_encoder_flops`` per encoder pass)."""
    pad_h, pad_w = _ceil_div(height, spec.patch) * spec.patch, _ceil_div(width, spec.patch) * spec.patch
    clip = clip_image_flops(height, width, spec, None)
    logits = dense_logit_flops(pad_h, pad_w, spec.output_dim, queries)
    return CropFlops(clip, 0, logits)
