"""The plugin's vocabulary model, its presets, and agreement with the engine's own parser."""

from __future__ import annotations

import json

import pytest

from engine import vocabulary as engine_vocabulary
from rs_ovseg_qgis.core.presets import load_preset, preset_files
from rs_ovseg_qgis.core.vocabulary import DEFAULT_PALETTE, Vocabulary, VocabularyError, hex_to_rgb

# SegEarth-OV's configs/cls_*.txt, as one class per line with commas for synonyms.
SEGEARTH_CLASS_FILES = {
    "OpenEarthMap": "background\nbareland,barren\ngrass\npavement\nroad\ntree,forest\nwater,river\ncropland\n"
    "building,roof,house",
    "LoveDA": "background\nbuilding,roof,house\nroad\nwater\nbarren\nforest\nagricultural",
    "ISPRS Potsdam": "road,parking lot\nbuilding\nlow vegetation\ntree\ncar\nclutter,background",
    "ISPRS Vaihingen": "impervious surface\nbuilding\nlow vegetation\ntree\ncar\nclutter",
    "UAVid": "background\nbuilding\nroad\ncar\ntree\nvegetation\nhuman",
    "UDD5": "vegetation\nbuilding\nroad\nvehicle\nbackground",
    "VDD": "background\nfacade\nroad\nvegetation\nvehicle\nroof\nwater",
}


def test_lines_give_classes_with_synonyms_and_distinct_colours():
    vocabulary = Vocabulary.from_lines("building, roof ,house\n\nroad\n  water,river  \n")
    assert vocabulary.class_names() == ["building", "road", "water"]
    assert vocabulary.classes[0].synonyms == ["roof", "house"]
    assert [c.color for c in vocabulary.classes] == DEFAULT_PALETTE[:3]
    assert Vocabulary.from_lines(vocabulary.to_lines()).to_dict() == vocabulary.to_dict()


def test_json_round_trip_keeps_unknown_keys_and_thresholds():
    data = {
        "name": "mine",
        "threshold": 0.2,
        "templates": ["an aerial image of a {}"],
        "classes": [
            {"name": "building", "synonyms": ["roof"], "colour": "#112233", "threshold": 0.5},
            "road,street",
        ],
    }
    vocabulary = Vocabulary.from_json(json.dumps(data))
    assert vocabulary.classes[0].color == "#112233" and vocabulary.classes[0].threshold == 0.5
    assert vocabulary.classes[1].synonyms == ["street"]
    again = Vocabulary.from_json(vocabulary.to_json())
    assert again.to_dict() == vocabulary.to_dict()
    assert again.extra == {"templates": ["an aerial image of a {}"]}
    # An older top-level threshold is SegEarth-OV's (a probability); other methods keep their own default.
    assert again.method_thresholds == {"segearth-ov": 0.2} and again.threshold is None
    assert again.threshold_for("segearth-ov") == 0.2 and again.threshold_for("reseg-clip") is None


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('{"classes": []}', "no classes"),
        ('{"classes": ["a", "A"]}', "appears twice"),
        ('{"classes": [{"name": "a", "threshold": 2}]}', "use 0 to 1"),
        ('{"nothing": 1}', '"classes" list'),
        ("{oops", "not valid JSON"),
    ],
)
def test_bad_vocabularies_are_refused_with_a_message(text, message):
    with pytest.raises(VocabularyError, match=message):
        Vocabulary.from_json(text).validate()


def test_every_benchmark_preset_matches_segearth_ov_class_files():
    for label, lines in SEGEARTH_CLASS_FILES.items():
        assert load_preset(label).to_lines() == lines, label


def test_presets_cover_benchmarks_and_tasks_and_are_valid():
    labels = list(preset_files())
    for expected in [
        "OpenEarthMap",
        "LoveDA",
        "iSAID",
        "UAVid",
        "UDD5",
        "VDD",
        "Buildings",
        "Roads",
        "Water",
    ]:
        assert expected in labels
    assert labels.index("Buildings") > labels.index("VDD")  # task presets after the benchmarks
    for label in labels:
        vocabulary = load_preset(label)
        vocabulary.validate()
        assert len({c.color for c in vocabulary.classes}) == len(vocabulary.classes), label
    assert len(load_preset("iSAID").classes) == 16
    assert load_preset("OpenEarthMap").method_thresholds == {"segearth-ov": 0.1}
    reference = load_preset("ReSeg-CLIP reference (Potsdam)")
    assert sum(len(c.prompts) for c in reference.classes) == 19
    assert reference.to_dict()["classes"][0]["prompts"][0] == "Aerial photo of a street in the city"


@pytest.mark.parametrize("preset", ["OpenEarthMap", "ReSeg-CLIP reference (Potsdam)"])
def test_the_engine_reads_the_plugin_vocabulary_identically(preset):
    vocabulary = load_preset(preset)
    parsed = engine_vocabulary.from_json_data(vocabulary.to_dict())
    assert parsed.names == vocabulary.class_names()
    assert parsed.method_thresholds == vocabulary.method_thresholds
    for ours, theirs in zip(vocabulary.classes, parsed.classes):
        assert theirs.queries() == ours.queries()
        assert theirs.prompts == tuple(ours.prompts)
        assert theirs.colour == hex_to_rgb(ours.color)
