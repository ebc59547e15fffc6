"""The one error family of edgeopt.

Every failure a user can cause (a bad model file, an unsupported op, data that does not fit the input, an
unwritable output path) is raised as an :class:`EdgeoptError` whose message says what was wrong, where, and what
to do. The CLI prints these without a traceback and exits with ``exit_code``.
"""
from __future__ import annotations


class EdgeoptError(Exception):
    """Base class: a problem with the user's input or environment, explained in the message."""

    exit_code = 2

    def __init__(self, message: str, *, hint: str | None = None):
        self.message = message
        self.hint = hint
        super().__init__(message if hint is None else f"{message}\n  hint: {hint}")


class ModelFileError(EdgeoptError):
    """The model file cannot be read: not a model, truncated, wrong IR version or opset, bad structure."""


class UnsupportedModelError(EdgeoptError):
    """The model is valid but uses ops, domains or attributes edgeopt cannot map (all listed at once)."""


class ParityError(EdgeoptError):
    """An imported or converted model does not reproduce the reference outputs within the tolerance."""

    exit_code = 3


class DataError(EdgeoptError):
    """Calibration or evaluation data is missing, empty, or does not fit the model input."""


class RecipeError(EdgeoptError):
    """A recipe or stage parameter is invalid (unknown stage, unknown key, wrong type)."""


class OutputError(EdgeoptError):
    """An output path cannot be written."""


class ConversionError(EdgeoptError):
    """The TFLite converter rejected the model."""


class AccuracyBudgetError(EdgeoptError):
    """No INT8 model meets --min-agreement or --max-accuracy-drop, even with every op in float; the message has
    the best figure reached."""

    exit_code = 5


class DeviceError(EdgeoptError):
    """A device, delegate or remote host could not be used."""


class ReportIncompleteError(EdgeoptError):
    """The output model was written, but a measurement for its report failed (latency timing, the plot, the
    delegate analysis, ...). The report files were written too and say what is missing; ``result`` is the run's
    :class:`edgeopt.pipeline.RunResult`, so the Python API still hands back the output and the partial report.

    >>> try:                                                          # doctest: +SKIP
    ...     edgeopt.compress("model.onnx", output="m_int8.tflite")
    ... except ReportIncompleteError as exc:
    ...     exc.result.output, exc.result.report["incomplete"]
    """

    exit_code = 4

    def __init__(self, message: str, *, hint: str | None = None, result=None):
        super().__init__(message, hint=hint)
        self.result = result
