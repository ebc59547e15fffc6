"""The one trainer: every stage that trains (fine-tuning, pruning's recovery, distillation, QAT) calls :func:`train`.

One custom loop on ``tf.distribute``: the model and optimizer live in the strategy's scope, each step runs on every
replica (``strategy.run``) with the loss summed over the replica's examples and divided by the **global** batch
size, and the optimizer all-reduces the gradients. So one replica, N mirrored replicas and N workers take the same
steps on the same global batches. Batch normalization is synchronized across replicas (its statistics are those
of the global batch), for the same reason; one replica runs Keras' faster fused kernel, and the synchronized copies
update their moving variance as that kernel does (see ``_clone``).

A checkpoint (model, optimizer with its step counter, epoch) and ``state.json`` (history, early-stopping state) are
written after every epoch; ``resume`` restores them, and since the batch order and augmentations of an epoch come
from the seed alone, the resumed run takes exactly the steps the uninterrupted run would have.

>>> result = train(model, data, TrainParams(epochs=2), objective=objective, checkpoint_dir=Path("run.ckpt"))  # doctest: +SKIP
>>> result.history[-1]["val_accuracy"]  # doctest: +SKIP
0.912
"""
from __future__ import annotations

import hashlib
import threading
import time
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from edgeopt.errors import DataError, RecipeError
from edgeopt.params import TrainParams

from . import losses as L
from .checkpoint import CheckpointStore, signature_of
from .data import TrainData, epoch_plan, pipeline_rows
from .progress import epoch_bar, epoch_line
from .schedule import learning_rate, make_schedule
from .strategy import describe, is_chief, prepare, worker_id

UPDATE_EVERY = 10  # steps between progress-bar updates (reading the loss waits for the step to finish)


@dataclass(frozen=True)
class Objective:
    """What the loss compares: terms and weights, the classifier output they apply to, how to read its scores."""

    terms: tuple[tuple[str, float], ...]
    output: int | None  # index of the classifier output (ce, kd and accuracy), None for a model without one
    classes: int
    probabilities: bool = False  # the classifier output is a softmax already (its log is used as logits)
    temperature: float = 4.0
    smoothing: float = 0.0
    hint: bool = False  # the model's last output is a hint feature map, the teacher's last target its own

    def describe(self) -> str:
        return " + ".join(f"{w:g}·{n}" + (f"(T={self.temperature:g})" if n == "kd" else "") for n, w in self.terms)


@dataclass
class TrainResult:
    model: object  # a plain tf_keras model (outside any strategy), the trained weights
    history: list[dict]
    summary: dict
    chief: bool = True


def train(model, data: TrainData, params: TrainParams, *, objective: Objective, checkpoint_dir: Path,
          title: str = "training") -> TrainResult:
    """Train a copy of ``model`` on ``data``; returns the trained copy (``model`` is left as it was)."""
    from edgeopt._tf import keras, tf

    tf_, k = tf(), keras()
    strategy = prepare(params.strategy)
    replicas = int(strategy.num_replicas_in_sync)
    batch = params.batch_size
    if batch % replicas:
        raise RecipeError(f"--batch-size {batch} does not split evenly over {replicas} replicas",
                          hint=f"use a multiple of {replicas}, e.g. {replicas * max(1, round(batch / replicas))}")
    steps = len(data.indices) // batch
    if steps == 0:
        raise DataError(f"{len(data.indices)} training samples are fewer than one batch of {batch}.",
                        hint="give more training data or a smaller --batch-size")
    if params.patience and data.val is None:
        raise RecipeError("early stopping (patience) needs validation data", hint="give --val, or a val_split > 0")
    chief = is_chief() if params.strategy == "multi-worker" else True
    total = steps * params.epochs
    with strategy.scope():
        net = _clone(k, model, synchronized=replicas > 1)
        curve = dict(peak=params.lr, warmup=round(params.warmup_epochs * steps), total=total,
                     cosine=params.schedule == "cosine")
        optimizer = _optimizer(k, params, make_schedule(**curve))
        optimizer.build(net.trainable_variables)
        epoch_var = tf_.Variable(0, dtype=tf_.int64, trainable=False, name="epoch")
    checkpoint = tf_.train.Checkpoint(model=net, optimizer=optimizer, epoch=epoch_var)
    store = CheckpointStore(Path(checkpoint_dir), checkpoint, chief=chief, worker=worker_id(),
                            cluster=params.strategy == "multi-worker")
    signature = signature_of(params, data.info, model)
    state = store.restore(signature) if params.resume else store.start(signature)
    start = int(epoch_var.numpy())
    history: list[dict] = list(state.get("history", []))
    step_fn = _step_function(tf_, net, optimizer, objective, strategy, batch)
    stopped_early = bool(state.get("stopped"))
    todo = 0 if stopped_early else max(params.epochs - start, 0)  # a resumed run may have nothing left to do
    iterator = None
    if todo:
        sample = data.reader.read(0, data.indices[:1])
        dataset = strategy.distribute_datasets_from_function(
            lambda ctx: _dataset(tf_, data, params, ctx, start=start, sample=sample))
        iterator = iter(dataset)
    predict = tf_.function(lambda x: net(x, training=False))
    best = state.get("best")
    best_weights = store.best_weights() if best else None
    initial = state.get("initial")
    if initial is None and data.val is not None:  # the starting point, to see what training changed
        initial = {"epoch": 0, **_validate(tf_, predict, data.val, objective)}
    t_loop = time.perf_counter()
    try:
        for epoch in range(start, start + todo):
            t0 = time.perf_counter()
            loss_sum, correct, sums = 0.0, 0.0, []
            with epoch_bar(f"{title} epoch {epoch + 1}/{params.epochs}", total=steps) as bar:
                for s in range(steps):
                    l_sum, c_sum = _checked_step(tf_, step_fn, iterator, data.reader)
                    sums.append((l_sum, c_sum))
                    if (s + 1) % UPDATE_EVERY == 0 or s + 1 == steps:
                        loss_sum += sum(float(a) for a, _ in sums)  # waits for the steps queued so far
                        correct += sum(float(b) for _, b in sums)
                        sums.clear()
                        seen = (s + 1) * batch
                        shown = {"loss": f"{loss_sum / seen:.4f}"}
                        if objective.output is not None:
                            key = "acc" if data.reader.labels is not None else "agreement"
                            shown[key] = f"{100 * correct / seen:.2f}%"
                        bar.update(s + 1, **shown)
            seconds = time.perf_counter() - t0
            seen = steps * batch
            measured = None if objective.output is None else correct / seen
            record = {"epoch": epoch + 1, "loss": loss_sum / seen,
                      # without labels the top-1 is compared with the teacher's: an agreement, not an accuracy
                      "accuracy": measured if data.reader.labels is not None else None,
                      "agreement": measured if data.reader.labels is None else None,
                      "seconds": seconds, "samples_per_second": seen / seconds,
                      "lr_last": learning_rate((epoch + 1) * steps - 1, **curve)}
            if data.val is not None:
                record.update(_validate(tf_, predict, data.val, objective))
            history.append(record)
            epoch_var.assign(epoch + 1)
            improved = False
            if params.patience:
                if best is None or record["val_loss"] < best["val_loss"]:
                    best, improved = {"epoch": epoch + 1, "val_loss": record["val_loss"], "bad": 0}, True
                    best_weights = [np.array(w) for w in net.get_weights()]
                else:
                    best = {**best, "bad": best["bad"] + 1}
            stopped_early = bool(params.patience and best["bad"] >= params.patience)
            store.save(epoch + 1, {"signature": signature, "history": history, "best": best, "initial": initial,
                                   "stopped": stopped_early}, best_weights=best_weights if improved else None)
            epoch_line(_epoch_text(title, record, params.epochs))
            if stopped_early:
                break
    except KeyboardInterrupt:
        done = int(epoch_var.numpy())
        epoch_line(f"{title} interrupted in epoch {done + 1}; " + (
            f"the checkpoint of epoch {done} is in {checkpoint_dir}: run the same command with --resume to continue"
            if done else "no epoch was complete, so there is nothing to resume"))
        raise
    loop_seconds = time.perf_counter() - t_loop
    if params.patience and best_weights is not None:
        net.set_weights(best_weights)  # the best epoch's weights, as early stopping promises
    final = _clone(k, model, synchronized=False, training=False)
    final.set_weights(net.get_weights())
    trained = history[start:] if start < len(history) else []
    summary = {
        "title": title,
        "epochs": params.epochs,
        "epochs_run": len(history),
        "resumed_from_epoch": start if params.resume else None,
        "steps_per_epoch": steps,
        "global_batch": batch,
        "objective": objective.describe(),
        "optimizer": params.optimizer,
        "strategy": describe(strategy),
        "stopped_early": stopped_early,
        "best_epoch": best["epoch"] if best else None,
        "initial": initial,
        "samples_per_second": (len(trained) * steps * batch / loop_seconds) if trained and loop_seconds else None,
        "weights_sha256": weights_digest(final),
        "worker": worker_id(),
    }
    return TrainResult(final, history, summary, chief)


def _epoch_text(title: str, r: dict, epochs: int) -> str:
    text = f"{title} epoch {r['epoch']}/{epochs}: loss {r['loss']:.4f}"
    for key in ("accuracy", "agreement"):
        if r.get(key) is not None:
            text += f", {key} {100 * r[key]:.2f}%"
    text += f" ({r['samples_per_second']:.0f} samples/s)"
    if "val_loss" in r:
        text += f"; val loss {r['val_loss']:.4f}"
        if r.get("val_accuracy") is not None:
            text += f", val accuracy {100 * r['val_accuracy']:.2f}%"
        elif r.get("val_agreement") is not None:
            text += f", val agreement {100 * r['val_agreement']:.2f}%"
    return text


def _checked_step(tf_, step_fn, iterator, reader):
    """One step; a sample that cannot be read ends the run with its own error (a DataError naming the file), not
    with the tf.data error that wraps it."""
    try:
        return step_fn(iterator)
    except tf_.errors.OpError:
        if reader.error is not None:
            raise reader.error from None
        raise


def weights_digest(model) -> str:
    """sha256 of every weight's float32 bytes, in model order: equal digests mean bit-identical weights."""
    h = hashlib.sha256()
    for w in model.get_weights():
        h.update(np.ascontiguousarray(w, np.float32).tobytes())
    return h.hexdigest()


def _clone(k, model, *, synchronized: bool, training: bool = True):
    """A copy of the functional ``model`` with its weights; batch normalization synchronized across replicas.

    One replica keeps Keras' fused batch normalization, as ``model.fit`` does (the unfused layer's extra ops are a
    large share of a small network's training step). The synchronized layer of N replicas cannot be fused, and the
    fused kernel updates its moving variance with the batch variance under Bessel's correction where the unfused
    layer does not: the synchronized copies apply the same correction (:func:`_bessel_synchronized`), so one replica
    and N replicas end with the same moving statistics. A layer that one replica runs unfused (an epsilon below the
    fused kernel's floor, a masked input, a subclass, a layer inside a QAT wrapper, which the wrapper rebuilds)
    stays unfused and uncorrected on both sides, equal again."""
    from edgeopt.frontends.onnx.norm import FUSED_MIN_EPS

    def clone_layer(layer):
        config = layer.get_config()
        if not training:
            return layer.__class__.from_config(config)
        if isinstance(layer, k.layers.Wrapper):  # a QAT wrapper: its layer's config is nested
            if isinstance(layer.layer, k.layers.BatchNormalization):
                inner = config["layer"]["config"]
                inner["synchronized"] = synchronized
                if not synchronized:
                    inner["fused"] = False
            return layer.__class__.from_config(config)
        if not isinstance(layer, k.layers.BatchNormalization):
            return layer.__class__.from_config(config)
        # fused where the layer itself runs fused, never below the epsilon that a GPU's fused kernel raises, and
        # never on a masked input (the fused kernel ignores masks)
        fused = (type(layer) is k.layers.BatchNormalization and bool(getattr(layer, "fused", False))
                 and layer.epsilon >= FUSED_MIN_EPS and not _masked(layer))
        if synchronized:
            cls = _bessel_synchronized(k) if fused else layer.__class__
            return cls.from_config({**config, "synchronized": True})
        return layer.__class__.from_config({**config, "synchronized": False, "fused": None if fused else False})

    copy = k.models.clone_model(model, clone_function=clone_layer)
    copy.set_weights(model.get_weights())
    return copy


def _masked(layer) -> bool:
    try:
        return layer.input_mask is not None
    except (AttributeError, ValueError):  # several inbound nodes: assume the worst
        return True


_REPLICA = threading.local()  # each replica of a MirroredStrategy step runs in its own thread


@lru_cache(maxsize=None)
def _bessel_synchronized(k):
    """tf_keras' synchronized BatchNormalization whose moving variance follows the fused kernel's: each update takes
    the global batch variance times n/(n-1), n the values per channel over all replicas (the trainer splits every
    global batch evenly, so n is a replica's count times the replicas). Normalization itself still uses the biased
    variance, as both kernels do."""
    from edgeopt._tf import tf

    tf_ = tf()

    class BesselSynchronizedBatchNormalization(k.layers.BatchNormalization):
        def _sync_calculate_mean_and_var(self, inputs, reduction_axes, keep_dims, mask=None):
            counts = getattr(_REPLICA, "values_per_channel", None)
            if counts is None:
                counts = _REPLICA.values_per_channel = {}
            ctx = tf_.distribute.get_replica_context()
            if ctx is not None and mask is None:
                local = tf_.reduce_prod(tf_.gather(tf_.shape(inputs), reduction_axes))
                counts[id(self)] = tf_.cast(local * ctx.num_replicas_in_sync, tf_.float32)
            else:
                counts.pop(id(self), None)
            return super()._sync_calculate_mean_and_var(inputs, reduction_axes, keep_dims, mask=mask)

        def _assign_moving_average(self, variable, value, momentum, inputs_size):
            n = getattr(_REPLICA, "values_per_channel", {}).get(id(self))  # set by this call, in this thread
            if n is not None and variable is self.moving_variance:
                value = value * tf_.cast(n / tf_.maximum(n - 1.0, 1.0), value.dtype)
            return super()._assign_moving_average(variable, value, momentum, inputs_size)

    return BesselSynchronizedBatchNormalization


def _optimizer(k, params: TrainParams, schedule):
    opt = k.optimizers
    wd = params.weight_decay or None
    if params.optimizer == "sgd":
        optimizer = opt.SGD(learning_rate=schedule, momentum=params.momentum, weight_decay=wd)
    elif params.optimizer == "adam":
        optimizer = opt.Adam(learning_rate=schedule, weight_decay=wd)
    else:
        optimizer = opt.AdamW(learning_rate=schedule, weight_decay=params.weight_decay)
    if params.weight_decay:  # no decay on biases and normalization parameters
        optimizer.exclude_from_weight_decay(var_names=["bias", "gamma", "beta"])
    return optimizer


def _per_example(tf_, outputs, labels, targets, objective: Objective):
    """The weighted loss terms, one value per example."""
    total = None
    n = tf_.shape(outputs[0])[0]
    for name, weight in objective.terms:
        if name == "ce":
            z = L.to_logits(tf_, tf_.reshape(outputs[objective.output], [n, -1]), objective.probabilities)
            term = L.cross_entropy(tf_, z, labels, classes=objective.classes, smoothing=objective.smoothing)
        elif name == "kd":
            z = L.to_logits(tf_, tf_.reshape(outputs[objective.output], [n, -1]), objective.probabilities)
            zt = L.to_logits(tf_, tf_.reshape(targets[objective.output], [n, -1]), objective.probabilities)
            term = L.soft_kl(tf_, z, zt, temperature=objective.temperature)
        elif name == "hint":
            term = L.feature_error(tf_, outputs[-1], targets[-1])
        else:
            own = len(outputs) - objective.hint  # the hint's feature map is not an output of the model
            term = L.mse(tf_, outputs[:own], targets[:own])
        total = weight * term if total is None else total + weight * term
    return total


def _correct(tf_, outputs, labels, targets, objective: Objective):
    """Examples whose top-1 class equals the label (or, without labels, the teacher's top-1)."""
    if objective.output is None:
        return tf_.constant(0.0)
    n = tf_.shape(outputs[0])[0]
    pred = tf_.argmax(tf_.reshape(outputs[objective.output], [n, -1]), axis=-1)
    if targets:
        teacher = tf_.argmax(tf_.reshape(targets[objective.output], [n, -1]), axis=-1)
        truth = tf_.where(labels >= 0, labels, teacher)
    else:
        truth = labels
    return tf_.reduce_sum(tf_.cast(tf_.equal(pred, truth), tf_.float32))


def _step_function(tf_, net, optimizer, objective: Objective, strategy, global_batch: int):
    def replica_step(x, labels, *targets):
        with tf_.GradientTape() as tape:
            outs = net(x, training=True)
            outs = list(outs) if isinstance(outs, (list, tuple)) else [outs]
            per_example = _per_example(tf_, outs, labels, list(targets), objective)
            loss = tf_.nn.compute_average_loss(per_example, global_batch_size=global_batch)
            if net.losses:
                loss += tf_.nn.scale_regularization_loss(tf_.add_n(net.losses))
        grads = tape.gradient(loss, net.trainable_variables)
        optimizer.apply_gradients(zip(grads, net.trainable_variables))
        return tf_.reduce_sum(per_example), _correct(tf_, outs, labels, list(targets), objective)

    @tf_.function
    def step(iterator):
        loss_sum, correct = strategy.run(replica_step, args=next(iterator))
        sum_ = tf_.distribute.ReduceOp.SUM
        return strategy.reduce(sum_, loss_sum, axis=None), strategy.reduce(sum_, correct, axis=None)

    return step


def _dataset(tf_, data: TrainData, params: TrainParams, ctx, *, start: int, sample):
    """This input pipeline's batches for epochs ``start``.. of the plan, decoded on the fly in parallel."""
    rows, epochs = [], []
    for epoch in range(start, params.epochs):
        plan = epoch_plan(data.indices, epoch=epoch, seed=params.seed, batch_size=params.batch_size)
        mine = pipeline_rows(plan, pipeline=ctx.input_pipeline_id, pipelines=ctx.num_input_pipelines,
                             replicas=ctx.num_replicas_in_sync)
        rows.append(mine)
        epochs.append(np.full(len(mine), epoch, np.int64))
    rows_all, epochs_all = np.concatenate(rows), np.concatenate(epochs)
    dtypes = [tf_.as_dtype(a.dtype) for a in sample]
    shapes = [(rows_all.shape[1], *a.shape[1:]) for a in sample]

    def load(epoch, indices):
        return data.reader.read(int(epoch), indices)

    def decode(epoch, indices):
        out = tf_.numpy_function(load, [epoch, indices], dtypes, stateful=False)
        for t, shape in zip(out, shapes):
            t.set_shape(shape)
        return tuple(out)

    ds = tf_.data.Dataset.from_tensor_slices((epochs_all, rows_all))
    ds = ds.map(decode, num_parallel_calls=tf_.data.AUTOTUNE, deterministic=True)
    options = tf_.data.Options()
    options.experimental_distribute.auto_shard_policy = tf_.data.experimental.AutoShardPolicy.OFF  # sharded above
    options.deterministic = True
    return ds.with_options(options).prefetch(tf_.data.AUTOTUNE)


def _validate(tf_, predict, val, objective: Objective, *, batch: int = 256) -> dict:
    """Loss (the training objective) and top-1 accuracy on the validation set."""
    loss_sum, correct, n = 0.0, 0.0, len(val.x)
    for s in range(0, n, batch):
        outs = predict(tf_.constant(val.x[s:s + batch]))
        outs = list(outs) if isinstance(outs, (list, tuple)) else [outs]
        m = len(val.x[s:s + batch])
        labels = tf_.constant(val.labels[s:s + batch] if val.labels is not None else np.full(m, -1, np.int64))
        targets = [tf_.constant(t[s:s + batch]) for t in (val.targets or [])]
        loss_sum += float(tf_.reduce_sum(_per_example(tf_, outs, labels, targets, objective)))
        correct += float(_correct(tf_, outs, labels, targets, objective))
    out = {"val_loss": loss_sum / n}
    if objective.output is not None:
        key = "val_accuracy" if val.labels is not None else "val_agreement"
        out[key] = correct / n
        if key == "val_agreement":
            out["val_accuracy"] = None
    return out


def evaluate(model, val, objective: Objective) -> dict:
    """Validation loss and top-1 (accuracy, or agreement without labels) of ``model`` on ``val``."""
    from edgeopt._tf import tf

    tf_ = tf()
    return _validate(tf_, tf_.function(lambda x: model(x, training=False)), val, objective)
