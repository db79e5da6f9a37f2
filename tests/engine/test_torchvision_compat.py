"""The torchvision compatibility step: pure-PyTorch NMS equals a brute-force NMS, and is wired in."""

import subprocess
import sys

import pytest
import torch

from engine.compat import torchvision_ops


def brute_force_nms(boxes, scores, threshold):
    """The definition, written out: by descending score, keep a box unless a kept box overlaps it."""

    def iou(a, b):
        ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
        iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
        inter = ix * iy
        union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
        return inter / union

    order = sorted(range(len(scores)), key=lambda i: (-scores[i], i))
    kept = []
    for i in order:
        if all(iou(boxes[i], boxes[k]) <= threshold for k in kept):
            kept.append(i)
    return kept


def random_boxes(generator, n):
    corner = torch.rand(n, 2, generator=generator) * 100
    size = torch.rand(n, 2, generator=generator) * 40 + 1
    return torch.cat([corner, corner + size], dim=1)


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("threshold", [0.0, 0.3, 0.7])
def test_pure_nms_matches_brute_force(seed, threshold):
    generator = torch.Generator().manual_seed(seed)
    boxes = random_boxes(generator, 60)
    scores = torch.rand(60, generator=generator)
    kept = torchvision_ops.pure_nms(boxes, scores, threshold)
    assert kept.dtype == torch.long
    assert kept.tolist() == brute_force_nms(boxes.tolist(), scores.tolist(), threshold)


def test_pure_nms_empty_input():
    assert torchvision_ops.pure_nms(torch.zeros(0, 4), torch.zeros(0), 0.5).numel() == 0


def test_identical_boxes_keep_only_the_best():
    boxes = torch.tensor([[0.0, 0, 10, 10]] * 3)
    scores = torch.tensor([0.2, 0.9, 0.5])
    assert torchvision_ops.pure_nms(boxes, scores, 0.5).tolist() == [1]


def test_torchvision_and_sam_import_and_batched_nms_works():
    """In a fresh interpreter (as users and the acceptance check start one), SAM's imports and
    torchvision's batched_nms work; the hook reports which path it took."""
    code = (
        "import torch, open_clip, segment_anything\n"
        "from torchvision.ops.boxes import batched_nms\n"
        "from engine.compat import torchvision_ops as t\n"
        "b = torch.tensor([[0., 0, 10, 10], [1, 1, 10, 10], [0, 0, 10, 10]])\n"
        "keep = batched_nms(b, torch.tensor([.9, .8, .7]), torch.tensor([0, 0, 1]), 0.5)\n"
        "print(t.mode(), keep.tolist())\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    mode, kept = out.stdout.strip().split(" ", 1)
    assert mode in {"native", "pure-pytorch"}
    assert kept == "[0, 2]"  # box 1 overlaps box 0 in the same category; box 2 is in another one
