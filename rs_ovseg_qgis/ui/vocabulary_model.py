"""Table model over a Vocabulary: one row per class (name, synonyms, colour, threshold)."""

from __future__ import annotations

from qgis.PyQt.QtCore import QAbstractTableModel, QModelIndex, Qt, pyqtSignal
from qgis.PyQt.QtGui import QColor

from ..core.vocabulary import Vocabulary, VocabularyClass

COLUMNS = ["Class", "Synonyms", "Colour", "Min"]  # Min: the class's score threshold
NAME, SYNONYMS, COLOUR, THRESHOLD = range(4)


class VocabularyTableModel(QAbstractTableModel):
    """Edits a Vocabulary in place; ``vocabularyChanged`` fires after every change."""

    vocabularyChanged = pyqtSignal()  # noqa: N815 (Qt signal naming)

    def __init__(self, vocabulary: Vocabulary | None = None, parent=None):
        super().__init__(parent)
        self._vocabulary = vocabulary or Vocabulary()
        # What Min compares for the chosen method (the dock sets it when the method changes).
        self.threshold_meaning = "minimum probability of the winning class (0 to 1)"

    # --- whole vocabulary ------------------------------------------------------------------------
    def vocabulary(self) -> Vocabulary:
        return self._vocabulary

    def set_vocabulary(self, vocabulary: Vocabulary) -> None:
        self.beginResetModel()
        self._vocabulary = vocabulary.with_colours()
        self.endResetModel()
        self.vocabularyChanged.emit()

    # --- Qt model API ----------------------------------------------------------------------------
    def rowCount(self, parent=QModelIndex()):  # noqa: N802, B008 (Qt API)
        return 0 if parent.isValid() else len(self._vocabulary.classes)

    def columnCount(self, parent=QModelIndex()):  # noqa: N802, B008 (Qt API)
        return 0 if parent.isValid() else len(COLUMNS)

    def headerData(self, section, orientation, role=Qt.ItemDataRole.DisplayRole):  # noqa: N802
        if role != Qt.ItemDataRole.DisplayRole:
            return None
        if orientation == Qt.Orientation.Horizontal:
            return COLUMNS[section]
        return str(section + 1)  # the value this class gets in the class raster

    def flags(self, index):
        return super().flags(index) | Qt.ItemFlag.ItemIsEditable

    def data(self, index, role=Qt.ItemDataRole.DisplayRole):
        if not index.isValid():
            return None
        item = self._vocabulary.classes[index.row()]
        column = index.column()
        if role in (Qt.ItemDataRole.DisplayRole, Qt.ItemDataRole.EditRole):
            if column == NAME:
                return item.name
            if column == SYNONYMS:
                if item.prompts and role == Qt.ItemDataRole.DisplayRole:
                    # Whole prompts are not comma-separated words: shown, edited in the JSON only.
                    return "; ".join(f"“{p}”" for p in item.prompts)
                return ", ".join(item.synonyms)
            if column == COLOUR:  # the swatch shows it; the hex text only while editing (narrow dock)
                return item.color if role == Qt.ItemDataRole.EditRole else ""
            if column == THRESHOLD:
                return "" if item.threshold is None else f"{item.threshold:g}"
        if role == Qt.ItemDataRole.DecorationRole and column == COLOUR:
            return QColor(item.color)
        if role == Qt.ItemDataRole.ToolTipRole:
            tips = {
                NAME: "The legend label; also queried as text",
                SYNONYMS: "More words for the same class, separated by commas; the best one wins",
                COLOUR: "#rrggbb; double-click to pick",
                THRESHOLD: f"Min for this class: {self.threshold_meaning}; empty = the run's threshold",
            }
            return tips[column]
        return None

    def setData(self, index, value, role=Qt.ItemDataRole.EditRole):  # noqa: N802 (Qt API)
        if not index.isValid() or role != Qt.ItemDataRole.EditRole:
            return False
        item = self._vocabulary.classes[index.row()]
        text = str(value).strip() if value is not None else ""
        column = index.column()
        if column == NAME:
            if not text:
                return False
            item.name = text
        elif column == SYNONYMS:
            item.synonyms = [w.strip() for w in text.split(",") if w.strip()]
        elif column == COLOUR:
            colour = QColor(value) if isinstance(value, QColor) else QColor(text)
            if not colour.isValid():
                return False
            item.color = colour.name()
        elif column == THRESHOLD:
            if not text:
                item.threshold = None
            else:
                try:
                    threshold = float(text)
                except ValueError:
                    return False
                if not 0.0 <= threshold <= 1.0:
                    return False
                item.threshold = threshold
        self.dataChanged.emit(index, index)
        self.vocabularyChanged.emit()
        return True

    # --- rows ------------------------------------------------------------------------------------
    def add_class(self, name: str = "", synonyms: list[str] | None = None) -> int:
        row = len(self._vocabulary.classes)
        self.beginInsertRows(QModelIndex(), row, row)
        self._vocabulary.classes.append(VocabularyClass(name or f"class {row + 1}", list(synonyms or [])))
        self._vocabulary.with_colours()
        self.endInsertRows()
        self.vocabularyChanged.emit()
        return row

    def remove_rows(self, rows: list[int]) -> None:
        for row in sorted(set(rows), reverse=True):
            if 0 <= row < len(self._vocabulary.classes):
                self.beginRemoveRows(QModelIndex(), row, row)
                del self._vocabulary.classes[row]
                self.endRemoveRows()
        self.vocabularyChanged.emit()

    def move_row(self, row: int, delta: int) -> int:
        """Move one class up (-1) or down (+1); returns its new row (unchanged at the ends)."""
        target = row + delta
        classes = self._vocabulary.classes
        if not (0 <= row < len(classes) and 0 <= target < len(classes)):
            return row
        # Qt's destination index is "before which row", counted before the move.
        destination = target + 1 if delta > 0 else target
        self.beginMoveRows(QModelIndex(), row, row, QModelIndex(), destination)
        classes.insert(target, classes.pop(row))
        self.endMoveRows()
        self.vocabularyChanged.emit()
        return target

    def append_lines(self, text: str) -> int:
        """Paste: one class per line, commas for synonyms; returns how many classes were added."""
        pasted = Vocabulary.from_lines(text).classes
        for item in pasted:
            self.add_class(item.name, item.synonyms)
        return len(pasted)
