"""Lazy, quiet access to TensorFlow and tf_keras.

The model-optimization toolkit needs Keras 2, so ``TF_USE_LEGACY_KERAS=1`` must be set before TensorFlow is first
imported. Importing edgeopt itself never imports TensorFlow (``edgeopt --help`` stays fast); modules that need it
call :func:`tf` / :func:`keras` inside functions.
"""
from __future__ import annotations

import os
from functools import lru_cache


def _quiet_env() -> None:
    os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    os.environ.setdefault("ABSL_MIN_LOG_LEVEL", "3")
    os.environ.setdefault("GRPC_VERBOSITY", "ERROR")
    os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")


@lru_cache(maxsize=None)
def tf():
    """The ``tensorflow`` module, imported with Keras 2 selected and its logging quieted."""
    _quiet_env()
    from ._quiet import quiet_native_stderr

    with quiet_native_stderr():  # start-up lines (oneDNN, CUDA probing) that no log level reaches
        import tensorflow

    tensorflow.get_logger().setLevel("ERROR")
    return tensorflow


@lru_cache(maxsize=None)
def keras():
    """The ``tf_keras`` module (Keras 2), the one every edgeopt model is built with."""
    tf()
    from ._quiet import quiet_native_stderr

    with quiet_native_stderr():
        import tf_keras

    return tf_keras
