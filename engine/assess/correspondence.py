"""Which reference code counts as which map class.

Three ways, in this order of precedence:
- a mapping (JSON file or object): map class name → reference codes and/or reference class names,
  e.g. ``{"building": [2, 3], "road": 5}`` or ``{"building": ["Buildings", "Sheds"]}``; the key
  ``"unclassified"`` names reference classes that agree with the map's unclassified pixels;
- by name (reference classes the mapping does not mention): a reference class name equal, ignoring
  case, to a map class's name or one of its synonyms;
- by value: a reference without class names and without a mapping uses the map's own values (1..N).
Codes listed in ``ignore`` are not assessed; codes matching nothing are not assessed either and are
counted in the report, so a forgotten class shows instead of silently vanishing.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from engine.errors import UserError
from engine.vocabulary import UNCLASSIFIED_NAME

from .map_classes import MapClasses

#: Class index of a code that is not assessed because the user ignores it / because it matches nothing.
IGNORED = -1
UNMATCHED = -2
#: Widest range of reference codes classified through a direct table (larger ranges are sorted).
LOOKUP_SPAN = 1 << 16


@dataclass
class Correspondence:
    """Reference code → class index (0..K-1 into ``names``; the last may be "unclassified")."""

    names: list[str]  # map classes, then "unclassified"
    code_to_index: dict[int, int]
    ignore: frozenset[int]
    how: str  # "mapping" | "by name" | "by value"
    description: dict  # class name → the reference codes (and names) counted as it

    def classify(self, codes: np.ndarray, unmatched: dict[int, int]) -> np.ndarray:
        """(N,) int64 codes (NO_REFERENCE excluded by the caller) → class indices, IGNORED or UNMATCHED;
        adds the pixel count of every unmatched code to ``unmatched``."""
        if codes.size == 0:
            return np.zeros(0, np.int64)
        low, high = int(codes.min()), int(codes.max())
        if high - low < LOOKUP_SPAN:  # the usual case: a table over the codes' range, no sort
            values = np.arange(low, high + 1)
            position = codes - low
        else:
            values, position = np.unique(codes, return_inverse=True)
        table = np.array(
            [IGNORED if int(v) in self.ignore else self.code_to_index.get(int(v), UNMATCHED) for v in values]
            if len(values) <= 4096
            else self._table(values),
            dtype=np.int64,
        )
        indices = table[position]
        missing = table == UNMATCHED
        if missing.any():
            counts = np.bincount(position[missing[position]], minlength=len(values))
            for value, count in zip(values[missing], counts[missing]):
                if count:
                    unmatched[int(value)] = unmatched.get(int(value), 0) + int(count)
        return indices

    def _table(self, values: np.ndarray) -> np.ndarray:
        """Class index of each of many code values (vectorised: no Python loop over the range)."""
        table = np.full(len(values), UNMATCHED, np.int64)
        for code, index in self.code_to_index.items():
            found = np.searchsorted(values, code)
            if found < len(values) and values[found] == code:
                table[found] = index
        for code in self.ignore:
            found = np.searchsorted(values, code)
            if found < len(values) and values[found] == code:
                table[found] = IGNORED
        return table


def load_mapping(mapping: str | dict | None) -> dict | None:
    """A mapping object from a JSON file path, JSON text or an already-parsed dict."""
    if mapping is None or isinstance(mapping, dict):
        return mapping
    text = str(mapping).strip()
    if not text.startswith("{"):
        path = Path(text)
        if not path.is_file():
            raise UserError(f"--mapping {text}: no such file (give a JSON file or a JSON object)")
        text = path.read_text(encoding="utf-8")
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise UserError(f"--mapping is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise UserError('--mapping must be a JSON object, e.g. {"building": [2, 3], "road": 5}')
    return data


def build_correspondence(
    map_classes: MapClasses,
    reference_names: dict[int, str] | None,
    mapping: dict | None,
    ignore: list[int] | None,
) -> Correspondence:
    names = [*map_classes.names, UNCLASSIFIED_NAME]
    index_of = {name.casefold(): k for k, name in enumerate(names)}
    ignore_set = frozenset(int(v) for v in ignore or [])
    codes_of_name: dict[str, list[int]] = {}
    for code, name in (reference_names or {}).items():
        codes_of_name.setdefault(name.casefold().strip(), []).append(code)
    code_to_index: dict[int, int] = {}
    description: dict[str, list] = {}

    def assign(code: int, k: int, shown) -> None:
        if code in code_to_index and code_to_index[code] != k:
            raise UserError(
                f"reference code {code} is mapped to both {names[code_to_index[code]]!r} and {names[k]!r}"
            )
        code_to_index[code] = k
        description.setdefault(names[k], []).append(shown)

    if mapping:
        how = "mapping"
        for key, value in mapping.items():
            k = index_of.get(str(key).casefold())
            if k is None:
                raise UserError(
                    f"--mapping names {key!r}, which is not a class of the map; "
                    f"the map's classes: {', '.join(names)}"
                )
            for item in value if isinstance(value, list) else [value]:
                if isinstance(item, bool) or not isinstance(item, (int, str)):
                    raise UserError(f"--mapping {key!r}: use reference codes (integers) or class names")
                if isinstance(item, int):
                    assign(item, k, item)
                    continue
                matched = codes_of_name.get(item.casefold().strip())
                if matched is None and item.strip().lstrip("-").isdigit():
                    matched = [int(item)]
                if matched is None:
                    known = ", ".join(sorted({n for n in (reference_names or {}).values()})) or "none"
                    raise UserError(
                        f"--mapping {key!r}: the reference has no class named {item!r} (its names: {known})"
                    )
                for code in matched:
                    assign(code, k, item)
    if reference_names:
        how = "mapping, then by name" if mapping else "by name"
        for code, name in sorted(reference_names.items()):
            if code in code_to_index:
                continue
            word = name.casefold().strip()
            k = index_of.get(word)
            if k is None:  # a synonym of a map class (the first class listing it)
                k = next((i for i, c in enumerate(map_classes.classes) if word in c.synonyms), None)
            if k is not None:
                assign(code, k, name)
    elif not mapping:
        how = "by value"
        for position, map_class in enumerate(map_classes.classes):
            assign(map_class.value, position, map_class.value)
    return Correspondence(names, code_to_index, ignore_set, how, description)
