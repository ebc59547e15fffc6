"""The trainer's parts, in process: loss terms against their formulas, the schedule, the batch plan, augmentations,
and short runs that must lower the loss, keep the best epoch, and refuse bad data."""
from __future__ import annotations

import math

import numpy as np
import pytest

from edgeopt.errors import DataError, RecipeError
from edgeopt.params import TrainParams
from edgeopt.train.augment import augment_batch
from edgeopt.train.data import epoch_plan, from_arrays, pipeline_rows
from edgeopt.train.losses import parse_loss
from edgeopt.train.schedule import learning_rate


def _tf():
    from edgeopt._tf import tf

    return tf()


def _small_cnn(seed=0, *, bn=False, classes=4):
    from edgeopt._tf import keras

    k = keras()
    k.utils.set_random_seed(seed)
    x = k.Input((8, 8, 3))
    y = k.layers.Conv2D(8, 3, padding="same")(x)
    if bn:
        y = k.layers.BatchNormalization()(y)
    y = k.layers.ReLU()(y)
    y = k.layers.GlobalAveragePooling2D()(y)
    return k.Model(x, k.layers.Dense(classes)(y))


def _blobs(n=256, classes=4, seed=0):
    """Noisy images whose class shifts the channel means (R, G, B up, or all down): learnable in a few steps."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, classes, n)
    means = np.array([[1, 0, 0], [0, 1, 0], [0, 0, 1], [-1, -1, -1]], np.float32)[:classes]
    x = rng.normal(0, 0.5, (n, 8, 8, 3)).astype(np.float32) + means[y][:, None, None, :]
    return x, y


def test_loss_terms_parse_and_refuse():
    assert parse_loss(("ce=0.3,kd=0.7",)) == (("ce", 0.3), ("kd", 0.7))
    for bad in (("xe",), ("ce=-1",), ("ce", "ce"), ("kd=x",)):
        with pytest.raises(ValueError):
            parse_loss(bad)
    with pytest.raises(ValueError, match="unknown augmentation"):
        TrainParams(augment=("rotate",))


def test_cross_entropy_with_smoothing_and_kd_match_their_formulas():
    from edgeopt.train import losses as L

    tf = _tf()
    z = np.array([[2.0, 0.5, -1.0]], np.float32)
    p = np.exp(z) / np.exp(z).sum()
    s = 0.1
    target = np.array([0.0, 1.0, 0.0]) * (1 - s) + s / 3
    want = -(target * np.log(p)).sum()
    got = float(L.cross_entropy(tf, tf.constant(z), tf.constant([1]), classes=3, smoothing=s)[0])
    assert got == pytest.approx(want, rel=1e-5)
    zt = np.array([[0.0, 1.0, 3.0]], np.float32)
    T = 4.0
    pt, q = np.exp(zt / T) / np.exp(zt / T).sum(), np.exp(z / T) / np.exp(z / T).sum()
    want_kd = (pt * (np.log(pt) - np.log(q))).sum() * T * T
    got_kd = float(L.soft_kl(tf, tf.constant(z), tf.constant(zt), temperature=T)[0])
    assert got_kd == pytest.approx(want_kd, rel=1e-5)
    assert float(L.soft_kl(tf, tf.constant(z), tf.constant(z), temperature=T)[0]) == pytest.approx(0, abs=1e-6)


def test_schedule_warms_up_then_decays_to_zero_and_the_tf_schedule_agrees():
    from edgeopt.train.schedule import make_schedule

    curve = dict(peak=0.1, warmup=3, total=20, cosine=True)
    values = [learning_rate(s, **curve) for s in range(20)]
    assert values[0] == pytest.approx(0.1 / 3) and values[2] == pytest.approx(0.1)
    assert values[-1] == pytest.approx(0.0, abs=1e-12)
    assert all(a >= b for a, b in zip(values[3:], values[4:]))  # cosine decays monotonically
    sched = make_schedule(**curve)
    assert [float(sched(s)) for s in range(20)] == pytest.approx(values, abs=1e-7)
    assert learning_rate(10, peak=0.1, warmup=0, total=20, cosine=False) == 0.1


def test_epoch_plan_is_seeded_and_pipelines_split_each_global_batch():
    a = epoch_plan(np.arange(100), epoch=3, seed=7, batch_size=16)
    b = epoch_plan(np.arange(100), epoch=3, seed=7, batch_size=16)
    c = epoch_plan(np.arange(100), epoch=4, seed=7, batch_size=16)
    assert a.shape == (6, 16) and (a == b).all() and not (a == c).all()
    assert len(set(a.ravel())) == 96  # no repeats; the 4 left over are dropped
    parts = [pipeline_rows(a, pipeline=p, pipelines=2, replicas=4) for p in range(2)]
    assert parts[0].shape == (12, 4)  # 6 steps x 2 local replicas, 4 samples each
    for step in range(6):  # the replicas of a step hold exactly that step's global batch
        got = np.concatenate([parts[p][2 * step: 2 * step + 2].ravel() for p in range(2)])
        assert sorted(got) == sorted(a[step])


def test_augmentations_are_seeded_per_sample_and_epoch():
    x = np.random.default_rng(0).random((3, 1, 6, 6)).astype(np.float32)
    kw = dict(seed=1, ops=("crop", "flip"), layout="NCHW", padding=2)
    one = augment_batch(x, [10, 11, 12], epoch=0, **kw)
    alone = augment_batch(x[1:2], [11], epoch=0, **kw)  # the same sample in another batch
    assert np.array_equal(one[1], alone[0])
    assert not np.array_equal(one, augment_batch(x, [10, 11, 12], epoch=1, **kw))
    flipped = augment_batch(x, [0, 1, 2], epoch=0, seed=0, ops=("flip",), layout="NCHW", padding=0)
    for i in range(3):  # a flip is exact: the sample or its mirror image
        assert np.array_equal(flipped[i], x[i]) or np.array_equal(flipped[i], x[i][..., ::-1])


def _objective(model, terms=(("ce", 1.0),), classes=4):
    from edgeopt.train.trainer import Objective

    return Objective(terms, 0, classes)


def test_cross_entropy_training_lowers_the_loss_and_raises_accuracy(tmp_path):
    from edgeopt.train.trainer import train

    x, y = _blobs(256)
    vx, vy = _blobs(128, seed=1)
    model = _small_cnn()
    params = TrainParams(epochs=5, batch_size=32, lr=0.1, optimizer="sgd", seed=0)
    result = train(model, from_arrays(x, y, val=(vx, vy)), params, objective=_objective(model),
                   checkpoint_dir=tmp_path / "ck")
    h = result.history
    assert h[-1]["loss"] < 0.8 * h[0]["loss"], [r["loss"] for r in h]
    assert h[-1]["val_accuracy"] > result.summary["initial"]["val_accuracy"] + 0.2
    assert h[-1]["val_accuracy"] >= 0.7
    # the input model is untouched: training works on a copy
    assert np.array_equal(model.get_weights()[0], _small_cnn().get_weights()[0])
    assert result.summary["steps_per_epoch"] == 8 and result.summary["epochs_run"] == 5


def test_kd_on_teacher_outputs_moves_the_student_to_the_teacher(tmp_path):
    from edgeopt.train.trainer import Objective, train

    x, y = _blobs(256)
    # a teacher that names each blob by another class (3, 0, 1, 2): only its outputs can teach that mapping
    t_out = 4.0 * np.eye(4, dtype=np.float32)[(y + 3) % 4]
    student = _small_cnn(seed=9)
    before = np.mean(np.argmax(student.predict(x, verbose=0), 1) == np.argmax(t_out, 1))
    objective = Objective((("kd", 1.0),), 0, 4, temperature=2.0)
    params = TrainParams(epochs=6, batch_size=32, lr=1e-2, optimizer="adam")
    result = train(student, from_arrays(x, None, teacher_outputs=[t_out]), params, objective=objective,
                   checkpoint_dir=tmp_path / "ck")
    after = np.mean(np.argmax(result.model.predict(x, verbose=0), 1) == np.argmax(t_out, 1))
    assert result.history[-1]["loss"] < 0.5 * result.history[0]["loss"]
    assert after > before + 0.2 and after >= 0.8, (before, after)


def test_early_stopping_keeps_the_best_epoch(tmp_path):
    """A learning rate far too high makes the validation loss rise; patience 1 stops and restores the best."""
    from edgeopt.train.trainer import train

    x, y = _blobs(128)
    params = TrainParams(epochs=8, batch_size=32, lr=3.0, optimizer="sgd", momentum=0.9, schedule="constant",
                         patience=1)
    result = train(_small_cnn(), from_arrays(x, y, val=_blobs(64, seed=3)), params, objective=_objective(None),
                   checkpoint_dir=tmp_path / "ck")
    s, h = result.summary, result.history
    assert s["stopped_early"] and s["epochs_run"] < 8
    best = min(h, key=lambda r: r["val_loss"])
    assert s["best_epoch"] == best["epoch"]
    vx, vy = _blobs(64, seed=3)
    from edgeopt.train.losses import cross_entropy

    tf = _tf()
    got = float(tf.reduce_mean(cross_entropy(tf, tf.constant(result.model.predict(vx, verbose=0)),
                                             tf.constant(vy), classes=4, smoothing=0.0)))
    assert got == pytest.approx(best["val_loss"], rel=1e-4)  # the returned weights are the best epoch's


def test_batch_larger_than_the_data_and_patience_without_validation_are_refused(tmp_path):
    from edgeopt.train.trainer import train

    x, y = _blobs(16)
    with pytest.raises(DataError, match="fewer than one batch of 32"):
        train(_small_cnn(), from_arrays(x, y), TrainParams(batch_size=32), objective=_objective(None),
              checkpoint_dir=tmp_path / "a")
    with pytest.raises(RecipeError, match="needs validation data"):
        train(_small_cnn(), from_arrays(x, y), TrainParams(batch_size=8, patience=2), objective=_objective(None),
              checkpoint_dir=tmp_path / "b")


def test_weight_decay_shrinks_kernels_but_not_biases(tmp_path):
    """One step whose loss gradient is 0 (the student equals its teacher): decoupled decay alone acts, so kernels
    become (1 - lr*wd) times themselves and biases (excluded from decay) stay."""
    from edgeopt.train.trainer import Objective, train

    x, _ = _blobs(64)
    model = _small_cnn()
    for w in model.weights:
        if "bias" in w.name:
            w.assign(np.full(w.shape, 0.5, np.float32))
    t_out = model.predict(x, verbose=0)
    params = TrainParams(epochs=1, batch_size=64, lr=0.1, optimizer="sgd", momentum=0.0, weight_decay=0.5,
                         schedule="constant")
    result = train(model, from_arrays(x, None, teacher_outputs=[t_out]), params,
                   objective=Objective((("mse", 1.0),), 0, 4), checkpoint_dir=tmp_path / "ck")
    names = [w.name for w in model.weights]
    for name, before, after in zip(names, model.get_weights(), result.model.get_weights()):
        if "bias" in name:
            assert np.allclose(after, before, atol=1e-6), name
        else:
            assert np.allclose(after, before * (1 - 0.1 * 0.5), atol=1e-6), name
    assert math.isclose(result.history[0]["loss"], 0.0, abs_tol=1e-9)


def test_a_corrupt_image_met_mid_training_is_a_data_error_naming_it(tmp_path):
    """Images are decoded inside the tf.data pipeline; the file that fails is named, as at calibration."""
    from PIL import Image

    from edgeopt.data import Preprocess
    from edgeopt.data.source import open_source
    from edgeopt.frontends.spec import TensorSpec
    from edgeopt.train.data import BatchReader, TrainData
    from edgeopt.train.trainer import train

    rng = np.random.default_rng(0)
    for c in ("a", "b"):
        (tmp_path / "img" / c).mkdir(parents=True)
        for i in range(8):
            Image.fromarray(rng.integers(0, 255, (8, 8, 3), dtype=np.uint8)).save(tmp_path / "img" / c / f"{i}.png")
    (tmp_path / "img" / "b" / "5.png").write_bytes(b"not a png at all")
    spec = TensorSpec("x", (1, 8, 8, 3), (1, 8, 8, 3), "float32", None)
    source = open_source(tmp_path / "img", spec, preprocess=Preprocess())
    labels = np.array([0] * 8 + [1] * 8)
    data = TrainData(BatchReader(source, spec, labels), np.arange(16), None, {})
    with pytest.raises(DataError, match=r"5\.png"):
        train(_small_cnn(classes=2), data, TrainParams(epochs=1, batch_size=4),
              objective=_objective(None, classes=2), checkpoint_dir=tmp_path / "ck")


def test_augment_given_as_one_comma_separated_item_means_both():
    assert TrainParams(augment=("crop,flip",)).augment == ("crop", "flip")


def test_training_copies_fuse_batch_norm_and_synchronized_copies_update_as_the_fused_kernel():
    """One replica trains with the fused kernel where the layer runs fused (not below its epsilon floor); the
    synchronized copy of such a layer updates its moving variance as the fused kernel does (Bessel-corrected), which
    the plain synchronized layer does not."""
    from edgeopt._tf import keras
    from edgeopt.train.trainer import _clone

    k, tf_ = keras(), _tf()
    k.utils.set_random_seed(0)
    x = k.Input((6, 6, 3))
    y = k.layers.BatchNormalization(name="plain")(k.layers.Conv2D(4, 3, padding="same")(x))
    # fused in the model itself; its epsilon is too small for the trainer to fuse it
    y = k.layers.BatchNormalization(epsilon=1e-6, name="tiny_eps")(y)
    model = k.Model(x, y)
    assert model.get_layer("tiny_eps").fused
    one = _clone(k, model, synchronized=False)
    assert [one.get_layer(n).fused for n in ("plain", "tiny_eps")] == [True, False]
    synced = _clone(k, model, synchronized=True)
    assert all(synced.get_layer(n).synchronized for n in ("plain", "tiny_eps"))
    assert type(synced.get_layer("plain")).__name__ == "BesselSynchronizedBatchNormalization"
    assert type(synced.get_layer("tiny_eps")) is k.layers.BatchNormalization  # one replica runs it unfused

    data = np.random.default_rng(0).normal(1.0, 2.0, (3, 8, 6, 6, 4)).astype(np.float32)
    layers = {"fused": k.layers.BatchNormalization(momentum=0.9),
              "corrected": type(synced.get_layer("plain"))(momentum=0.9, synchronized=True),
              "uncorrected": k.layers.BatchNormalization(momentum=0.9, synchronized=True)}
    for layer in layers.values():
        layer.build((None, 6, 6, 4))
        step = tf_.function(lambda b, layer=layer: layer(b, training=True))
        for batch in data:
            step(tf_.constant(batch))
    var = {name: layer.moving_variance.numpy() for name, layer in layers.items()}
    assert layers["fused"].fused and not layers["corrected"].fused
    assert np.abs(var["corrected"] - var["fused"]).max() <= 1e-5
    # without the correction: 3 updates at momentum 0.9 of a variance near 4 lack (1 - 0.9**3) * 4 / 287 = 0.0038
    assert np.abs(var["uncorrected"] - var["fused"]).max() > 1e-3
    assert np.allclose(layers["corrected"].moving_mean.numpy(), layers["fused"].moving_mean.numpy(), atol=1e-6)
