"""Shared fixtures for the engine tests (which run without QGIS)."""

import pytest
import torch


@pytest.fixture(scope="module")
def one_thread():
    """One intra-op thread for tiny models: they are too small to share out, and on a busy 2-core
    machine several threads spin against each other (measured ~10× slower for the tiny SAM)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
