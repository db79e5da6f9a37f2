"""``rs_ovseg:train``: train an AerOSeg model on the analyst's labels, in the engine worker.

Labels are polygons with a class field (rasterised onto each image's grid, reprojected when their CRS
differs) or a label raster (values 1..K = the classes in the order given, 0 unlabelled, 255 ignore).
The engine writes MODEL.safetensors and MODEL.aeroseg.json only when training finishes; a cancelled
run writes no model and keeps its last checkpoint for a resumed run.
"""

from __future__ import annotations

from qgis.core import (
    QgsProcessing,
    QgsProcessingAlgorithm,
    QgsProcessingException,
    QgsProcessingOutputNumber,
    QgsProcessingParameterBoolean,
    QgsProcessingParameterDefinition,
    QgsProcessingParameterEnum,
    QgsProcessingParameterFeatureSource,
    QgsProcessingParameterField,
    QgsProcessingParameterFileDestination,
    QgsProcessingParameterMultipleLayers,
    QgsProcessingParameterNumber,
    QgsProcessingParameterRasterLayer,
    QgsProcessingParameterString,
)

from ..core.capture import file_source_path
from ..core.trained_models import remember_model
from .assess_algorithm import ENGINE_VECTOR_FORMATS
from .engine_feedback import request_engine

TRAIN_ALGORITHM_ID = "train"
#: (engine architecture name, label): the paper's model, and a tiny one to try the loop in a minute.
ARCHITECTURES = [
    ("vit-b16", "AerOSeg ViT-B/16 (the paper's; needs a GPU)"),
    ("tiny", "Tiny (tests and demos, with random weights)"),
]


def parse_classes(text: str) -> list[str]:
    """One class per line (or separated by ';'); synonyms after commas: "building,roof"."""
    items = [part.strip() for line in str(text or "").splitlines() for part in line.split(";")]
    return [item for item in items if item]


class TrainAlgorithm(QgsProcessingAlgorithm):
    INPUT = "INPUT"
    POLYGONS = "POLYGONS"
    CLASS_FIELD = "CLASS_FIELD"
    LABEL_RASTER = "LABEL_RASTER"
    CLASSES = "CLASSES"
    STEPS = "STEPS"
    BATCH_SIZE = "BATCH_SIZE"
    ARCHITECTURE = "ARCHITECTURE"
    RANDOM_WEIGHTS = "RANDOM_WEIGHTS"
    OUTPUT = "OUTPUT"
    MIOU = "VALIDATION_MIOU"

    def name(self) -> str:
        return TRAIN_ALGORITHM_ID

    def displayName(self) -> str:  # noqa: N802 (QGIS API)
        return "Train AerOSeg on labelled imagery"

    def shortHelpString(self) -> str:  # noqa: N802 (QGIS API)
        return (
            "Trains an AerOSeg model (CLIP and SAM features refined by a learned head) on your labels, "
            "then Segment by vocabulary can use it (method AerOSeg, model file).\n\n"
            "Labels: polygons with a class field (pixels outside every polygon are not learned from), or "
            "a label raster whose values 1..K are the classes in the order given (0 unlabelled, 255 "
            "ignored).\n"
            "Classes: one per line; synonyms after commas, e.g. building,roof. A polygon's class field "
            "holds a class name, a synonym or the class's number.\n"
            "Steps: the paper trains 5,000-15,000 steps of 4 crops on a GPU; the full model on a CPU "
            "takes about 24 s per crop. A tenth of the labelled area is held out and its per-class "
            "IoU reported."
        )

    def createInstance(self):  # noqa: N802 (QGIS API)
        return TrainAlgorithm()

    def initAlgorithm(self, config=None):  # noqa: N802 (QGIS API)
        self.addParameter(
            QgsProcessingParameterMultipleLayers(self.INPUT, "Imagery", QgsProcessing.TypeRaster)
        )
        self.addParameter(
            QgsProcessingParameterFeatureSource(
                self.POLYGONS, "Label polygons", [QgsProcessing.TypeVectorPolygon], optional=True
            )
        )
        self.addParameter(
            QgsProcessingParameterField(
                self.CLASS_FIELD, "Class field", parentLayerParameterName=self.POLYGONS, optional=True
            )
        )
        self.addParameter(
            QgsProcessingParameterRasterLayer(self.LABEL_RASTER, "or a label raster", optional=True)
        )
        self.addParameter(
            QgsProcessingParameterString(self.CLASSES, "Classes (one per line)", multiLine=True)
        )
        self.addParameter(
            QgsProcessingParameterNumber(
                self.STEPS, "Training steps", QgsProcessingParameterNumber.Integer, 1000, minValue=1
            )
        )
        advanced = [
            QgsProcessingParameterNumber(
                self.BATCH_SIZE, "Crops per step", QgsProcessingParameterNumber.Integer, 4, minValue=1
            ),
            QgsProcessingParameterEnum(
                self.ARCHITECTURE,
                "Architecture",
                options=[label for _, label in ARCHITECTURES],
                defaultValue=0,
            ),
            QgsProcessingParameterBoolean(
                self.RANDOM_WEIGHTS, "Random base weights (tests and demos only)", defaultValue=False
            ),
        ]
        for parameter in advanced:
            parameter.setFlags(parameter.flags() | QgsProcessingParameterDefinition.FlagAdvanced)
            self.addParameter(parameter)
        self.addParameter(
            QgsProcessingParameterFileDestination(
                self.OUTPUT, "Trained model", "AerOSeg models (*.safetensors)"
            )
        )
        self.addOutput(QgsProcessingOutputNumber(self.MIOU, "Validation mIoU"))

    def checkParameterValues(self, parameters, context):  # noqa: N802 (QGIS API)
        polygons = parameters.get(self.POLYGONS) not in (None, "")
        raster = parameters.get(self.LABEL_RASTER) not in (None, "")
        if polygons == raster:
            return False, "give either label polygons or a label raster (one of the two)"
        if polygons and parameters.get(self.CLASS_FIELD) in (None, ""):
            return False, "choose the label polygons' class field"
        if not parse_classes(parameters.get(self.CLASSES, "")):
            return False, "name at least one class (one per line)"
        return super().checkParameterValues(parameters, context)

    def processAlgorithm(self, parameters, context, feedback):  # noqa: N802 (QGIS API)
        args = self.engine_args(parameters, context, feedback)
        cancelled = "cancelled: no model was written (the last checkpoint can be resumed)"
        result = request_engine("train", args, feedback, cancelled)
        if result is None:
            return {}
        self._trained = result.get("model", args["out"])
        validation = result.get("validation") or {}
        if validation.get("miou") is not None:
            feedback.pushInfo(
                f"validation mIoU {validation['miou']:.3f} on {validation['pixels']} held-out pixels"
            )
        return {self.OUTPUT: result.get("model", args["out"]), self.MIOU: validation.get("miou")}

    def postProcessAlgorithm(self, context, feedback):  # noqa: N802 (QGIS API; main thread)
        trained = getattr(self, "_trained", None)
        if trained:
            remember_model(trained)  # the dock's method choice and Processing now offer it
        return {}

    def engine_args(self, parameters, context, feedback) -> dict:
        """The worker's ``train`` arguments; QgsProcessingException says what to change."""
        layers = self.parameterAsLayerList(parameters, self.INPUT, context)
        images = [file_source_path(layer) for layer in layers]
        if not images or None in images:
            raise QgsProcessingException("the imagery must be raster files GDAL can open (GeoTIFF, VRT, ...)")
        out = self.parameterAsFileOutput(parameters, self.OUTPUT, context)
        if not out.lower().endswith(".safetensors"):
            raise QgsProcessingException(
                "the trained model is written as .safetensors: give such a file name"
            )
        args: dict = {
            "images": images,
            "classes": parse_classes(self.parameterAsString(parameters, self.CLASSES, context)),
            "steps": self.parameterAsInt(parameters, self.STEPS, context),
            "batch_size": self.parameterAsInt(parameters, self.BATCH_SIZE, context),
            "architecture": ARCHITECTURES[self.parameterAsEnum(parameters, self.ARCHITECTURE, context)][0],
            "out": out,
        }
        if self.parameterAsBool(parameters, self.RANDOM_WEIGHTS, context):
            args["random_weights"] = True
        if parameters.get(self.POLYGONS) not in (None, ""):
            source = self.parameterAsSource(parameters, self.POLYGONS, context)
            if source is None or source.featureCount() == 0:
                raise QgsProcessingException("the label polygons layer is empty or cannot be opened")
            field = self.parameterAsString(parameters, self.CLASS_FIELD, context)
            if field not in source.fields().names():
                names = ", ".join(source.fields().names())
                raise QgsProcessingException(
                    f'the label polygons have no field "{field}": choose one of {names}'
                )
            args["labels"] = self.parameterAsCompatibleSourceLayerPath(
                parameters, self.POLYGONS, context, ENGINE_VECTOR_FORMATS, "gpkg", feedback
            )
            args["label_field"] = field
        else:
            raster = self.parameterAsRasterLayer(parameters, self.LABEL_RASTER, context)
            args["labels"] = file_source_path(raster)
            if args["labels"] is None:
                raise QgsProcessingException("the label raster must be a raster file GDAL can open")
        return args
