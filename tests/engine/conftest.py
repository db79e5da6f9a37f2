"""Shared fixtures for the engine tests (which run without QGIS)."""

import os

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


@pytest.fixture(autouse=True, scope="session")
def text_embeddings_in_a_temporary_folder(tmp_path_factory):
    """The engine keeps text embeddings on disk (engine.clip.text_store): tests, and the workers they
    start, use a folder of their own, never the user's."""
    previous = os.environ.get("RS_OVSEG_TEXT_CACHE")
    os.environ["RS_OVSEG_TEXT_CACHE"] = str(tmp_path_factory.mktemp("text-embeddings"))
    yield
    if previous is None:
        os.environ.pop("RS_OVSEG_TEXT_CACHE", None)
    else:
        os.environ["RS_OVSEG_TEXT_CACHE"] = previous


@pytest.fixture(autouse=True, scope="session")
def run_speeds_in_a_temporary_file(tmp_path_factory):
    """Finished runs record their seconds per window (engine.cli.run_speed): tests, and the workers they
    start, keep them in a file of their own, never the user's."""
    previous = os.environ.get("RS_OVSEG_SPEED_FILE")
    os.environ["RS_OVSEG_SPEED_FILE"] = str(tmp_path_factory.mktemp("run-speed") / "window-speed.json")
    yield
    if previous is None:
        os.environ.pop("RS_OVSEG_SPEED_FILE", None)
    else:
        os.environ["RS_OVSEG_SPEED_FILE"] = previous
