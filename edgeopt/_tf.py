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


@lru_cache(maxsize=None)
def tf():
    """The ``tensorflow`` module, imported with Keras 2 selected and its logging quieted."""
    _quiet_env()
    from ._quiet import quiet_native_stderr

    with quiet_native_stderr():  # start-up lines (oneDNN, CUDA probing) that no log level reaches
        import tensorflow

        # GPUs stay visible (training uses them); memory grows as needed instead of TensorFlow taking it all
        gpus = tensorflow.config.list_physical_devices("GPU")
        for gpu in gpus:
            try:
                if tensorflow.config.experimental.get_memory_growth(gpu) is None:  # unset by the caller
                    tensorflow.config.experimental.set_memory_growth(gpu, True)
            except (RuntimeError, ValueError):  # initialized, or virtual devices set by the caller: theirs stands
                pass
        if gpus:
            # TF32 matmuls and convolutions (on by default on Ampere and newer) err by ~1e-3, ten times the import
            # parity tolerance: every edgeopt computation runs in full float32
            tensorflow.config.experimental.enable_tensor_float_32_execution(False)
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
