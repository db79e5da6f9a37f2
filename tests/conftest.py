"""Fixtures for every test, engine and plugin alike: the engine's own files (text embeddings, run speeds)
go to temporary places, so tests and the workers they start never touch the user's."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest


def _environment_set(name: str, value: str) -> Iterator[None]:
    previous = os.environ.get(name)
    os.environ[name] = value
    yield
    if previous is None:
        os.environ.pop(name, None)
    else:
        os.environ[name] = previous


@pytest.fixture(autouse=True, scope="session")
def text_embeddings_in_a_temporary_folder(tmp_path_factory):
    """The engine keeps text embeddings on disk (engine.clip.text_store)."""
    yield from _environment_set("RS_OVSEG_TEXT_CACHE", str(tmp_path_factory.mktemp("text-embeddings")))


@pytest.fixture(autouse=True, scope="session")
def run_speeds_in_a_temporary_file(tmp_path_factory):
    """Finished runs record their seconds per window (engine.cli.run_speed)."""
    speeds = tmp_path_factory.mktemp("run-speed") / "window-speed.json"
    yield from _environment_set("RS_OVSEG_SPEED_FILE", str(speeds))
