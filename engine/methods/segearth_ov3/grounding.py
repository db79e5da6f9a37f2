"""SAM 3's text-prompted grounding, batched over (crop, query) pairs.

``Sam3Image.forward_grounding`` handles one prompt set per call in the reference (one query at a time).
Its stages are independent per (image, prompt) pair: the fusion encoder, the object-query decoder, the
scoring head and the segmentation head each work on one pair's sequence (layer norms, group norms and
attention never mix the batch). So the pairs of every crop × every query run as one batch here, in chunks
that bound memory, and the per-crop parts run once per crop instead of once per query:

- the image backbone (``ImageState``);
- the empty geometric prompt's features: with no boxes or points, SAM 3's geometry encoder reduces to its
  [CLS] token, projected, normalised and cross-attending to the image. It depends on the image only.
  (Computed here directly: the shipped module's box branch pins memory and calls torchvision's
  ``roi_align`` even for zero boxes, which fails on CPU-only machines.)

Text features are computed once per vocabulary (``TextFeatures``): the text encoder pads every prompt to
its fixed context length, so a prompt's features do not depend on the others in its batch.

The segmentation head runs by its parts so that instance masks are made only for the objects whose
score passes the instance confidence, the only ones the maps use (the head makes all 200 per pair).

This calls ``Sam3Image``'s stage methods (``_get_img_feats``, ``_run_encoder``, ``_run_decoder``) and the
segmentation head's modules of the pinned ``sam3`` version; tests compare the result with
``forward_grounding`` run one query at a time.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class TextFeatures:
    """Per-query text features: ``features`` (L, Q, d) sequence-first, ``mask`` (Q, L) True = padding."""

    features: torch.Tensor
    mask: torch.Tensor


@dataclass
class ImageState:
    """What a crop batch contributes to every query: backbone outputs for B crops and the empty geometric
    prompt's features ``geometry`` (1, B, d) with ``geometry_mask`` (B, 1)."""

    backbone: dict
    geometry: torch.Tensor
    geometry_mask: torch.Tensor
    crops: int


@dataclass
class GroundingOutput:
    """Head outputs for N pairs: ``object_logits`` (N, O) and ``presence_logits`` (N,) before any sigmoid,
    ``semantic`` (N, 1, m, m) mask logits at the model's mask size m; per pair, ``kept_objects`` (k,) the
    objects whose score passed the instance confidence and ``kept_masks`` (k, m, m) their mask logits
    (both None when instances were not asked for)."""

    object_logits: torch.Tensor
    presence_logits: torch.Tensor
    semantic: torch.Tensor
    kept_objects: list[torch.Tensor] | None = None
    kept_masks: list[torch.Tensor] | None = None

    def object_scores(self) -> torch.Tensor:
        """(N, O) float32: sigmoid(object logit) × sigmoid(presence logit), the reference's object score."""
        presence = self.presence_logits.float().sigmoid()
        return self.object_logits.float().sigmoid() * presence[:, None]


class BatchedGrounding:
    """Runs a ``sam3.model.sam3_image.Sam3Image`` (eval mode) on crops and queries in batches."""

    def __init__(self, model: torch.nn.Module, device: torch.device) -> None:
        self.model = model
        self.device = device

    def encode_text(self, queries: list[str]) -> TextFeatures:
        out = self.model.backbone.forward_text(list(queries), device=self.device)
        return TextFeatures(out["language_features"], out["language_mask"])

    def encode_images(self, images: torch.Tensor) -> ImageState:
        """``images``: (B, 3, R, R) normalised float at the model's resolution R."""
        backbone = self.model.backbone.forward_image(images)
        ids = torch.arange(len(images), device=images.device)
        _, img_feats, img_pos, _ = self.model._get_img_feats(backbone, ids)
        geometry, mask = empty_prompt_features(self.model.geometry_encoder, img_feats[-1], img_pos[-1])
        return ImageState(backbone, geometry, mask, len(images))

    def ground(
        self,
        state: ImageState,
        text: TextFeatures,
        crop_ids: torch.Tensor,
        query_ids: torch.Tensor,
        confidence: float | None = None,
    ) -> GroundingOutput:
        """Outputs for the pairs (crop_ids[n], query_ids[n]), as ``forward_grounding`` gives them for one
        prompt on one image. Instance masks are computed only for the objects whose score exceeds
        ``confidence`` (the only ones the maps use; None: no instance masks at all): SAM 3's segmentation
        head makes all 200 per pair, a 200 × 256 × 288² product and 66 MB per pair."""
        from sam3.model.data_misc import FindStage

        model = self.model
        find = FindStage(
            img_ids=crop_ids,
            text_ids=query_ids,
            input_boxes=None,
            input_boxes_mask=None,
            input_boxes_label=None,
            input_points=None,
            input_points_mask=None,
        )
        prompt = torch.cat([text.features[:, query_ids], state.geometry[:, crop_ids]], dim=0)
        prompt_mask = torch.cat([text.mask[query_ids], state.geometry_mask[crop_ids]], dim=1)
        backbone, encoder_out, _ = model._run_encoder(state.backbone, find, prompt, prompt_mask)
        out = {"encoder_hidden_states": encoder_out["encoder_hidden_states"]}
        out, hs = model._run_decoder(
            memory=out["encoder_hidden_states"],
            pos_embed=encoder_out["pos_embed"],
            src_mask=encoder_out["padding_mask"],
            out=out,
            prompt=prompt,
            prompt_mask=prompt_mask,
            encoder_out=encoder_out,
        )
        result = GroundingOutput(
            object_logits=out["pred_logits"][..., 0],
            presence_logits=out["presence_logit_dec"].reshape(-1),
            semantic=None,
        )
        head = model.segmentation_head
        if head.presence_head is not None or head.aux_masks or head.no_dec:
            raise ValueError("this SAM 3 segmentation head differs from the published one")
        # UniversalSegmentationHead.forward in eval, by its parts: the encoder states attend to the
        # prompt, the pixel decoder runs on them, then the semantic and instance 1x1 heads.
        states = out["encoder_hidden_states"]
        if head.cross_attend_prompt is not None:
            attended = head.cross_attend_prompt(
                query=head.cross_attn_norm(states), key=prompt, value=prompt, key_padding_mask=prompt_mask
            )[0]
            states = attended + states
        pixels = head._embed_pixels(
            backbone_feats=backbone["backbone_fpn"], image_ids=crop_ids, encoder_hidden_states=states
        )
        result.semantic = head.semantic_seg_head(pixels)
        if confidence is not None:
            instance_embeds = head.instance_seg_head(pixels)  # (N, d, m, m)
            keep = result.object_scores() > confidence
            queries = hs[-1]  # the last decoder layer's object queries, (N, O, d)
            result.kept_objects, result.kept_masks = [], []
            for pair in range(len(keep)):
                objects = keep[pair].nonzero()[:, 0]
                embedded = head.mask_predictor.mask_embed(queries[pair, objects])
                result.kept_objects.append(objects)
                result.kept_masks.append(torch.einsum("qc,chw->qhw", embedded, instance_embeds[pair]))
        return result


def empty_prompt_features(geometry_encoder, image_tokens: torch.Tensor, image_pos: torch.Tensor):
    """SAM 3's geometry-encoder output for a prompt without boxes, points or masks.

    ``image_tokens``, ``image_pos``: (HW, B, d) sequence-first image features and their position encoding.
    Returns ((1, B, d) features, (B, 1) mask, all False): the [CLS] token after the encoder's projection,
    norm and layers, exactly the sequence the module yields when its point and box sequences are empty.
    """
    g = geometry_encoder
    batch = image_tokens.shape[1]
    tokens = g.cls_embed.weight.view(1, 1, g.d_model).expand(1, batch, g.d_model)
    mask = torch.zeros(batch, 1, dtype=torch.bool, device=image_tokens.device)
    if g.final_proj is not None:
        tokens = g.norm(g.final_proj(tokens))
    if g.encode is not None:
        for layer in g.encode:
            tokens = layer(tgt=tokens, memory=image_tokens, tgt_key_padding_mask=mask, pos=image_pos)
        tokens = g.encode_norm(tokens)
    return tokens, mask
