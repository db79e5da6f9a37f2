"""The RS OVSeg Processing provider."""

from qgis.core import QgsProcessingProvider
from qgis.PyQt.QtGui import QIcon

from ..core.paths import ICON_PATH
from ..definitions import PROVIDER_ID


class RsOvsegProvider(QgsProcessingProvider):
    def id(self) -> str:
        return PROVIDER_ID

    def name(self) -> str:
        return "RS OVSeg"

    def longName(self) -> str:  # noqa: N802 (Qt API)
        return "RS OVSeg open-vocabulary segmentation"

    def icon(self) -> QIcon:
        return QIcon(str(ICON_PATH))

    def loadAlgorithms(self) -> None:  # noqa: N802 (Qt API)
        for algorithm in self.algorithm_classes():
            self.addAlgorithm(algorithm())

    @staticmethod
    def algorithm_classes() -> list:
        from .assess_algorithm import AssessAlgorithm
        from .segment_algorithm import SegmentAlgorithm
        from .train_algorithm import TrainAlgorithm

        return [SegmentAlgorithm, AssessAlgorithm, TrainAlgorithm]
