"""Automatic choice of the backbone dtype, and its overrides."""

from __future__ import annotations

import pytest
import torch

from engine.errors import UserError
from engine.runtime import precision


def test_cpu_uses_bf16_only_with_matrix_units(monkeypatch):
    monkeypatch.setattr(precision, "cpu_has_bf16_matrix_units", lambda: True)
    assert precision.choose_dtype("cpu") is torch.bfloat16
    monkeypatch.setattr(precision, "cpu_has_bf16_matrix_units", lambda: False)
    assert precision.choose_dtype("cpu") is torch.float32
    assert precision.choose_dtype(torch.device("cpu")) is torch.float32


def test_matrix_unit_probe_reads_torch_cpu_features(monkeypatch):
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: False, raising=False)
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: True, raising=False)
    assert precision.cpu_has_bf16_matrix_units()
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False, raising=False)
    assert not precision.cpu_has_bf16_matrix_units()
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: True, raising=False)
    assert precision.cpu_has_bf16_matrix_units()


def test_gpu_choices(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *args, **kwargs: True)
    assert precision.choose_dtype("cuda") is torch.bfloat16
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *args, **kwargs: False)
    assert precision.choose_dtype("cuda:0") is torch.float16
    assert precision.choose_dtype("mps") is torch.float16


def test_resolve_names_dtypes_and_auto(monkeypatch):
    monkeypatch.setattr(precision, "cpu_has_bf16_matrix_units", lambda: True)
    assert precision.resolve_dtype("auto", "cpu") is torch.bfloat16
    assert precision.resolve_dtype(None, "cpu") is torch.bfloat16
    assert precision.resolve_dtype("float32", "cpu") is torch.float32
    assert precision.resolve_dtype("float16", "cpu") is torch.float16
    assert precision.resolve_dtype(torch.bfloat16, "cpu") is torch.bfloat16
    with pytest.raises(UserError, match="unknown dtype 'fp8'"):
        precision.resolve_dtype("fp8", "cpu")
