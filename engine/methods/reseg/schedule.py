"""Which attention each vision-transformer block gets in ReSeg-CLIP.

Three kinds of block:

- ``full``: unrestricted self-attention, as CLIP was trained;
- ``samK`` (K = 1, 2, …): patch i may attend to patch j only when both fall in the same segment of
  SAM parameter set K (set 1 is the finest, the last set the coarsest);
- ``self``: every token attends only to itself.

The reference (ViT-L/14, 24 blocks) is 18 × full, sam1, sam2, sam3, sam4, 2 × self.
:func:`default_schedule` scales that pattern to any depth: the SAM-masked share is 4/24 of the blocks
and the self-only share 2/24 (each rounded half up, at least one), taken from the end; the SAM sets used
are spread evenly from the finest to the coarsest, in that order. Depth 24 gives the reference exactly;
ViT-B/16 (12 blocks) gets 9 × full, sam1, sam4, self.

User schedules are text: comma-separated entries, each ``KIND`` or ``N*KIND``, e.g.
``"18*full,sam1,sam2,sam3,sam4,2*self"``. A schedule shorter than the model is aligned to the model's
last blocks (the earlier ones stay ``full``): masking belongs at the end of the tower.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from engine.errors import UserError

# The reference pattern's proportions (ViT-L/14: 24 blocks, 4 SAM-masked, 2 self-only).
REFERENCE_DEPTH = 24
REFERENCE_SAM_BLOCKS = 4
REFERENCE_SELF_BLOCKS = 2

FULL = "full"
SELF = "self"
_ENTRY = re.compile(r"^(?:(\d+)\s*\*\s*)?(full|self|sam(\d+))$")


@dataclass(frozen=True)
class BlockAttention:
    """One block's attention: ``kind`` is ``full``, ``self`` or ``sam``; ``sam_set`` is the 0-based
    index of the SAM parameter set for ``sam`` blocks, else ``None``."""

    kind: str
    sam_set: int | None = None

    def label(self) -> str:
        return f"sam{self.sam_set + 1}" if self.kind == "sam" else self.kind


def _round_half_up(value: float) -> int:
    return math.floor(value + 0.5)


def default_schedule(depth: int, n_sam_sets: int = REFERENCE_SAM_BLOCKS) -> list[BlockAttention]:
    """The reference pattern scaled to ``depth`` blocks (see the module docstring)."""
    if depth < 3:
        raise UserError(f"ReSeg-CLIP needs a vision tower of at least 3 blocks; this one has {depth}")
    n_self = max(1, _round_half_up(depth * REFERENCE_SELF_BLOCKS / REFERENCE_DEPTH))
    n_sam = max(1, _round_half_up(depth * REFERENCE_SAM_BLOCKS / REFERENCE_DEPTH))
    n_sam = min(n_sam, n_sam_sets)
    if n_sam == 1:
        sets = [0]
    else:
        # Evenly from the finest (0) to the coarsest (n_sam_sets - 1), keeping the order.
        sets = [_round_half_up(i * (n_sam_sets - 1) / (n_sam - 1)) for i in range(n_sam)]
    n_full = depth - n_sam - n_self
    return (
        [BlockAttention(FULL)] * n_full
        + [BlockAttention("sam", s) for s in sets]
        + [BlockAttention(SELF)] * n_self
    )


def parse_schedule(text: str, depth: int, n_sam_sets: int) -> list[BlockAttention]:
    """Parse a user schedule (module docstring syntax) for a tower of ``depth`` blocks.

    Raises UserError for unknown entries, SAM sets that do not exist, or more blocks than ``depth``.
    """
    entries: list[BlockAttention] = []
    for raw in text.split(","):
        token = raw.strip().lower()
        if not token:
            continue
        match = _ENTRY.match(token)
        if match is None:
            raise UserError(
                f"schedule entry {raw.strip()!r} is not understood: use full, self or samK "
                f"(K = 1..{n_sam_sets}), optionally as N*KIND, e.g. '18*full,sam1,sam2,sam3,sam4,2*self'"
            )
        count = int(match.group(1) or 1)
        if match.group(3) is not None:
            k = int(match.group(3))
            if not 1 <= k <= n_sam_sets:
                raise UserError(
                    f"schedule entry {token!r} names SAM parameter set {k}, "
                    f"but only sets 1..{n_sam_sets} exist"
                )
            block = BlockAttention("sam", k - 1)
        else:
            block = BlockAttention(match.group(2))
        entries.extend([block] * count)
    if not entries:
        raise UserError("the attention schedule is empty")
    if len(entries) > depth:
        raise UserError(
            f"the attention schedule names {len(entries)} blocks but the model's vision tower has only "
            f"{depth}; shorten the schedule (a shorter one applies to the last blocks)"
        )
    return [BlockAttention(FULL)] * (depth - len(entries)) + entries


def describe_schedule(schedule: list[BlockAttention]) -> str:
    """Compact text form, e.g. ``18*full,sam1,sam2,sam3,sam4,2*self`` (parseable by parse_schedule)."""
    parts: list[str] = []
    labels = [b.label() for b in schedule]
    i = 0
    while i < len(labels):
        j = i
        while j < len(labels) and labels[j] == labels[i]:
            j += 1
        parts.append(labels[i] if j - i == 1 else f"{j - i}*{labels[i]}")
        i = j
    return ",".join(parts)


def sam_sets_used(schedule: list[BlockAttention]) -> list[int]:
    """Sorted indices of the SAM parameter sets some block needs (only these are generated)."""
    return sorted({b.sam_set for b in schedule if b.kind == "sam"})
