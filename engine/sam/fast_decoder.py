"""segment-anything's mask decoder, reorganised for many point prompts against one image embedding.

The automatic mask generator decodes dozens of points per call against one image embedding and (without
mask prompts) one dense prompt. Upstream repeats the embedding per point and projects every image
position per point in every attention. :class:`FastMaskDecoder` gives the same outputs with less work:

- Until the first image update the image side is the same for every point, so the first block's
  image-side projections run once and are broadcast.
- Image-to-token attention applies ``out_proj`` to the few value tokens instead of to every image
  position: ``out_proj`` is affine and each head's softmax rows sum to one, so the attention output is
  ``Σ_h P_h (V_h W_h^T + b) − (heads − 1)·b``.
- Where the per-point image-side projection is a plain linear map (token-to-image keys, image-to-token
  queries), its weight is folded into the heads × tokens rows instead (56 rows for a point prompt), and
  token-to-image values are projected after the softmax-weighted sum; this about halves the
  multiply-adds. Any other module is called as it is, so a swapped-in kernel still takes effect.
- After the final attention only the IoU token and the mask tokens asked for are read (3 of 4 with
  multimask output, 1 without), so only they attend.
- Image-to-token attention returns the residual sum (image + attention output) directly: on the CPU
  oneDNN adds the residual in the product's epilogue, which saves a pass over the image-sized tensors.
- On the CPU in float32 every per-point product with the image side goes through oneDNN
  (engine.runtime.onednn_linear): batched products with 56-row operands run at ~100 GFLOP/s through MKL on AMD
  processors, these at ~250. Scores are computed token-major (heads·tokens, N), so softmaxes run over
  contiguous image positions, and the value products read the transposed operand in place: no
  transposing copies (together 10-25 % off a decode in interleaved runs).

Anything else (several embeddings, differing dense prompts, unfamiliar modules) runs upstream's forward.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from segment_anything.modeling.common import LayerNorm2d
from segment_anything.modeling.mask_decoder import MaskDecoder
from segment_anything.modeling.transformer import Attention, TwoWayAttentionBlock, TwoWayTransformer
from torch import nn

from engine.runtime.onednn_linear import OneDnnLinear, onednn_residual_linear_available, onednn_route_applies

# Shared with the upstream decoder under the same names, so parameters and state-dict keys are the same.
_SHARED_MODULES = (
    "transformer",
    "iou_token",
    "mask_tokens",
    "output_upscaling",
    "output_hypernetworks_mlps",
    "iou_prediction_head",
)
POINTS_PER_CHUNK = 8  # bounds the per-chunk image-sized tensors (tens of MB), not measurably slower


def _split_heads(x: torch.Tensor, heads: int) -> torch.Tensor:
    """(..., L, heads·d) → (..., heads, L, d), a view."""
    return x.unflatten(-1, (heads, -1)).transpose(-3, -2)


def _block_diagonal(x: torch.Tensor, heads: int) -> torch.Tensor:
    """(b, T, heads·d) → (b, heads·T, heads·d): row (h, t) holds token t's head-h slice, zeros elsewhere."""
    b, tokens, width = x.shape
    out = x.new_zeros(b, heads, tokens, heads, width // heads)
    out.diagonal(dim1=1, dim2=3).copy_(_split_heads(x, heads).permute(0, 2, 3, 1))
    return out.view(b, heads * tokens, width)


def _tokens_to_shared_image(attn: Attention, queries: torch.Tensor, k: torch.Tensor, v: torch.Tensor):
    """(b, T, C) tokens attending to image keys/values (1, N, C') projected once for all points: all
    points' tokens form one long query sequence per head."""
    heads = attn.num_heads
    q = _split_heads(attn.q_proj(queries), heads)  # (b, H, T, d)
    b, _, tokens, d = q.shape
    q = q.transpose(0, 1).reshape(1, heads, b * tokens, d)
    out = F.scaled_dot_product_attention(q, _split_heads(k, heads), _split_heads(v, heads))
    return attn.out_proj(out.view(heads, b, tokens, d).permute(1, 2, 0, 3).flatten(2))


def _is_plain_linear(module: nn.Module) -> bool:
    """True for modules that compute exactly ``x @ weight.T + bias`` from their own weight and bias, so
    that the weight may be folded into the other operand (oneDNN's linear computes the same map)."""
    return type(module) in (nn.Linear, OneDnnLinear)


def _image_product(image: torch.Tensor, rows: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """image (N, C) @ rows (R, C)ᵀ (+ bias (R)) → (N, R) through oneDNN. Either operand may be a transposed
    view: oneDNN reads it in place, faster than MKL's product or a transposing copy."""
    return torch.ops.mkldnn._linear_pointwise(image, rows, bias, "none", [], "")


def _image_product_plus(image: torch.Tensor, rows: torch.Tensor, bias: torch.Tensor, residual: torch.Tensor):
    """``residual`` (N, R) + image (N, C) @ rows (R, C)ᵀ + bias, the sum done in oneDNN's epilogue."""
    if onednn_residual_linear_available():
        return torch.ops.mkldnn._linear_pointwise.binary(image, residual.contiguous(), rows, bias, "add")
    return _image_product(image, rows, bias).add_(residual)


def _tokens_to_image(attn: Attention, queries: torch.Tensor, keys_pe: torch.Tensor, keys: torch.Tensor):
    """(b, T, C) tokens attending to each point's own (b, N, C) image."""
    heads, q = attn.num_heads, attn.q_proj(queries)
    if not _is_plain_linear(attn.k_proj):
        k, v = _split_heads(attn.k_proj(keys_pe), heads), _split_heads(attn.v_proj(keys), heads)
        out = F.scaled_dot_product_attention(_split_heads(q, heads), k, v)
        return attn.out_proj(out.transpose(1, 2).flatten(2))
    # Fold k_proj into the queries; its bias shifts a query's scores by a constant the softmax ignores.
    b, tokens, width = q.shape
    q = _block_diagonal(q * (width // heads) ** -0.5, heads) @ attn.k_proj.weight  # (b, H·T, C)
    if onednn_route_applies(keys_pe, q, None):  # per point, so its (H·T, N) scores stay in cache
        summed = torch.stack(
            [_image_product(_image_product(q[i], keys_pe[i]).softmax(-1), keys[i].t()) for i in range(b)]
        )
    else:
        summed = torch.bmm(torch.bmm(q, keys_pe.transpose(1, 2)).softmax(dim=-1), keys)
    values = attn.v_proj(summed)  # = probs @ v_proj(keys): each row of probs sums to one
    out = values.view(b, heads, tokens, heads, -1).diagonal(dim1=1, dim2=3)  # (b, T, d, H)
    return attn.out_proj(out.transpose(2, 3).flatten(2))


def _image_to_tokens(
    attn: Attention, image: torch.Tensor, keys: torch.Tensor, values: torch.Tensor, shared, residual
):
    """``residual`` (b or 1, N, C) plus the image attending to (b, T, C) tokens: ``image`` is each
    point's own (b, N, C), or when ``shared`` the (1, N, C') queries projected once for all points."""
    heads = attn.num_heads
    k = _block_diagonal(attn.k_proj(keys), heads)  # (b, H·T, C')
    b, rows, width = k.shape
    k = k * (width // heads) ** -0.5
    value_rows = attn.out_proj(_block_diagonal(attn.v_proj(values), heads))  # V_h W_h^T + bias per (h, t)
    out_bias = attn.out_proj(k.new_zeros(1, width))
    if onednn_route_applies(image, k, None) and (shared or _is_plain_linear(attn.q_proj)):
        shift = out_bias[0] * (1 - heads)
        return _image_to_tokens_onednn(attn, image, k, value_rows, shift, shared, residual)
    if shared:  # scores as (b, H·T, N), here one plain matrix product
        scores = k @ image[0].T
    elif _is_plain_linear(attn.q_proj):  # fold q_proj into the keys
        w, bias = attn.q_proj.weight, attn.q_proj.bias
        scores = torch.baddbmm((k @ bias).unsqueeze(-1), k @ w, image.transpose(1, 2))
    else:
        scores = torch.bmm(k, attn.q_proj(image).transpose(1, 2))
    probs = scores.view(b, heads, rows // heads, -1).softmax(dim=2).view(b, rows, -1)
    return torch.baddbmm(residual + (1 - heads) * out_bias, probs.transpose(1, 2), value_rows)


def _image_to_tokens_onednn(
    attn: Attention, image, k, value_rows, shift, shared: bool, residual
) -> torch.Tensor:
    """``_image_to_tokens`` with every image-sized product through oneDNN, one point at a time so that
    its scores stay in cache. Scores come token-major (H·T, N), where the softmax over a head's T tokens
    runs along N (over a last dimension of 7 it is ~10x slower); ``shift`` is the summed out_proj bias.
    The residual is added by the last product's epilogue when this PyTorch has that op."""
    b, rows, width = k.shape
    heads = attn.num_heads
    if shared:  # one product for all points' keys
        all_scores = _image_product(k.reshape(b * rows, width), image[0]).view(b, rows, -1)
    else:  # fold q_proj into each point's keys
        folded_w, folded_b = k @ attn.q_proj.weight, k @ attn.q_proj.bias
    value_cols = value_rows.transpose(1, 2).contiguous()  # (b, C, H·T)
    residual = residual.expand(b, -1, -1)  # shared by all points in the first block
    out = []
    for i in range(b):
        if shared:
            scores = all_scores[i]
        else:
            scores = _image_product(folded_w[i], image[i]).add_(folded_b[i].unsqueeze(1))
        probs = scores.view(heads, rows // heads, -1).softmax(dim=1).view(rows, -1)
        out.append(_image_product_plus(probs.t(), value_cols[i], shift, residual[i]))
    return torch.stack(out)


class FastMaskDecoder(nn.Module):
    """Drop-in for segment-anything's ``MaskDecoder`` (same parameters, same outputs to fp32 rounding);
    ``.upstream`` is the wrapped decoder."""

    def __init__(self, upstream: MaskDecoder) -> None:
        super().__init__()
        for name in _SHARED_MODULES:
            setattr(self, name, getattr(upstream, name))
        self.transformer_dim = upstream.transformer_dim
        self.num_multimask_outputs = upstream.num_multimask_outputs
        self.num_mask_tokens = upstream.num_mask_tokens
        self.__dict__["upstream"] = upstream  # reachable, but not a submodule: no duplicate state-dict keys

    def forward(
        self,
        image_embeddings: torch.Tensor,
        image_pe: torch.Tensor,
        sparse_prompt_embeddings: torch.Tensor,
        dense_prompt_embeddings: torch.Tensor,
        multimask_output: bool,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        embedding, sparse, dense = image_embeddings, sparse_prompt_embeddings, dense_prompt_embeddings
        if not self._fast_path_applies(embedding, image_pe, sparse, dense):
            return self.upstream(embedding, image_pe, sparse, dense, multimask_output)
        _, c, h, w = embedding.shape
        image = (embedding + dense[:1]).flatten(2).transpose(1, 2).contiguous()
        pe = image_pe.flatten(2).transpose(1, 2).contiguous()
        first, image_pe_sum = self.transformer.layers[0], image + pe
        shared = (
            first.cross_attn_token_to_image.k_proj(image_pe_sum),
            first.cross_attn_token_to_image.v_proj(image),
            first.cross_attn_image_to_token.q_proj(image_pe_sum),
        )
        output_tokens = torch.cat([self.iou_token.weight, self.mask_tokens.weight], dim=0)
        tokens = torch.cat([output_tokens.expand(sparse.shape[0], -1, -1), sparse], dim=1)
        picked = slice(1, None) if multimask_output else slice(0, 1)
        masks, iou = [], []
        for chunk in tokens.split(POINTS_PER_CHUNK):
            queries, keys = self._transformer(image, pe, chunk, shared, picked)
            masks.append(self._masks(keys.transpose(1, 2).view(-1, c, h, w), queries, picked))
            iou.append(self.iou_prediction_head(queries[:, 0])[:, picked])
        return torch.cat(masks), torch.cat(iou)

    def _fast_path_applies(self, image, image_pe, sparse, dense) -> bool:
        t = self.transformer
        if image.shape[0] != 1 or image_pe.shape[0] != 1 or sparse.shape[0] == 0:
            return False
        if type(t) is not TwoWayTransformer:
            return False
        attentions = [t.final_attn_token_to_image]
        for i, block in enumerate(t.layers):
            if type(block) is not TwoWayAttentionBlock or block.skip_first_layer_pe != (i == 0):
                return False
            attentions += [block.self_attn, block.cross_attn_token_to_image, block.cross_attn_image_to_token]
        if len(t.layers) == 0 or any(type(a) is not Attention for a in attentions):
            return False
        upscaling = [type(m) for m in self.output_upscaling]
        if len(upscaling) != 5 or upscaling[:2] != [nn.ConvTranspose2d, LayerNorm2d]:
            return False
        return dense.shape[0] == 1 or dense.stride(0) == 0 or torch.equal(dense, dense[:1].expand_as(dense))

    def _transformer(self, image, pe, tokens, shared, picked: slice):
        """The two-way transformer for one chunk of points; ``shared``: the first block's token-to-image
        keys and values and image-to-token queries. Returns the IoU token and the ``picked`` mask tokens
        (in that order), and the image."""
        first, *rest = self.transformer.layers
        queries = first.norm1(first.self_attn(q=tokens, k=tokens, v=tokens))
        update = _tokens_to_shared_image(first.cross_attn_token_to_image, queries + tokens, *shared[:2])
        queries = first.norm2(queries + update)
        queries = first.norm3(queries + first.mlp(queries))
        attn = first.cross_attn_image_to_token
        keys = first.norm4(_image_to_tokens(attn, shared[2], queries + tokens, queries, True, residual=image))
        for block in rest:
            q = queries + tokens
            queries = block.norm1(queries + block.self_attn(q=q, k=q, v=queries))
            keys_pe = keys + pe
            update = _tokens_to_image(block.cross_attn_token_to_image, queries + tokens, keys_pe, keys)
            queries = block.norm2(queries + update)
            queries = block.norm3(queries + block.mlp(queries))
            attn = block.cross_attn_image_to_token
            keys = block.norm4(
                _image_to_tokens(attn, keys_pe, queries + tokens, queries, False, residual=keys)
            )
        # Tokens attend independently, and only the IoU token and the picked mask tokens are read after it.
        read = [0, *(1 + i for i in range(self.num_mask_tokens)[picked])]
        queries, tokens = queries[:, read], tokens[:, read]
        attn = self.transformer.final_attn_token_to_image
        update = _tokens_to_image(attn, queries + tokens, keys + pe, keys)
        return self.transformer.norm_final_attn(queries + update), keys

    def _masks(self, src: torch.Tensor, queries: torch.Tensor, picked: slice) -> torch.Tensor:
        up1, norm, act1, up2, act2 = self.output_upscaling
        x = up1(src)  # src is channels-last (a view of the token-major keys), and so is x
        # LayerNorm2d normalises over channels: one layer_norm pass over the channels-last layout.
        x = F.layer_norm(x.permute(0, 2, 3, 1), (x.shape[1],), norm.weight, norm.bias, norm.eps)
        x = act2(up2(act1(x.permute(0, 3, 1, 2))))
        mlps = self.output_hypernetworks_mlps
        picked_tokens = range(self.num_mask_tokens)[picked]
        hyper = torch.stack([mlps[i](queries[:, 1 + j]) for j, i in enumerate(picked_tokens)], dim=1)
        return (hyper @ x.flatten(2)).unflatten(-1, x.shape[-2:])


def install_fast_decoder(sam: nn.Module) -> None:
    """Replace ``sam.mask_decoder`` by a :class:`FastMaskDecoder` around it (idempotent)."""
    if not isinstance(sam.mask_decoder, FastMaskDecoder):
        sam.mask_decoder = FastMaskDecoder(sam.mask_decoder)


def uninstall_fast_decoder(sam: nn.Module) -> None:
    """Put the upstream decoder back (no-op when the fast one is not installed)."""
    if isinstance(sam.mask_decoder, FastMaskDecoder):
        sam.mask_decoder = sam.mask_decoder.upstream
