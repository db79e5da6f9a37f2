"""``rs_ovseg:assess``: how good is a class raster? Compares it with reference labels in the engine.

The reference is a label raster (any grid and CRS: the engine resamples it onto the map's grid) or
polygons with a class attribute (rasterised onto the map's grid; pixels outside every polygon are not
assessed). The engine's ``evaluate`` command writes the JSON report (and the figure); this algorithm
adds the confusion matrix as a table without geometry, one row per reference class. The table is
created only after the engine succeeded, so a failed or cancelled run leaves no half layer behind.
"""

from __future__ import annotations

from pathlib import Path

from qgis.core import (
    QgsCoordinateReferenceSystem,
    QgsFeatureSink,
    QgsProcessing,
    QgsProcessingAlgorithm,
    QgsProcessingException,
    QgsProcessingOutputNumber,
    QgsProcessingParameterDefinition,
    QgsProcessingParameterExtent,
    QgsProcessingParameterFeatureSink,
    QgsProcessingParameterFeatureSource,
    QgsProcessingParameterField,
    QgsProcessingParameterFile,
    QgsProcessingParameterFileDestination,
    QgsProcessingParameterNumber,
    QgsProcessingParameterRasterLayer,
    QgsRasterLayer,
    QgsRectangle,
    QgsWkbTypes,
)

from ..core.assessment import (
    ReportError,
    confusion_features,
    confusion_fields,
    nothing_assessed_reason,
    report_from_result,
    summarize,
)
from ..core.capture import CaptureError, crs_id, file_source_path, transform_extent
from ..definitions import ASSESS_ALGORITHM_ID
from .engine_feedback import request_engine

# Formats the engine opens polygons from; any other source (memory layer, filter, selection, a layer
# inside a multi-layer file) is first written to a temporary GeoPackage by Processing.
ENGINE_VECTOR_FORMATS = ["gpkg", "shp", "geojson"]
FIGURE_SUFFIX = ".png"


class AssessAlgorithm(QgsProcessingAlgorithm):
    INPUT = "INPUT"
    REFERENCE_RASTER = "REFERENCE_RASTER"
    REFERENCE_POLYGONS = "REFERENCE_POLYGONS"
    REFERENCE_FIELD = "REFERENCE_FIELD"
    MAPPING = "MAPPING"
    IGNORE = "IGNORE"
    EXTENT = "EXTENT"
    OUTPUT_REPORT = "OUTPUT_REPORT"
    OUTPUT_TABLE = "OUTPUT_TABLE"
    OUTPUT_FIGURE = "OUTPUT_FIGURE"
    FIGURES = ("OVERALL_ACCURACY", "KAPPA", "MIOU", "MF1")

    # --- identity --------------------------------------------------------------------------------
    def name(self) -> str:
        return ASSESS_ALGORITHM_ID

    def displayName(self) -> str:  # noqa: N802 (QGIS API)
        return "Assess accuracy against reference"

    def shortHelpString(self) -> str:  # noqa: N802 (QGIS API)
        return (
            "Compares a class raster written by Segment by vocabulary with reference labels and reports "
            "the confusion matrix, overall accuracy, Cohen's kappa, per-class IoU, precision (user's "
            "accuracy), recall (producer's accuracy), F1, mIoU, and error-adjusted class areas.\n\n"
            "Give either a reference raster (any grid and CRS; it is resampled onto the map's grid by "
            "nearest neighbour) or reference polygons with their class field (pixels outside every "
            "polygon are not assessed).\n"
            "Classes are matched by name (case-insensitive). MAPPING: a JSON file that matches reference "
            'codes or names to map classes, e.g. {"building": [2, 3], "road": 5}. Reference codes that '
            "match no class are left out and counted in the report.\n"
            "IGNORE: a reference value never assessed (e.g. 255).\n"
            "The confusion matrix table has one row per reference class and one column per map class."
        )

    def createInstance(self):  # noqa: N802 (QGIS API)
        return AssessAlgorithm()

    def initAlgorithm(self, config=None):  # noqa: N802 (QGIS API)
        self.addParameter(QgsProcessingParameterRasterLayer(self.INPUT, "Class raster (written by Segment)"))
        self.addParameter(
            QgsProcessingParameterRasterLayer(self.REFERENCE_RASTER, "Reference label raster", optional=True)
        )
        self.addParameter(
            QgsProcessingParameterFeatureSource(
                self.REFERENCE_POLYGONS,
                "or reference polygons",
                [QgsProcessing.TypeVectorPolygon],
                optional=True,
            )
        )
        self.addParameter(
            QgsProcessingParameterField(
                self.REFERENCE_FIELD,
                "Class field of the reference polygons",
                parentLayerParameterName=self.REFERENCE_POLYGONS,
                optional=True,
            )
        )
        self.addParameter(
            QgsProcessingParameterFile(
                self.MAPPING,
                "Class mapping (JSON)",
                extension="json",
                optional=True,
            )
        )
        self.addParameter(
            QgsProcessingParameterNumber(
                self.IGNORE,
                "Reference value not assessed (e.g. 255)",
                QgsProcessingParameterNumber.Integer,
                optional=True,
            )
        )
        extent = QgsProcessingParameterExtent(self.EXTENT, "Assess only this extent", optional=True)
        extent.setFlags(extent.flags() | QgsProcessingParameterDefinition.FlagAdvanced)
        self.addParameter(extent)
        self.addParameter(
            QgsProcessingParameterFileDestination(
                self.OUTPUT_REPORT, "Accuracy report", "JSON files (*.json)"
            )
        )
        self.addParameter(
            QgsProcessingParameterFeatureSink(self.OUTPUT_TABLE, "Confusion matrix", QgsProcessing.TypeVector)
        )
        self.addParameter(
            QgsProcessingParameterFileDestination(
                self.OUTPUT_FIGURE,
                "Figure (confusion matrix and per-class IoU)",
                "PNG files (*.png)",
                optional=True,
                createByDefault=False,
            )
        )
        for name, label in zip(self.FIGURES, ("Overall accuracy", "Cohen's kappa", "mIoU", "mean F1")):
            self.addOutput(QgsProcessingOutputNumber(name, label))

    # --- checks before anything runs ---------------------------------------------------------------
    def checkParameterValues(self, parameters, context):  # noqa: N802 (QGIS API)
        raster = parameters.get(self.REFERENCE_RASTER) not in (None, "")
        polygons = parameters.get(self.REFERENCE_POLYGONS) not in (None, "")
        if raster == polygons:
            return False, "give either a reference raster or reference polygons (one of the two)"
        if polygons and parameters.get(self.REFERENCE_FIELD) in (None, ""):
            return False, "choose the reference polygons' class field"
        return super().checkParameterValues(parameters, context)

    # --- background thread: the engine -------------------------------------------------------------
    def processAlgorithm(self, parameters, context, feedback):  # noqa: N802 (QGIS API)
        args = self.engine_args(parameters, context, feedback)
        result = request_engine(
            "evaluate", args, feedback, "cancelled: the engine stopped and wrote no report"
        )
        if result is None:
            return {}
        try:
            report = report_from_result(result)
        except ReportError as error:
            raise QgsProcessingException(str(error)) from error
        summary = summarize(report)
        if summary.assessed_pixels == 0:  # a table of zeros would look like a result
            reason = nothing_assessed_reason(report)
            raise QgsProcessingException(f"no pixel was assessed: {reason} (report: {args['report']})")
        classes = list(report["classes"])
        sink, table = self.parameterAsSink(
            parameters,
            self.OUTPUT_TABLE,
            context,
            confusion_fields(classes),
            QgsWkbTypes.NoGeometry,
            QgsCoordinateReferenceSystem(),
        )
        if sink is None:
            raise QgsProcessingException("the confusion matrix table cannot be created")
        for feature in confusion_features(report):
            sink.addFeature(feature, QgsFeatureSink.FastInsert)
        del sink  # closes the file: the table is complete before QGIS loads it
        if context.willLoadLayerOnCompletion(table):
            context.layerToLoadOnCompletionDetails(table).name = "Confusion matrix"
        results = {self.OUTPUT_REPORT: args["report"], self.OUTPUT_TABLE: table}
        results[self.OUTPUT_FIGURE] = args.get("plot")
        for name, key in zip(self.FIGURES, ("overall_accuracy", "kappa", "miou", "mf1")):
            results[name] = report.get(key)
        return results

    def engine_args(self, parameters, context, feedback) -> dict:
        """The ``evaluate`` request's arguments (the engine's keyword names); raises
        QgsProcessingException with what to change when an input cannot be used."""
        map_layer = self.parameterAsRasterLayer(parameters, self.INPUT, context)
        prediction = file_source_path(map_layer)
        if prediction is None:
            raise QgsProcessingException(
                "the class raster must be a raster file (a GeoTIFF written by Segment)"
            )
        args: dict = {"prediction": prediction}
        if parameters.get(self.REFERENCE_RASTER) not in (None, ""):
            reference = self.parameterAsRasterLayer(parameters, self.REFERENCE_RASTER, context)
            args["reference"] = file_source_path(reference)
            if args["reference"] is None:
                raise QgsProcessingException("the reference raster must be a raster file GDAL can open")
            check_overlap(map_layer, reference.extent(), reference.crs(), reference.name(), context)
        else:
            args.update(self.polygon_reference(parameters, context, feedback, map_layer))
        mapping = self.parameterAsFile(parameters, self.MAPPING, context)
        if mapping:
            if not Path(mapping).is_file():
                raise QgsProcessingException(f"the class mapping {mapping} does not exist")
            args["mapping"] = mapping
        if parameters.get(self.IGNORE) not in (None, ""):
            args["ignore"] = self.parameterAsInt(parameters, self.IGNORE, context)
        if parameters.get(self.EXTENT) not in (None, ""):
            crs = self.parameterAsExtentCrs(parameters, self.EXTENT, context)
            if not crs.isValid():
                crs = map_layer.crs()
            extent = self.parameterAsExtent(parameters, self.EXTENT, context, crs)
            args["bbox"] = [extent.xMinimum(), extent.yMinimum(), extent.xMaximum(), extent.yMaximum()]
            args["bbox_crs"] = crs_id(crs)
        args["report"] = self.parameterAsFileOutput(parameters, self.OUTPUT_REPORT, context)
        figure = self.parameterAsFileOutput(parameters, self.OUTPUT_FIGURE, context)
        if figure:
            if Path(figure).suffix.lower() != FIGURE_SUFFIX:
                raise QgsProcessingException("the figure is written as PNG: give a .png file name")
            args["plot"] = figure
        return args

    def polygon_reference(self, parameters, context, feedback, map_layer) -> dict:
        source = self.parameterAsSource(parameters, self.REFERENCE_POLYGONS, context)
        if source is None:
            raise QgsProcessingException("the reference polygons cannot be opened")
        field = self.parameterAsString(parameters, self.REFERENCE_FIELD, context)
        names = source.fields().names()
        if not field:
            raise QgsProcessingException(
                f"choose the reference polygons' class field: one of {', '.join(names)}"
            )
        if field not in names:
            raise QgsProcessingException(
                f'the reference polygons have no field "{field}": choose one of {", ".join(names)}'
            )
        if source.featureCount() == 0:
            raise QgsProcessingException("the reference polygons layer has no features")
        check_overlap(map_layer, source.sourceExtent(), source.sourceCrs(), source.sourceName(), context)
        path = self.parameterAsCompatibleSourceLayerPath(
            parameters, self.REFERENCE_POLYGONS, context, ENGINE_VECTOR_FORMATS, "gpkg", feedback
        )
        return {"reference": path, "reference_field": field}


def check_overlap(
    map_layer: QgsRasterLayer, extent: QgsRectangle, crs: QgsCoordinateReferenceSystem, name: str, context
) -> None:
    """Refuses a reference whose extent misses the map's, before the engine runs (it would assess
    nothing). A reference or map without a CRS is left to the engine."""
    if not crs.isValid() or not map_layer.crs().isValid():
        return
    try:
        in_map_crs = transform_extent(extent, crs, map_layer.crs(), context.project())
    except CaptureError:
        in_map_crs = None
    if in_map_crs is None or not in_map_crs.intersects(map_layer.extent()):
        where = map_layer.extent().toString(1)
        raise QgsProcessingException(
            f"the reference {name} does not overlap the map {map_layer.name()} "
            f"({where} in {map_layer.crs().authid() or 'its CRS'}): choose a reference of the same area"
        )
