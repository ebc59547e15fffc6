"""The test model zoo: torch and tf_keras models we define ourselves, exported to ONNX by three exporters.

:mod:`zoo.real_models` holds a second set, small versions of the trained models people bring (PP-OCR, YOLOv8n,
MTCNN, CRNN), each with calibration data made by its own preprocessing (:mod:`zoo.real_data`).

Other test modules parametrize over :data:`ZOO` and ask for files with :func:`zoo_model`; a conftest that imports
:func:`zoo_dir` gets one export folder per test session (``EDGEOPT_ZOO_DIR`` names a folder kept between sessions
instead; delete it after changing a zoo model).

    >>> @pytest.mark.parametrize("item", ZOO, ids=lambda e: e.id)
    ... def test_something(item, zoo_dir):
    ...     path = zoo_model(item, out_dir=zoo_dir)
"""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from .export import (DEFAULT_OPSET, ZOO, ZooEntry, entry, export_keras_tf2onnx, export_torch, sample_input,
                     source_model, zoo_model)

__all__ = ["DEFAULT_OPSET", "ZOO", "ZooEntry", "entry", "export_keras_tf2onnx", "export_torch", "sample_input",
           "source_model", "zoo_dir", "zoo_model"]


@pytest.fixture(scope="session")
def zoo_dir(tmp_path_factory) -> Path:
    """The folder the zoo's ONNX files are exported into, once per session."""
    kept = os.environ.get("EDGEOPT_ZOO_DIR")
    return Path(kept) if kept else tmp_path_factory.mktemp("zoo")
