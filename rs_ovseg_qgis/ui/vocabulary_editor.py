"""The vocabulary part of the dock: presets, the class table, and its buttons."""

from __future__ import annotations

from pathlib import Path

from qgis.PyQt.QtCore import Qt, pyqtSignal
from qgis.PyQt.QtGui import QColor
from qgis.PyQt.QtWidgets import (
    QAbstractItemView,
    QApplication,
    QColorDialog,
    QComboBox,
    QFileDialog,
    QHBoxLayout,
    QHeaderView,
    QInputDialog,
    QMenu,
    QPushButton,
    QTableView,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from ..core.presets import load_preset, preset_files
from ..core.vocabulary import Vocabulary, VocabularyError
from .vocabulary_model import COLOUR, NAME, SYNONYMS, THRESHOLD, VocabularyTableModel


class VocabularyEditor(QWidget):
    """Edits the run's vocabulary. ``error(message)`` reports a file the user picked that is unusable."""

    error = pyqtSignal(str)

    def __init__(self, parent=None):
        super().__init__(parent)
        self.model = VocabularyTableModel(parent=self)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)

        presets = QHBoxLayout()
        self.preset_combo = QComboBox(self)
        self.preset_combo.setToolTip("Class sets of common benchmarks and a few task presets")
        self.preset_combo.addItems(list(preset_files()))
        self.preset_combo.setSizeAdjustPolicy(
            QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon
        )
        self.preset_combo.setMinimumContentsLength(8)
        self.load_preset_button = QPushButton("Use preset", self)
        self.load_preset_button.clicked.connect(self.use_selected_preset)
        presets.addWidget(self.preset_combo, 1)
        presets.addWidget(self.load_preset_button)
        layout.addLayout(presets)

        self.table = QTableView(self)
        self.table.setModel(self.model)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setMinimumHeight(150)
        header = self.table.horizontalHeader()
        header.setSectionResizeMode(NAME, QHeaderView.ResizeMode.Interactive)
        header.setSectionResizeMode(SYNONYMS, QHeaderView.ResizeMode.Stretch)
        header.setSectionResizeMode(COLOUR, QHeaderView.ResizeMode.Fixed)
        self.table.setColumnWidth(COLOUR, 52)
        header.setSectionResizeMode(THRESHOLD, QHeaderView.ResizeMode.Fixed)
        self.table.setColumnWidth(THRESHOLD, 44)
        self.table.setColumnWidth(NAME, 96)
        self.table.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.table.verticalHeader().setDefaultSectionSize(22)
        self.table.doubleClicked.connect(self._double_clicked)
        layout.addWidget(self.table, 1)

        buttons = QHBoxLayout()
        self.add_button = self._tool("+", "Add a class", self.add_class)
        self.remove_button = self._tool("−", "Remove the selected classes", self.remove_selected)
        self.up_button = self._tool("▲", "Move the class up (lower raster value)", lambda: self.move(-1))
        self.down_button = self._tool("▼", "Move the class down", lambda: self.move(1))
        # Paste / import / export share one menu button so the row fits a ~300 px wide dock.
        self.more_button = QToolButton(self)
        self.more_button.setText("List ▾")
        self.more_button.setAutoRaise(True)
        self.more_button.setPopupMode(QToolButton.ToolButtonPopupMode.InstantPopup)
        menu = QMenu(self.more_button)
        self.paste_action = menu.addAction("Paste classes (one per line, commas for synonyms)")
        self.paste_action.triggered.connect(lambda: self.paste())
        self.import_action = menu.addAction("Import vocabulary (JSON or SegEarth-OV .txt)…")
        self.import_action.triggered.connect(lambda: self.import_json())
        self.export_action = menu.addAction("Export vocabulary as JSON…")
        self.export_action.triggered.connect(lambda: self.export_json())
        self.more_button.setMenu(menu)
        for button in (self.add_button, self.remove_button, self.up_button, self.down_button):
            buttons.addWidget(button)
        buttons.addStretch(1)
        buttons.addWidget(self.more_button)
        layout.addLayout(buttons)

    def _tool(self, text: str, tip: str, slot) -> QToolButton:
        button = QToolButton(self)
        button.setText(text)
        button.setAutoRaise(True)
        button.setToolTip(tip)
        button.clicked.connect(slot)
        return button

    # --- vocabulary in and out --------------------------------------------------------------------
    def vocabulary(self) -> Vocabulary:
        return self.model.vocabulary()

    def set_vocabulary(self, vocabulary: Vocabulary) -> None:
        self.model.set_vocabulary(vocabulary)

    def use_selected_preset(self) -> None:
        self.set_vocabulary(load_preset(self.preset_combo.currentText()))

    def import_json(self, path: str | None = None) -> None:
        if not path:
            path, _ = QFileDialog.getOpenFileName(self, "Import vocabulary", "", "Vocabulary (*.json *.txt)")
        if not path:
            return
        try:
            if Path(path).suffix.lower() == ".json":
                vocabulary = Vocabulary.load(path)
            else:  # SegEarth-OV's cls_*.txt: one class per line
                vocabulary = Vocabulary.from_lines(Path(path).read_text(encoding="utf-8"), Path(path).stem)
        except (OSError, VocabularyError) as error:
            self.error.emit(f"cannot import {path}: {error}")
            return
        self.set_vocabulary(vocabulary)

    def export_json(self, path: str | None = None) -> None:
        if not path:
            path, _ = QFileDialog.getSaveFileName(self, "Export vocabulary", "", "Vocabulary (*.json)")
        if not path:
            return
        try:
            self.vocabulary().save(path)
        except OSError as error:
            self.error.emit(f"cannot write {path}: {error}")

    # --- rows --------------------------------------------------------------------------------------
    def selected_rows(self) -> list[int]:
        return sorted({index.row() for index in self.table.selectionModel().selectedRows()})

    def add_class(self) -> None:
        row = self.model.add_class()
        self.table.selectRow(row)
        self.table.edit(self.model.index(row, NAME))

    def remove_selected(self) -> None:
        self.model.remove_rows(self.selected_rows())

    def move(self, delta: int) -> None:
        rows = self.selected_rows()
        if len(rows) == 1:
            self.table.selectRow(self.model.move_row(rows[0], delta))

    def paste(self, text: str | None = None) -> None:
        """Append classes from ``text`` (default: the clipboard)."""
        text = text if text is not None else QApplication.clipboard().text()
        if not self.model.append_lines(text):
            self.error.emit("the clipboard holds no class names (one per line, commas for synonyms)")

    def _double_clicked(self, index) -> None:
        if index.column() != COLOUR:
            return
        current = QColor(self.model.data(index))
        colour = QColorDialog.getColor(current, self, "Class colour")
        if colour.isValid():
            self.model.setData(index, colour.name())

    def rename_vocabulary(self) -> None:
        name, ok = QInputDialog.getText(self, "Vocabulary name", "Name:", text=self.vocabulary().name)
        if ok and name.strip():
            self.vocabulary().name = name.strip()
            self.model.vocabularyChanged.emit()
