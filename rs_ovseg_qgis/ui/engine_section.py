"""The panel's "Engine" section: which interpreter runs the engine, Test engine, Set up engine."""

from __future__ import annotations

from collections.abc import Callable

from qgis.core import Qgis, QgsApplication
from qgis.gui import QgsCollapsibleGroupBox, QgsFileWidget
from qgis.PyQt.QtWidgets import QFormLayout, QHBoxLayout, QMessageBox, QPushButton

from ..core import engine_service
from ..core.diagnostics import EngineDiagnosticsTask
from ..core.engine_setup import EngineSetupTask
from ..core.settings import base_python, engine_python, managed_venv_dir, set_engine_python, venv_python


class EngineSection(QgsCollapsibleGroupBox):
    """Collapsed by default. ``show_message(text, level)`` reports to the user, ``set_status(text)``
    writes the panel's status line; both belong to the dock."""

    def __init__(self, parent, show_message: Callable, set_status: Callable[[str], None]):
        super().__init__("Engine", parent)
        self.setCollapsed(True)
        self.show_message = show_message
        self.set_status = set_status
        self._tasks: list = []  # tasks in flight, kept alive for their signals
        form = QFormLayout(self)
        self.python_widget = QgsFileWidget(self)
        self.python_widget.setFilePath(str(engine_python()))
        self.python_widget.setToolTip("The Python interpreter that runs the engine (its own environment)")
        self.python_widget.fileChanged.connect(lambda path: set_engine_python(path or None))
        form.addRow("Python", self.python_widget)
        buttons = QHBoxLayout()
        self.test_engine_button = QPushButton("Test engine", self)
        self.test_engine_button.clicked.connect(self.test_engine)
        self.setup_engine_button = QPushButton("Set up engine…", self)
        self.setup_engine_button.clicked.connect(self.setup_engine)
        buttons.addWidget(self.test_engine_button)
        buttons.addWidget(self.setup_engine_button)
        form.addRow(buttons)

    def test_engine(self) -> None:
        task = EngineDiagnosticsTask()
        self.set_status("testing the engine…")

        def done():
            self._tasks.remove(task)
            engine_service.log("info", task.report)
            self.set_status("engine OK" if task.ok else "engine problem: see the report")
            icon = QMessageBox.Icon.Information if task.ok else QMessageBox.Icon.Warning
            title, text = "RS OVSeg engine", "Engine report (select and copy for a bug report)"
            box = QMessageBox(icon, title, text, QMessageBox.StandardButton.Ok, self)
            box.setDetailedText(task.report)
            box.open()

        task.taskCompleted.connect(done)
        task.taskTerminated.connect(done)
        self._tasks.append(task)
        QgsApplication.taskManager().addTask(task)

    def setup_engine(self) -> None:
        python = base_python()
        if python is None:
            self.show_message(
                "no Python 3 found to create the engine's environment: install Python 3", Qgis.Critical
            )
            return
        venv = managed_venv_dir()
        answer = QMessageBox.question(
            self,
            "Set up engine",
            f"Create the engine's environment in\n{venv}\nwith {python} and install PyTorch and the other "
            "dependencies (several GB)? Progress is written to the log panel (tab RS OVSeg).",
        )
        if answer != QMessageBox.StandardButton.Yes:
            return
        task = EngineSetupTask(python, venv, engine_service.log)

        def done(ok: bool):
            self._tasks.remove(task)
            if ok:
                set_engine_python(venv_python(venv))
                self.python_widget.setFilePath(str(venv_python(venv)))
                self.show_message("engine environment ready", Qgis.Success)
            else:
                self.show_message(f"engine set-up failed: {task.error}", Qgis.Critical)

        task.taskCompleted.connect(lambda: done(True))
        task.taskTerminated.connect(lambda: done(False))
        self._tasks.append(task)
        QgsApplication.taskManager().addTask(task)
