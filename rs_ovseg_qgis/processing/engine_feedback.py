"""What the algorithms share when they ask the engine worker: its events in Processing's feedback,
its failures as Processing errors."""

from __future__ import annotations

from collections.abc import Callable

from qgis.core import QgsProcessingException, QgsProcessingFeedback

from ..core import engine_service
from ..core.engine_client import EngineCancelledError, EngineError


def feedback_events(feedback: QgsProcessingFeedback) -> Callable[[dict], None]:
    """Shows the worker's progress and log events in Processing's feedback."""

    def on_event(event: dict) -> None:
        if event.get("event") == "progress":
            feedback.setProgress(100.0 * float(event.get("fraction", 0.0)))
            text = event.get("message") or event.get("stage") or ""
            if text:
                feedback.setProgressText(str(text))
        elif event.get("event") == "log":
            level, message = event.get("level", "info"), str(event.get("message", ""))
            if level in ("warning", "error"):
                feedback.reportError(message, False)
            else:
                feedback.pushInfo(message)

    return on_event


def engine_failure(error: EngineError) -> QgsProcessingException:
    """The Processing error for a failed request: a user error's own message, else "the engine failed"."""
    message = str(error) if error.kind == "user" else f"the engine failed: {error}"
    return QgsProcessingException(message)


def request_engine(command: str, args: dict, feedback: QgsProcessingFeedback, cancelled: str) -> dict | None:
    """The shared worker's answer to ``command``; None when the user cancelled (``cancelled`` is then
    logged). Raises QgsProcessingException when the engine fails."""
    try:
        return engine_service.shared_client().request(
            command, args, on_event=feedback_events(feedback), is_cancelled=feedback.isCanceled
        )
    except EngineCancelledError:
        feedback.pushInfo(cancelled)
        return None
    except EngineError as error:
        raise engine_failure(error) from error
