"""The AerOSeg network: open_clip CLIP + frozen segment-anything encoder + the trained head.

``AerOSeg.forward(images, text)``: (B, 3, H, W) RGB in 0..255 (float or uint8), H = W = the
architecture's crop size, and (T, P, E) prompt features → ``AerOSegOutput`` with (B, T, H/4, W/4)
logits (one binary map per query) and, for the loss, the back-projection and its SAM target.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from engine.methods.aeroseg.architecture import AerOSegArchitecture
from engine.methods.aeroseg.back_projection import SemanticBackProjection
from engine.methods.aeroseg.class_attention import ClassRefinement
from engine.methods.aeroseg.clip_features import prompt_features, rotated_dense_clip
from engine.methods.aeroseg.correlation import CorrelationEmbedding, correlation_volume
from engine.methods.aeroseg.decoder import UpsamplingDecoder
from engine.methods.aeroseg.sam_guidance import DecoderGuidance, GuidanceProjection, sam_block_features
from engine.methods.aeroseg.spatial import SpatialRefinement
from engine.methods.aeroseg.trainable import prepare_clip


@dataclass
class AerOSegOutput:
    logits: torch.Tensor  # (B, T, 4h, 4w), h = patch grid
    reconstruction: torch.Tensor | None  # (B, D_sam, h, w) SBP output (training only)
    sam_target: torch.Tensor | None  # (B, D_sam, h, w) SAM's features the SBP reconstructs


class AerOSegHead(nn.Module):
    """Everything trained besides CLIP's projections: correlation → refinement → decoder, and SBP."""

    def __init__(self, arch: AerOSegArchitecture, text_dim: int, sam_dim: int):
        super().__init__()
        self.arch = arch
        hidden = arch.hidden
        self.embed = CorrelationEmbedding(arch.correlation_channels, hidden, arch.correlation_kernel)
        self.guidance = GuidanceProjection(sam_dim, arch.guidance)
        self.text_guidance = nn.Sequential(nn.Linear(text_dim, arch.text_guidance), nn.ReLU())
        self.spatial = nn.ModuleList(
            SpatialRefinement(hidden, arch.guidance, arch.heads, arch.window, arch.shift, arch.mlp_ratio)
            for _ in range(arch.rounds)
        )
        self.classes = nn.ModuleList(
            ClassRefinement(
                hidden, arch.text_guidance, arch.heads, arch.mlp_ratio, arch.class_pad, arch.class_pool
            )
            for _ in range(arch.rounds)
        )
        g1, g2 = arch.decoder_guidance
        self.decoder_guidance = nn.ModuleList(
            [DecoderGuidance(sam_dim, 2 * g1, g1, 2), DecoderGuidance(sam_dim, 2 * g2, g2, 4)]
        )
        self.decoder = UpsamplingDecoder(hidden, arch.decoder_dims, arch.decoder_guidance)
        self.back_projection = SemanticBackProjection(hidden, arch.sbp_max_classes, arch.sbp_hidden, sam_dim)

    def forward(
        self, image: torch.Tensor, text: torch.Tensor, sam: list[torch.Tensor], with_sbp: bool
    ) -> AerOSegOutput:
        """image: (B, R, E, h, w) rotated dense CLIP; text: (T, P, E); sam: 3 maps (B, D, h, w)."""
        x = self.embed(correlation_volume(image, text))
        spatial_guide = self.guidance(sam[2])
        text_guide = self.text_guidance(text.mean(dim=1)).unsqueeze(0).expand(image.shape[0], -1, -1)
        for spatial, classes in zip(self.spatial, self.classes):
            x = classes(spatial(x, spatial_guide), text_guide)
        guides = [self.decoder_guidance[0](sam[1]), self.decoder_guidance[1](sam[0])]
        logits = self.decoder(x, guides)
        reconstruction = self.back_projection(x) if with_sbp else None
        return AerOSegOutput(logits, reconstruction, sam[2] if with_sbp else None)


class AerOSeg(nn.Module):
    """CLIP (query/value projections trainable), SAM image encoder (frozen, always eval), the head."""

    def __init__(self, arch: AerOSegArchitecture, clip: nn.Module, tokenizer, sam_encoder: nn.Module):
        super().__init__()
        self.arch = arch
        self.clip = clip
        self.tokenizer = tokenizer
        self.sam_encoder = sam_encoder.requires_grad_(False).eval()
        prepare_clip(self.clip)
        text_dim = (
            int(clip.text_projection.shape[1]) if clip.text_projection is not None else clip.transformer.width
        )
        sam_dim = int(sam_encoder.patch_embed.proj.out_channels)
        self.head = AerOSegHead(arch, text_dim, sam_dim)
        shape = (1, 3, 1, 1)
        self.register_buffer("clip_mean", torch.tensor(arch.clip_mean).view(shape) * 255, persistent=False)
        self.register_buffer("clip_std", torch.tensor(arch.clip_std).view(shape) * 255, persistent=False)
        self.register_buffer("sam_mean", torch.tensor(arch.sam_mean).view(shape) * 255, persistent=False)
        self.register_buffer("sam_std", torch.tensor(arch.sam_std).view(shape) * 255, persistent=False)

    def train(self, mode: bool = True) -> AerOSeg:
        super().train(mode)
        self.sam_encoder.eval()  # frozen: no dropout or other training behaviour, ever
        return self

    def clip_parameters(self) -> list[nn.Parameter]:
        return [p for p in self.clip.parameters() if p.requires_grad]

    def head_parameters(self) -> list[nn.Parameter]:
        return [p for p in self.head.parameters() if p.requires_grad]

    def text_features(self, names: list[str]) -> torch.Tensor:
        """(T, P, E) prompt features of ``names`` (with gradient when grad mode is on)."""
        return prompt_features(self.clip, self.tokenizer, names, self.arch.prompts)

    @torch.no_grad()
    def sam_features(self, images: torch.Tensor, grid: tuple[int, int]) -> list[torch.Tensor]:
        """SAM's three guidance maps at the CLIP patch ``grid`` (resized if SAM's grid differs)."""
        normalised = (images - self.sam_mean) / self.sam_std
        maps = sam_block_features(self.sam_encoder, normalised, tuple(self.arch.sam_layers))
        return [m if m.shape[-2:] == grid else F.interpolate(m, size=grid, mode="bilinear") for m in maps]

    def forward(self, images: torch.Tensor, text: torch.Tensor, with_sbp: bool = False) -> AerOSegOutput:
        images = images.float()
        clip_in = (images - self.clip_mean) / self.clip_std
        dense = rotated_dense_clip(self.clip.visual, clip_in, self.arch.rotations)
        sam = self.sam_features(images, tuple(dense.shape[-2:]))
        return self.head(dense, text, sam, with_sbp)
