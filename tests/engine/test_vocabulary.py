"""Vocabulary parsing: command-line classes, JSON and SegEarth-OV's plain text; errors are user errors."""

from __future__ import annotations

import json

import pytest

from engine.errors import UserError
from engine.vocabulary import (
    DEFAULT_PALETTE,
    build_vocabulary,
    from_json_data,
    from_text,
    load_vocabulary_file,
    parse_colour,
)


def test_class_arguments_synonyms_queries_and_index():
    vocab = build_vocabulary(["building, roof ,house", "road", "water,river"])
    assert vocab.names == ["building", "road", "water"]
    assert vocab.classes[0].synonyms == ("building", "roof", "house")
    assert vocab.queries() == ["building", "roof", "house", "road", "water", "river"]
    assert vocab.query_to_class() == [0, 0, 0, 1, 2, 2]
    assert [c.colour for c in vocab.classes] == list(DEFAULT_PALETTE[:3])
    assert vocab.category_names() == ["unclassified", "building", "road", "water"]
    assert vocab.thresholds(0.1) == [0.1, 0.1, 0.1]


def test_json_form_round_trip(tmp_path):
    data = [
        {"name": "field", "synonyms": ["meadow", "grass"], "colour": "#00ff00", "threshold": 0.3},
        {"name": "road", "colour": [10, 20, 30]},
        "water,lake",
    ]
    path = tmp_path / "v.json"
    path.write_text(json.dumps({"classes": data}))
    vocab = load_vocabulary_file(path)
    assert vocab.queries() == ["field", "meadow", "grass", "road", "water", "lake"]
    assert vocab.classes[0].colour == (0, 255, 0) and vocab.classes[1].colour == (10, 20, 30)
    assert vocab.thresholds(0.1) == [0.3, 0.1, 0.1]
    assert from_json_data(vocab.to_json()) == vocab


def test_segearth_plain_text(tmp_path):
    path = tmp_path / "cls_openearthmap.txt"
    path.write_text("background\nbareland,barren\n\ngrass\nroad,parking lot\n")
    vocab = load_vocabulary_file(path)
    assert vocab.names == ["background", "bareland", "grass", "road"]
    assert vocab.classes[3].synonyms == ("road", "parking lot")
    assert from_text("a\nb").names == ["a", "b"]


def test_file_classes_come_first_then_arguments(tmp_path):
    path = tmp_path / "v.txt"
    path.write_text("tree\n")
    vocab = build_vocabulary(["road"], file=path)
    assert vocab.names == ["tree", "road"]
    assert vocab.classes[1].colour == DEFAULT_PALETTE[1]


@pytest.mark.parametrize(
    "classes, message",
    [
        ([], "vocabulary is empty"),
        (["road", "Road"], "duplicate class"),
        ([" , "], "empty class"),
    ],
)
def test_bad_vocabularies(classes, message):
    with pytest.raises(UserError, match=message):
        build_vocabulary(classes)


@pytest.mark.parametrize("value", ["#12345", "#gg0000", [1, 2], [0, 0, 256], "red", [True, 0, 0]])
def test_bad_colours(value):
    with pytest.raises(UserError, match="bad colour"):
        parse_colour(value, "x")


def test_bad_json(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(UserError, match="not valid JSON"):
        load_vocabulary_file(bad)
    with pytest.raises(UserError, match="threshold"):
        from_json_data([{"name": "a", "threshold": 2}])
    with pytest.raises(UserError, match='needs a "name"'):
        from_json_data([{"synonyms": ["a"]}])
    with pytest.raises(UserError, match="cannot read"):
        load_vocabulary_file(tmp_path / "missing.txt")
