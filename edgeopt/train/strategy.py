"""tf.distribute strategies by name, and who writes the outputs.

- ``default``: one device (the first GPU when there is one, else the CPU).
- ``mirrored``: every local GPU; without GPUs every logical CPU device (one, unless the process configured more).
- ``multi-worker``: ``MultiWorkerMirroredStrategy`` over the cluster in ``TF_CONFIG``; the same command is started
  once per worker. Its collective ops must be set up before TensorFlow runs anything, so the pipeline calls
  :func:`prepare` before the first stage.

>>> is_chief({"cluster": {"worker": ["a:1", "b:2"]}, "task": {"type": "worker", "index": 1}})
False
"""
from __future__ import annotations

import json
import os
from typing import Any

from edgeopt.errors import RecipeError

_STRATEGIES: dict[str, Any] = {}


def tf_config() -> dict | None:
    """The parsed ``TF_CONFIG``, None when unset; a RecipeError when it is not the JSON TensorFlow expects."""
    text = os.environ.get("TF_CONFIG")
    if not text:
        return None
    try:
        config = json.loads(text)
        cluster, task = config["cluster"], config["task"]
        members = cluster[task["type"]]
        if not 0 <= int(task["index"]) < len(members):
            raise ValueError(f"task index {task['index']} but {len(members)} {task['type']} addresses")
    except (ValueError, KeyError, TypeError) as exc:
        raise RecipeError(f"TF_CONFIG is not a valid cluster description ({type(exc).__name__}: {exc})",
                          hint='e.g. {"cluster": {"worker": ["host1:12345", "host2:12345"]}, '
                               '"task": {"type": "worker", "index": 0}}; see docs/distributed.md') from None
    return config


def is_chief(config: dict | None = None) -> bool:
    """True for the process that writes outputs: the ``chief`` task, else worker 0, else a process alone."""
    config = tf_config() if config is None else config
    if not config:
        return True
    task = config["task"]
    if task["type"] == "chief":
        return True
    return task["type"] == "worker" and int(task["index"]) == 0 and "chief" not in config["cluster"]


def worker_id(config: dict | None = None) -> str:
    """``worker-1``, ``chief-0``: this process in the cluster (``chief-0`` alone)."""
    config = tf_config() if config is None else config
    if not config:
        return "chief-0"
    return f"{config['task']['type']}-{int(config['task']['index'])}"


def prepare(name: str):
    """Create (once per process) and return the strategy ``name``."""
    if name in _STRATEGIES:
        return _STRATEGIES[name]
    from edgeopt._tf import tf

    tf_ = tf()
    if name == "default":
        strategy = tf_.distribute.get_strategy()
    elif name == "mirrored":
        gpus = tf_.config.list_logical_devices("GPU")
        devices = [d.name for d in (gpus or tf_.config.list_logical_devices("CPU"))]
        strategy = tf_.distribute.MirroredStrategy(devices=devices)
    elif name == "multi-worker":
        config = tf_config()
        if config is None:
            raise RecipeError("--strategy multi-worker needs TF_CONFIG, the cluster and this worker's place in it",
                              hint="export TF_CONFIG='{\"cluster\": {\"worker\": [\"host1:12345\", \"host2:12345\"]}, "
                                   "\"task\": {\"type\": \"worker\", \"index\": 0}}' on each worker (index 0, 1, "
                                   "...); see docs/distributed.md")
        options = tf_.distribute.experimental.CommunicationOptions(
            implementation=tf_.distribute.experimental.CommunicationImplementation.RING)
        try:
            strategy = tf_.distribute.MultiWorkerMirroredStrategy(communication_options=options)
        except RuntimeError as exc:  # "Collective ops must be configured at program startup"
            raise RecipeError(f"cannot start the multi-worker strategy: {exc}",
                              hint="start a new process for the multi-worker run") from None
    else:
        raise RecipeError(f"unknown strategy {name!r}", hint="choose default, mirrored or multi-worker")
    _STRATEGIES[name] = strategy
    return strategy


def describe(strategy) -> dict:
    """Replicas, workers and devices of a strategy, for the report."""
    extended = strategy.extended
    workers = 1
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is not None and resolver.cluster_spec().as_dict():
        workers = sum(len(v) for k, v in resolver.cluster_spec().as_dict().items() if k in ("chief", "worker"))
    try:
        devices = list(extended.worker_devices)
    except RuntimeError:  # the default strategy: the one device TensorFlow places on
        from edgeopt._tf import tf

        gpus = tf().config.list_logical_devices("GPU")
        devices = [(gpus or tf().config.list_logical_devices("CPU"))[0].name]
    return {"name": type(strategy).__name__, "replicas": int(strategy.num_replicas_in_sync), "workers": workers,
            "devices": devices}
