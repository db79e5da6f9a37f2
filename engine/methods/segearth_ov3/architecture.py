"""SAM 3's image model built from the ``sam3`` package's own modules, at full size or as a tiny variant.

``full`` is the published architecture (the one ``sam3.build_sam3_image_model`` makes: a 32-block ViT at
1008², a 24-layer text transformer, 6 fusion-encoder and 6 decoder layers of width 256, 200 object
queries). ``tiny`` keeps every module and connection but with few, narrow layers and a 336² input, so
tests and ``--random-weights --sam3-config tiny`` run the whole path in seconds. Only the image model is
built (no video tracker, no SAM 1 interactive predictor): SegEarth-OV3 uses text prompts alone.

The text tokenizer reads the CLIP BPE vocabulary; the ``sam3`` wheel lacks that file, the identical one
ships inside open_clip, which is used instead.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from engine.errors import UserError
from engine.methods.segearth_ov3.sam3_import import import_sam3


@dataclass(frozen=True)
class Sam3Architecture:
    """The numbers that size SAM 3's image model (names follow the ``sam3`` modules' arguments)."""

    resolution: int = 1008  # input edge the image is resized to (pixels)
    patch_size: int = 14
    vit_width: int = 1024
    vit_depth: int = 32
    vit_heads: int = 16
    vit_mlp_ratio: float = 4.625
    vit_window: int = 24
    vit_global_blocks: tuple[int, ...] = (7, 15, 23, 31)
    vit_pretrain_size: int = 336
    text_width: int = 1024
    text_heads: int = 16
    text_layers: int = 24
    text_context: int = 32
    d_model: int = 256
    heads: int = 8
    feedforward: int = 2048
    encoder_layers: int = 6
    decoder_layers: int = 6
    object_queries: int = 200
    geometry_layers: int = 3

    @property
    def mask_size(self) -> int:
        """Edge of the instance and semantic mask logits: the neck's ×4 level of the patch grid."""
        return 4 * (self.resolution // self.patch_size)

    def to_json(self) -> dict:
        return {**asdict(self), "vit_global_blocks": list(self.vit_global_blocks)}


ARCHITECTURES: dict[str, Sam3Architecture] = {
    "full": Sam3Architecture(),
    "tiny": Sam3Architecture(
        resolution=336,
        vit_width=64,
        vit_depth=2,
        vit_heads=2,
        vit_window=12,
        vit_global_blocks=(1,),
        text_width=64,
        text_heads=2,
        text_layers=2,
        d_model=64,
        heads=4,
        feedforward=128,
        encoder_layers=2,
        decoder_layers=2,
        object_queries=16,
        geometry_layers=1,
    ),
}


def architecture(name: str) -> Sam3Architecture:
    """The architecture called ``name`` ("full" or "tiny")."""
    try:
        return ARCHITECTURES[name.strip().lower()]
    except KeyError:
        raise UserError(f"unknown --sam3-config {name!r}: use one of {', '.join(ARCHITECTURES)}") from None


def bpe_vocabulary_path() -> Path:
    """open_clip's copy of the CLIP BPE merges file (``bpe_simple_vocab_16e6.txt.gz``)."""
    import open_clip

    path = Path(open_clip.__file__).with_name("bpe_simple_vocab_16e6.txt.gz")
    if not path.is_file():
        raise UserError(f"open_clip's BPE vocabulary is missing ({path}); reinstall open_clip_torch")
    return path


def build_image_model(arch: Sam3Architecture, seed: int | None = None) -> torch.nn.Module:
    """A ``sam3.model.sam3_image.Sam3Image`` in eval mode with (seeded, when ``seed`` is given) random
    initial weights; load a checkpoint into it with ``engine.models.loading``."""
    import_sam3()
    from sam3.model import decoder, encoder, geometry_encoders, maskformer_segmentation
    from sam3.model import model_misc as misc
    from sam3.model.necks import Sam3DualViTDetNeck
    from sam3.model.position_encoding import PositionEmbeddingSine
    from sam3.model.sam3_image import Sam3Image
    from sam3.model.text_encoder_ve import VETextEncoder
    from sam3.model.tokenizer_ve import SimpleTokenizer
    from sam3.model.vitdet import ViT
    from sam3.model.vl_combiner import SAM3VLBackbone

    if seed is not None:
        torch.manual_seed(seed)
    a, d = arch, arch.d_model

    def attention(batch_first: bool | None = None, dropout: float = 0.1):
        extra = {} if batch_first is None else {"batch_first": batch_first}
        return misc.MultiheadAttentionWrapper(num_heads=a.heads, dropout=dropout, embed_dim=d, **extra)

    # sam3's own builder precomputes position-encoding and box-bias coordinate caches on "cuda" (so it
    # cannot build on a CPU-only machine); left empty, they fill on the first forward, on its device,
    # with the same values.
    def sine():
        return PositionEmbeddingSine(num_pos_feats=d, normalize=True, scale=None, temperature=10000)

    trunk = ViT(
        img_size=a.resolution,
        pretrain_img_size=a.vit_pretrain_size,
        patch_size=a.patch_size,
        embed_dim=a.vit_width,
        depth=a.vit_depth,
        num_heads=a.vit_heads,
        mlp_ratio=a.vit_mlp_ratio,
        norm_layer="LayerNorm",
        drop_path_rate=0.1,
        qkv_bias=True,
        use_abs_pos=True,
        tile_abs_pos=True,
        global_att_blocks=a.vit_global_blocks,
        rel_pos_blocks=(),
        use_rope=True,
        use_interp_rope=True,
        window_size=a.vit_window,
        pretrain_use_cls_token=True,
        retain_cls_token=False,
        ln_pre=True,
        ln_post=False,
        return_interm_layers=False,
        bias_patch_embed=False,
    )
    neck = Sam3DualViTDetNeck(
        position_encoding=sine(), d_model=d, scale_factors=[4.0, 2.0, 1.0, 0.5], trunk=trunk
    )
    text = VETextEncoder(
        tokenizer=SimpleTokenizer(bpe_path=str(bpe_vocabulary_path())),
        d_model=d,
        width=a.text_width,
        heads=a.text_heads,
        layers=a.text_layers,
        context_length=a.text_context,
    )
    fusion_layer = encoder.TransformerEncoderLayer(
        activation="relu",
        d_model=d,
        dim_feedforward=a.feedforward,
        dropout=0.1,
        pos_enc_at_attn=True,
        pos_enc_at_cross_attn_keys=False,
        pos_enc_at_cross_attn_queries=False,
        pre_norm=True,
        self_attention=attention(batch_first=True),
        cross_attention=attention(batch_first=True),
    )
    fusion = encoder.TransformerEncoderFusion(
        layer=fusion_layer,
        num_layers=a.encoder_layers,
        d_model=d,
        num_feature_levels=1,
        frozen=False,
        use_act_checkpoint=True,
        add_pooled_text_to_img_feat=False,
        pool_text_with_mask=True,
    )
    decoder_layer = decoder.TransformerDecoderLayer(
        activation="relu",
        d_model=d,
        dim_feedforward=a.feedforward,
        dropout=0.1,
        cross_attention=attention(),
        n_heads=a.heads,
        use_text_cross_attention=True,
    )
    query_decoder = decoder.TransformerDecoder(
        layer=decoder_layer,
        num_layers=a.decoder_layers,
        num_queries=a.object_queries,
        return_intermediate=True,
        box_refine=True,
        num_o2m_queries=0,
        dac=True,
        boxRPB="log",
        d_model=d,
        frozen=False,
        interaction_layer=None,
        dac_use_selfatt_ln=True,
        resolution=None,
        stride=None,
        use_act_checkpoint=True,
        presence_token=True,
    )
    scoring = misc.DotProductScoring(
        d_model=d,
        d_proj=d,
        prompt_mlp=misc.MLP(
            input_dim=d,
            hidden_dim=a.feedforward,
            output_dim=d,
            num_layers=2,
            dropout=0.1,
            residual=True,
            out_norm=torch.nn.LayerNorm(d),
        ),
    )
    segmentation = maskformer_segmentation.UniversalSegmentationHead(
        hidden_dim=d,
        upsampling_stages=3,
        aux_masks=False,
        presence_head=False,
        dot_product_scorer=None,
        act_ckpt=True,
        cross_attend_prompt=attention(dropout=0.0),
        pixel_decoder=maskformer_segmentation.PixelDecoder(
            num_upsampling_stages=3, interpolation_mode="nearest", hidden_dim=d
        ),
    )
    geometry_layer = encoder.TransformerEncoderLayer(
        activation="relu",
        d_model=d,
        dim_feedforward=a.feedforward,
        dropout=0.1,
        pos_enc_at_attn=False,
        pre_norm=True,
        self_attention=attention(batch_first=False),
        pos_enc_at_cross_attn_queries=False,
        pos_enc_at_cross_attn_keys=True,
        cross_attention=attention(batch_first=False),
    )
    geometry = geometry_encoders.SequenceGeometryEncoder(
        pos_enc=sine(),
        encode_boxes_as_points=False,
        points_direct_project=True,
        points_pool=True,
        points_pos_enc=True,
        boxes_direct_project=True,
        boxes_pool=True,
        boxes_pos_enc=True,
        d_model=d,
        num_layers=a.geometry_layers,
        layer=geometry_layer,
        use_act_ckpt=True,
        add_cls=True,
        add_post_encode_proj=True,
    )
    model = Sam3Image(
        backbone=SAM3VLBackbone(visual=neck, text=text, scalp=1),
        transformer=misc.TransformerWrapper(encoder=fusion, decoder=query_decoder, d_model=d),
        input_geometry_encoder=geometry,
        segmentation_head=segmentation,
        num_feature_levels=1,
        o2m_mask_predict=True,
        dot_prod_scoring=scoring,
        use_instance_query=False,
        multimask_output=True,
        inst_interactive_predictor=None,
        matcher=None,
    )
    _initialise_text_tensors(model.backbone.language_backbone.encoder)
    return model.eval()


def _initialise_text_tensors(text_transformer: torch.nn.Module) -> None:
    """sam3's text transformer allocates its position embedding and output projection uninitialised
    (``torch.empty``; a checkpoint fills them): give them CLIP's usual random scales instead of whatever
    the memory held (often NaN)."""
    width = text_transformer.positional_embedding.shape[1]
    torch.nn.init.normal_(text_transformer.positional_embedding, std=0.01)
    projection = getattr(text_transformer, "text_projection", None)
    if isinstance(projection, torch.nn.Parameter):
        torch.nn.init.normal_(projection, std=width**-0.5)
