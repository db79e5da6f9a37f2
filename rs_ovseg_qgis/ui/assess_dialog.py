"""The "Assess against reference…" dialog: which map, which reference (layer or file), field, mapping."""

from __future__ import annotations

from pathlib import Path

from osgeo import gdal
from qgis.core import QgsMapLayer, QgsMapLayerProxyModel, QgsRasterLayer, QgsVectorLayer, QgsWkbTypes
from qgis.gui import QgsFieldComboBox, QgsFileWidget, QgsMapLayerComboBox, QgsSpinBox
from qgis.PyQt.QtCore import QVariant
from qgis.PyQt.QtWidgets import QDialog, QDialogButtonBox, QFormLayout, QLabel, QVBoxLayout

REFERENCE_FILTER = (
    "Reference labels (*.tif *.tiff *.vrt *.img *.png *.gpkg *.shp *.geojson *.json);;All files (*)"
)
NO_IGNORE = -1  # the spin box's "none"
MAX_LABEL_VALUE = 65535


class AssessDialog(QDialog):
    """Collects the choices; ``parameters()`` turns them into ``rs_ovseg:assess`` inputs (without the
    outputs, which the dock plans) or raises ValueError saying what to change."""

    def __init__(self, parent=None, map_layer: QgsMapLayer | None = None):
        super().__init__(parent)
        self.setWindowTitle("Assess against reference")
        self._file_layer: QgsMapLayer | None = None  # a reference opened from a file, not in the project
        layout = QVBoxLayout(self)
        intro = QLabel(
            "Compares a class raster with reference labels: a label raster (any grid or CRS, resampled "
            "onto the map's) or polygons with a class field (pixels outside them are not assessed). "
            "Classes match by name unless a mapping says otherwise.",
            self,
        )
        intro.setWordWrap(True)
        layout.addWidget(intro)
        form = QFormLayout()
        form.setFieldGrowthPolicy(QFormLayout.FieldGrowthPolicy.AllNonFixedFieldsGrow)
        self.map_combo = QgsMapLayerComboBox(self)
        self.map_combo.setFilters(QgsMapLayerProxyModel.RasterLayer)
        if map_layer is not None:
            self.map_combo.setLayer(map_layer)
        self.map_combo.setToolTip("The class raster to assess (written by Run or Segment by vocabulary)")
        form.addRow("Map", self.map_combo)
        self.reference_combo = QgsMapLayerComboBox(self)
        self.reference_combo.setFilters(
            QgsMapLayerProxyModel.RasterLayer | QgsMapLayerProxyModel.PolygonLayer
        )
        self.reference_combo.setAllowEmptyLayer(True)
        self.reference_combo.setToolTip(
            "Reference labels: a label raster (any grid and CRS) or polygons with a class field"
        )
        form.addRow("Reference", self.reference_combo)
        self.reference_file = QgsFileWidget(self)
        self.reference_file.setFilter(REFERENCE_FILTER)
        self.reference_file.setToolTip("A reference file that is not in the project (replaces the layer)")
        form.addRow("or a file", self.reference_file)
        self.field_combo = QgsFieldComboBox(self)
        self.field_combo.setToolTip("The polygons' attribute holding the class (name or code)")
        form.addRow("Class field", self.field_combo)
        self.mapping_file = QgsFileWidget(self)
        self.mapping_file.setFilter("JSON (*.json)")
        self.mapping_file.setToolTip(
            'Optional: reference codes or names to map classes, e.g. {"building": [2, 3], "road": 5}; '
            "without it classes are matched by name"
        )
        form.addRow("Mapping", self.mapping_file)
        self.ignore_spin = QgsSpinBox(self)
        self.ignore_spin.setRange(NO_IGNORE, MAX_LABEL_VALUE)
        self.ignore_spin.setSpecialValueText("none")
        self.ignore_spin.setClearValue(NO_IGNORE)
        self.ignore_spin.setValue(NO_IGNORE)
        self.ignore_spin.setToolTip("A reference value that is never assessed (e.g. 255)")
        form.addRow("Ignore value", self.ignore_spin)
        layout.addLayout(form)
        self.message_label = QLabel(self)
        self.message_label.setWordWrap(True)
        self.message_label.setStyleSheet("color: #b00020")
        layout.addWidget(self.message_label)
        self.button_box = QDialogButtonBox(
            QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel, self
        )
        self.button_box.button(QDialogButtonBox.StandardButton.Ok).setText("Assess")
        self.button_box.accepted.connect(self._accept_if_valid)
        self.button_box.rejected.connect(self.reject)
        layout.addWidget(self.button_box)
        self.reference_combo.layerChanged.connect(lambda _layer: self._reference_changed())
        self.reference_file.fileChanged.connect(self._file_changed)
        self.map_combo.layerChanged.connect(self._map_changed)
        self._map_changed(self.map_combo.currentLayer())
        self._reference_changed()
        self.setMinimumWidth(420)

    # --- choices -----------------------------------------------------------------------------------
    def reference_layer(self) -> QgsMapLayer | None:
        """The chosen reference: the file's layer when a file is given, else the project layer."""
        if self.reference_file.filePath():
            return self._file_layer
        return self.reference_combo.currentLayer()

    def _map_changed(self, layer) -> None:
        self.reference_combo.setExceptedLayerList([layer] if layer is not None else [])

    def _file_changed(self, path: str) -> None:
        self._file_layer = open_reference_file(path) if path else None
        if path and self._file_layer is None:
            self.message_label.setText(f"{Path(path).name} is neither a raster nor polygons QGIS can open")
        else:
            self.message_label.clear()
        self._reference_changed()

    def _reference_changed(self) -> None:
        layer = self.reference_layer()
        polygons = isinstance(layer, QgsVectorLayer)
        self.field_combo.setLayer(layer if polygons else None)
        self.field_combo.setEnabled(polygons)
        if polygons:  # the combo picks the first field (often "fid"): propose a likelier one
            self.field_combo.setField(guess_class_field(layer))

    def parameters(self) -> dict:
        """``rs_ovseg:assess`` inputs: INPUT, REFERENCE_RASTER or REFERENCE_POLYGONS (+ REFERENCE_FIELD),
        MAPPING, IGNORE. Raises ValueError with what to change."""
        map_layer = self.map_combo.currentLayer()
        if map_layer is None:
            raise ValueError("choose the class raster to assess")
        reference = self.reference_layer()
        if reference is None:
            if self.reference_file.filePath():
                raise ValueError(f"{self.reference_file.filePath()} cannot be opened as a raster or polygons")
            raise ValueError("choose the reference: a label raster or polygons (a layer or a file)")
        if reference is map_layer:
            raise ValueError("the reference must be another layer than the map")
        in_project = reference is not self._file_layer
        parameters: dict = {"INPUT": map_layer}
        if isinstance(reference, QgsRasterLayer):
            parameters["REFERENCE_RASTER"] = reference if in_project else self.reference_file.filePath()
        else:
            field = self.field_combo.currentField()
            if not field:
                raise ValueError(f"choose the class field of {reference.name()}")
            parameters["REFERENCE_POLYGONS"] = reference if in_project else self.reference_file.filePath()
            parameters["REFERENCE_FIELD"] = field
        if self.mapping_file.filePath():
            parameters["MAPPING"] = self.mapping_file.filePath()
        if self.ignore_spin.value() != NO_IGNORE:
            parameters["IGNORE"] = self.ignore_spin.value()
        return parameters

    def _accept_if_valid(self) -> None:
        try:
            self.parameters()
        except ValueError as error:
            self.message_label.setText(str(error))
            return
        self.accept()


def open_reference_file(path: str) -> QgsMapLayer | None:
    """The file as a raster layer, else as a polygon layer; None when it is neither."""
    name = Path(path).stem
    gdal.PushErrorHandler("CPLQuietErrorHandler")  # probing: "not a raster" is an answer, not an error
    try:
        is_raster = gdal.OpenEx(path, gdal.OF_RASTER) is not None
    finally:
        gdal.PopErrorHandler()
    if is_raster:
        raster = QgsRasterLayer(path, name, "gdal")
        return raster if raster.isValid() else None
    vector = QgsVectorLayer(path, name, "ogr")
    if vector.isValid() and vector.geometryType() == QgsWkbTypes.PolygonGeometry:
        return vector
    return None


def guess_class_field(layer: QgsVectorLayer) -> str:
    """A likely class attribute: one named like "class" or "label", else the first text field."""
    names = [field.name() for field in layer.fields()]
    for name in names:
        if any(word in name.lower() for word in ("class", "label", "category", "landcover", "type")):
            return name
    for field in layer.fields():
        if field.type() == QVariant.String:
            return field.name()
    return names[0] if names else ""
