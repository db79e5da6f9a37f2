"""The dock's state kept in the QGIS project: the vocabulary (saved on every edit, loaded when a project
is read or cleared) and the output folder.

A mixin of ``RsOvsegDock``: it reads the dock's ``vocabulary_editor``, ``vocabulary_box`` and
``output_widget`` and reports through ``show_message``.
"""

from __future__ import annotations

from qgis.core import Qgis, QgsProject

from ..core.outputs import OutputLocationError, output_dir, set_output_dir
from ..core.vocabulary import Vocabulary, VocabularyError
from ..definitions import PROJECT_SCOPE, PROJECT_VOCABULARY

DEFAULT_VOCABULARY_PRESET = "OpenEarthMap"


class ProjectState:
    """Vocabulary and output folder to and from the project."""

    def _connect_project_state(self) -> None:
        project = QgsProject.instance()
        project.readProject.connect(self._project_read)
        project.cleared.connect(self.load_project_state)
        self.vocabulary_editor.model.vocabularyChanged.connect(self.save_vocabulary_to_project)
        self.vocabulary_editor.model.vocabularyChanged.connect(self.update_vocabulary_title)
        self.vocabulary_editor.model.vocabularyChanged.connect(self.vocabulary_edited)
        self.load_project_state()

    def _project_read(self, _document) -> None:
        self.load_project_state()

    def load_project_state(self) -> None:
        project = QgsProject.instance()
        text, found = project.readEntry(PROJECT_SCOPE, PROJECT_VOCABULARY, "")
        vocabulary = None
        if found and text:
            try:
                vocabulary = Vocabulary.from_json(text)
            except VocabularyError as error:
                self.show_message(f"the project's vocabulary is unreadable: {error}", Qgis.Warning)
        if vocabulary is None:
            from ..core.presets import load_preset

            vocabulary = load_preset(DEFAULT_VOCABULARY_PRESET)
        model = self.vocabulary_editor.model
        model.blockSignals(True)  # loading is not an edit: the project must not turn dirty
        model.set_vocabulary(vocabulary)
        model.blockSignals(False)
        self.vocabulary_editor.table.reset()
        self.update_vocabulary_title()
        self.output_widget.blockSignals(True)
        self.output_widget.setFilePath(str(output_dir(project)))
        self.output_widget.blockSignals(False)

    def update_vocabulary_title(self) -> None:
        """The group's title names the vocabulary in use (the preset list only offers others)."""
        vocabulary = self.vocabulary()
        count = len(vocabulary.classes)
        plural = "es" if count != 1 else ""
        self.vocabulary_box.setTitle(f"Vocabulary: {vocabulary.name} ({count} class{plural})")

    def save_vocabulary_to_project(self) -> None:
        QgsProject.instance().writeEntry(PROJECT_SCOPE, PROJECT_VOCABULARY, self.vocabulary().to_json())

    def _output_dir_changed(self, path: str) -> None:
        try:
            set_output_dir(path or None)
        except OutputLocationError as error:
            self.show_message(str(error), Qgis.Warning)
