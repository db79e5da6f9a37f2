"""``rs_ovseg:segment``: segment a raster layer by a free-text vocabulary with the engine.

The dock runs this same algorithm, so batch mode, the graphical modeller and ``qgis_process`` get every
feature. Capture (which may render layers) happens in ``prepareAlgorithm`` on the main thread; the
engine runs in ``processAlgorithm`` (a background thread); styling is applied when layers load.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import ClassVar

from qgis.core import (
    QgsProcessing,
    QgsProcessingAlgorithm,
    QgsProcessingContext,
    QgsProcessingException,
    QgsProcessingLayerPostProcessorInterface,
    QgsProcessingParameterBoolean,
    QgsProcessingParameterDefinition,
    QgsProcessingParameterEnum,
    QgsProcessingParameterExtent,
    QgsProcessingParameterNumber,
    QgsProcessingParameterRasterDestination,
    QgsProcessingParameterRasterLayer,
    QgsProcessingParameterString,
    QgsProcessingParameterVectorDestination,
    QgsProcessingUtils,
    QgsRasterLayer,
    QgsVectorLayer,
)

from ..core import engine_service
from ..core.capture import (
    CaptureError,
    capture_file_layer,
    capture_rendered,
    file_source_path,
    native_gsd_m,
    transform_extent,
)
from ..core.engine_client import EngineCancelledError, EngineDiedError, EngineError
from ..core.method_defaults import FIDELITIES
from ..core.output_files import args_sidecar, input_files, remove_engine_leftovers, replace_atomically
from ..core.polygons import polygonize
from ..core.segment_request import SegmentJob
from ..core.styling import save_default_style, style_class_layer, style_polygon_layer
from ..core.trained_models import trained_models
from ..core.vocabulary import Vocabulary, VocabularyError
from ..definitions import DEVICES, METHODS, SAM3_PRESETS, SEGMENT_ALGORITHM_ID
from .engine_feedback import engine_failure, feedback_events

DEFAULT_CLASSES = "building,roof,house\nroad\ntree,forest\nwater,river\ngrass"
# Resolution used to render a non-file layer when RESOLUTION is 0 and the layer has no pixel size.
FALLBACK_RENDER_GSD_M = 0.5


class StyleOnLoad(QgsProcessingLayerPostProcessorInterface):
    """Styles an output layer when Processing loads it into the project."""

    _alive: ClassVar[list] = []  # Processing keeps only a raw pointer: Python must keep the object alive

    def __init__(self, vocabulary: Vocabulary):
        super().__init__()
        self.vocabulary = vocabulary

    @classmethod
    def create(cls, vocabulary: Vocabulary) -> StyleOnLoad:
        instance = cls(vocabulary)
        cls._alive.append(instance)
        return instance

    def postProcessLayer(self, layer, context, feedback):  # noqa: N802 (QGIS API)
        if isinstance(layer, QgsRasterLayer):
            style_class_layer(layer, self.vocabulary)
        elif isinstance(layer, QgsVectorLayer):
            style_polygon_layer(layer, self.vocabulary)


class SegmentAlgorithm(QgsProcessingAlgorithm):
    INPUT = "INPUT"
    EXTENT = "EXTENT"
    CLASSES = "CLASSES"
    METHOD = "METHOD"
    RESOLUTION = "RESOLUTION"
    DEVICE = "DEVICE"
    OUTPUT = "OUTPUT"
    OUTPUT_POLYGONS = "OUTPUT_POLYGONS"
    VOCABULARY = "VOCABULARY"
    THRESHOLD = "THRESHOLD"
    OUTPUT_CONFIDENCE = "OUTPUT_CONFIDENCE"
    ENGINE_OPTIONS = "ENGINE_OPTIONS"
    WARP = "WARP"
    FIDELITY = "FIDELITY"
    SAM3_PRESET = "SAM3_PRESET"
    AEROSEG_MODEL = "AEROSEG_MODEL"

    def __init__(self):
        super().__init__()
        self._job_capture = None
        self._vocabulary: Vocabulary | None = None
        self._rendered_file: str | None = None
        self._engine_options: dict = {}
        self._model_paths: list[str] = []  # the trained AerOSeg models offered, in their enum's order

    # --- identity --------------------------------------------------------------------------------
    def name(self) -> str:
        return SEGMENT_ALGORITHM_ID

    def displayName(self) -> str:  # noqa: N802 (QGIS API)
        return "Segment by vocabulary"

    def shortHelpString(self) -> str:  # noqa: N802 (QGIS API)
        return (
            "Segments a raster layer into the classes you name, without training (SegEarth-OV, "
            "ReSeg-CLIP or SegEarth-OV3 with SAM 3), in the RS OVSeg engine's own process.\n\n"
            "SegEarth-OV3 needs the SAM 3 weights (python -m engine models download sam3, a gated "
            "download: request access at https://huggingface.co/facebook/sam3 first) and a GPU for "
            "practical speed; SAM3_PRESET (advanced) picks a benchmark's reference settings.\n\n"
            "CLASSES: one class per line; commas add synonyms (building,roof,house).\n"
            "RESOLUTION: metres per pixel fed to the model; 0 = the method's default (SegEarth-OV: the "
            "layer's pixel size × 1000/448; ReSeg-CLIP: the layer's own).\n"
            "THRESHOLD (advanced): empty = the vocabulary's value for the method, else the method's "
            "(SegEarth-OV: a probability, 0.1; ReSeg-CLIP: a cosine margin over the runner-up class, none).\n"
            "FIDELITY (advanced): the reference code's own structure where the fast path deviates for "
            "speed (ReSeg-CLIP: SAM per 224-px crop, black padding at the raster edge); slower.\n"
            "VOCABULARY (advanced): a vocabulary as JSON (colours, per-class thresholds, whole-sentence "
            '"prompts"); replaces CLASSES.\n'
            "ENGINE_OPTIONS (advanced): JSON object of further engine settings (clip, upsampler, attention, "
            "templates, seed, batch_size, tile_size).\n"
            "WARP (advanced): a raster placed by ground control points or RPCs is written on a north-up "
            "grid (the GCPs' CRS; RPCs: the scene's UTM zone) instead of its own pixels with its GCPs/RPCs.\n"
            "AEROSEG_MODEL: a model made by Train AerOSeg on labelled imagery; it replaces Method "
            "(segment at the resolution it was trained at; any class names are allowed).\n"
            "Layers that are not files (WMS, XYZ) are rendered at RESOLUTION first."
        )

    def createInstance(self):  # noqa: N802 (QGIS API)
        return SegmentAlgorithm()

    def initAlgorithm(self, config=None):  # noqa: N802 (QGIS API)
        self.addParameter(QgsProcessingParameterRasterLayer(self.INPUT, "Input raster"))
        self.addParameter(
            QgsProcessingParameterExtent(self.EXTENT, "Extent (default: the whole layer)", optional=True)
        )
        self.addParameter(
            QgsProcessingParameterString(
                self.CLASSES, "Classes (one per line, commas for synonyms)", DEFAULT_CLASSES, multiLine=True
            )
        )
        self.addParameter(
            QgsProcessingParameterEnum(
                self.METHOD, "Method", options=[label for _, label in METHODS], defaultValue=0
            )
        )
        models = trained_models()
        self._model_paths = [model.path for model in models]
        self.addParameter(
            QgsProcessingParameterEnum(
                self.AEROSEG_MODEL,
                "Trained AerOSeg model (replaces Method; made by Train AerOSeg on labelled imagery)",
                options=["none", *(model.label for model in models)],
                defaultValue=0,
            )
        )
        resolution = QgsProcessingParameterNumber(
            self.RESOLUTION,
            "Resolution in metres per pixel (0 = the method's default)",
            QgsProcessingParameterNumber.Double,
            defaultValue=0.0,
            minValue=0.0,
        )
        self.addParameter(resolution)
        self.addParameter(
            QgsProcessingParameterEnum(
                self.DEVICE, "Device", options=[label for _, label in DEVICES], defaultValue=0
            )
        )
        vocabulary = QgsProcessingParameterString(
            self.VOCABULARY, "Vocabulary as JSON (replaces Classes)", optional=True, multiLine=True
        )
        threshold = QgsProcessingParameterNumber(
            self.THRESHOLD,
            "Score threshold below which pixels stay unclassified (empty = the method's default)",
            QgsProcessingParameterNumber.Double,
            optional=True,
            minValue=0.0,
            maxValue=1.0,
        )
        confidence = QgsProcessingParameterRasterDestination(
            self.OUTPUT_CONFIDENCE, "Confidence", optional=True, createByDefault=False
        )
        engine_options = QgsProcessingParameterString(
            self.ENGINE_OPTIONS,
            'Further engine options as JSON, e.g. {"attention": "clearclip", "templates": "remote-sensing"}',
            optional=True,
        )
        fidelity = QgsProcessingParameterEnum(
            self.FIDELITY, "Fidelity", options=[label for _, label in FIDELITIES], defaultValue=0
        )
        sam3_preset = QgsProcessingParameterEnum(
            self.SAM3_PRESET,
            "SegEarth-OV3 preset (window, object confidence and threshold of a benchmark's reference setup)",
            options=[label for _, label in SAM3_PRESETS],
            defaultValue=0,
        )
        for parameter in (vocabulary, threshold, fidelity, sam3_preset, engine_options, confidence):
            parameter.setFlags(parameter.flags() | QgsProcessingParameterDefinition.FlagAdvanced)
            self.addParameter(parameter)
        warp = QgsProcessingParameterBoolean(
            self.WARP, "Warp a raster placed by GCPs or RPCs to a north-up grid", defaultValue=False
        )
        warp.setFlags(warp.flags() | QgsProcessingParameterDefinition.FlagAdvanced)
        self.addParameter(warp)
        self.addParameter(QgsProcessingParameterRasterDestination(self.OUTPUT, "Classes"))
        self.addParameter(
            QgsProcessingParameterVectorDestination(
                self.OUTPUT_POLYGONS,
                "Class polygons",
                QgsProcessing.TypeVectorPolygon,
                optional=True,
                createByDefault=False,
            )
        )

    # --- main thread: vocabulary and capture -----------------------------------------------------
    def read_vocabulary(self, parameters, context) -> Vocabulary:
        text = self.parameterAsString(parameters, self.VOCABULARY, context).strip()
        if text:
            vocabulary = Vocabulary.from_json(text)
        else:
            vocabulary = Vocabulary.from_lines(self.parameterAsString(parameters, self.CLASSES, context))
        if parameters.get(self.THRESHOLD) not in (None, ""):
            vocabulary.threshold = self.parameterAsDouble(parameters, self.THRESHOLD, context)
        vocabulary.validate()
        return vocabulary

    def checkParameterValues(self, parameters, context):  # noqa: N802 (QGIS API)
        """Vocabulary and engine options are checked before anything runs, with the reason shown."""
        try:
            self.read_vocabulary(parameters, context)
            parse_engine_options(self.parameterAsString(parameters, self.ENGINE_OPTIONS, context))
        except (VocabularyError, ValueError) as error:
            return False, str(error)
        return super().checkParameterValues(parameters, context)

    def prepareAlgorithm(self, parameters, context, feedback):  # noqa: N802 (QGIS API)
        try:
            self._vocabulary = self.read_vocabulary(parameters, context)
        except VocabularyError as error:
            raise QgsProcessingException(str(error)) from error
        layer = self.parameterAsRasterLayer(parameters, self.INPUT, context)
        if layer is None:
            raise QgsProcessingException("the input raster could not be opened")
        try:
            self._engine_options = parse_engine_options(
                self.parameterAsString(parameters, self.ENGINE_OPTIONS, context)
            )
        except ValueError as error:
            raise QgsProcessingException(str(error)) from error
        # 0: the method's default, which the engine applies to the layer's own pixels (file layers).
        gsd = self.parameterAsDouble(parameters, self.RESOLUTION, context) or None
        extent, extent_crs = None, None
        if parameters.get(self.EXTENT) not in (None, ""):
            extent_crs = self.parameterAsExtentCrs(parameters, self.EXTENT, context)
            if not extent_crs.isValid():
                extent_crs = layer.crs()
            extent = self.parameterAsExtent(parameters, self.EXTENT, context, extent_crs)
        project = context.project()
        try:
            if file_source_path(layer) is not None:
                self._job_capture = capture_file_layer(layer, extent, extent_crs, gsd, project)
            else:
                # Not a file (WMS, XYZ, ...): render it here, on the main thread, at the resolution.
                area = layer.extent()
                if extent is not None:
                    area = transform_extent(extent, extent_crs, layer.crs(), project)
                gsd = gsd or native_gsd_m(layer) or FALLBACK_RENDER_GSD_M
                self._rendered_file = QgsProcessingUtils.generateTempFilename("rs_ovseg_render.tif")
                feedback.pushInfo(f"rendering {layer.name()} at {gsd:g} m per pixel")
                self._job_capture = capture_rendered(
                    [layer], area, layer.crs(), gsd, self._rendered_file, project
                )
                if not self.parameterAsDouble(parameters, self.RESOLUTION, context):
                    self._job_capture.gsd = None  # the method's default over the rendered pixels
        except CaptureError as error:
            raise QgsProcessingException(str(error)) from error
        return True

    # --- background thread: the engine -----------------------------------------------------------
    def processAlgorithm(self, parameters, context: QgsProcessingContext, feedback):  # noqa: N802 (QGIS API)
        vocabulary = self._vocabulary
        out = self.parameterAsOutputLayer(parameters, self.OUTPUT, context)
        polygons = self.parameterAsOutputLayer(parameters, self.OUTPUT_POLYGONS, context) or None
        confidence = self.parameterAsOutputLayer(parameters, self.OUTPUT_CONFIDENCE, context) or None
        if polygons and Path(polygons).suffix.lower() != ".gpkg":
            raise QgsProcessingException("class polygons are written as a GeoPackage: give a .gpkg file name")
        method = METHODS[self.parameterAsEnum(parameters, self.METHOD, context)][0]
        options = dict(self._engine_options)
        chosen = self.parameterAsEnum(parameters, self.AEROSEG_MODEL, context)
        if 0 < chosen <= len(self._model_paths):
            method, options["model"] = "aeroseg", self._model_paths[chosen - 1]
        if method == "segearth-ov3":  # the other methods refuse SAM 3's options
            preset = SAM3_PRESETS[self.parameterAsEnum(parameters, self.SAM3_PRESET, context)][0]
            options.setdefault("sam3_preset", preset)
        job = SegmentJob(
            capture=self._job_capture,
            vocabulary=vocabulary,
            out=Path(out),
            method=method,
            device=DEVICES[self.parameterAsEnum(parameters, self.DEVICE, context)][0],
            confidence=Path(confidence) if confidence else None,
            warp=self.parameterAsBoolean(parameters, self.WARP, context),
            fidelity=FIDELITIES[self.parameterAsEnum(parameters, self.FIDELITY, context)][0],
            # Processing's destinations were confirmed by the user (its file dialog asks before replacing).
            overwrite=True,
            options=options,
        )

        try:
            args = job.engine_args()
        except ValueError as error:
            raise QgsProcessingException(str(error)) from error
        client = engine_service.shared_client()
        written = {"Classes": out, "Confidence": confidence, "Class polygons": polygons}
        written.update({"style file": str(Path(out).with_suffix(".qml")), "sidecar": args_sidecar(out)})
        try:
            # The engine's one rule decides for the files this algorithm writes itself too (polygons,
            # style): none may be a file of the input layer, nor another output.
            client.request("check_outputs", {"inputs": input_files(job.capture.path), "outputs": written})
            result = client.request(
                "segment", args, on_event=feedback_events(feedback), is_cancelled=feedback.isCanceled
            )
        except EngineCancelledError:
            feedback.pushInfo("cancelled: the engine stopped and wrote nothing")
            return {}
        except EngineError as error:
            if isinstance(error, EngineDiedError):
                remove_engine_leftovers([out, confidence, args_sidecar(out)])
            raise engine_failure(error) from error
        finally:
            if self._rendered_file and os.path.exists(self._rendered_file):
                os.remove(self._rendered_file)
        out = str(result.get("out") or out)
        save_default_style(_styled_raster(out, vocabulary), str(Path(out).with_suffix(".qml")))
        if polygons:
            feedback.setProgressText("polygonizing")
            replace_atomically(polygons, lambda staged: polygonize(out, staged, vocabulary))
        for path in (out, polygons):
            if path and context.willLoadLayerOnCompletion(path):
                details = context.layerToLoadOnCompletionDetails(path)
                details.name = f"{vocabulary.name} {'polygons' if path == polygons else 'classes'}"
                details.setPostProcessor(StyleOnLoad.create(vocabulary))
        return {
            self.OUTPUT: out,
            self.OUTPUT_POLYGONS: polygons,
            self.OUTPUT_CONFIDENCE: confidence,
            "SIDECAR": result.get("sidecar") or str(Path(out).with_suffix(".json")),
        }


def parse_engine_options(text: str) -> dict:
    """The ENGINE_OPTIONS JSON object (empty text: no options)."""
    if not text.strip():
        return {}
    try:
        options = json.loads(text)
    except json.JSONDecodeError as error:
        raise ValueError(f"engine options are not valid JSON: {error}") from error
    if not isinstance(options, dict):
        raise ValueError('engine options must be a JSON object such as {"attention": "clearclip"}')
    return options


def _styled_raster(path: str, vocabulary: Vocabulary) -> QgsRasterLayer:
    layer = QgsRasterLayer(path, "classes", "gdal")
    if not layer.isValid():
        raise QgsProcessingException(f"the engine's output {path} cannot be opened")
    style_class_layer(layer, vocabulary)
    return layer
