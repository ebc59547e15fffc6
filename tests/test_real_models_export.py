"""The real-model set's files and data: each ONNX export runs in onnxruntime like its torch source, has the operator
structure of the architecture it stands for, and its calibration data follows the model's own preprocessing, with
held-back samples from other photos than the calibration ones."""
from __future__ import annotations

from collections import Counter

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from onnx import helper

from images import CALIB_PHOTOS, HELD_BACK_PHOTOS, PHOTO_NAMES, crop_grid, disjoint_samples, heldback_mask
from text_images import unique_texts
from zoo.real_data import calib_array
from zoo.real_models import REAL_MODELS, build, real_entry, real_model

IDS = [item.id for item in REAL_MODELS]


@pytest.fixture(scope="module")
def calib():
    """One calibration array per data kind (50 samples), made once."""
    cache: dict[str, np.ndarray] = {}
    return lambda item: cache.setdefault(item.id, calib_array(item, 50))


def _attr(node, name):
    return next((helper.get_attribute_value(a) for a in node.attribute if a.name == name), None)


@pytest.mark.parametrize("entry", IDS)
def test_onnxruntime_matches_torch(entry, zoo_dir, calib):
    item = real_entry(entry)
    x = calib(item)[:2]
    session = ort.InferenceSession(str(real_model(item, out_dir=zoo_dir)), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == [item.input_name]
    assert [o.name for o in session.get_outputs()] == list(item.output_names)
    model = build(item)
    with torch.no_grad():
        ref = [model(torch.from_numpy(x[i : i + 1])) for i in range(2)]
    ref = [[o.numpy() for o in (r if isinstance(r, tuple) else (r,))] for r in ref]
    worst = 0.0
    for i in range(2):
        got = session.run(None, {item.input_name: x[i : i + 1]})
        for name, g, r in zip(item.output_names, got, ref[i]):
            scale = float(np.abs(r).max())
            error = float(np.abs(g - r).max())
            assert g.shape == r.shape and scale > 1e-2
            assert error <= 1e-4 * scale, name
            worst = max(worst, error / scale)
    # The outputs depend on the input: the second sample moves them far more than the export error.
    moved = max(float(np.abs(a - b).max() / np.abs(a).max()) for a, b in zip(*ref))
    assert moved > 100 * worst


def _ops(entry: str, zoo_dir) -> tuple[onnx.ModelProto, Counter]:
    proto = onnx.load(str(real_model(real_entry(entry), out_dir=zoo_dir)))
    return proto, Counter(node.op_type for node in proto.graph.node)


# Counts that follow from each architecture: the DB detectors have 23 activations in the backbone, 8 RSE-FPN
# squeeze-excites with Paddle's 0.2-slope gate and 2 PP-LCNet ones with torch's 1/6 slope, 3 top-down and 3
# fusion upsamplings, 2 ConvTranspose; SVTR's two blocks and final norm make 5 LayerNorms.
STRUCTURE = {
    "ppocr_det_v4-torchscript17": {"HardSwish": 23, "HardSigmoid": 10, "Resize": 6, "ConvTranspose": 2,
                                   "Sigmoid": 1, "Concat": 1},
    "ppocr_det_v5-torchscript17": {"Erf": 23, "HardSwish": 0, "Gelu": 0, "HardSigmoid": 10},
    "ppocr_det_v5-torchscript20": {"Gelu": 23, "Erf": 0, "HardSigmoid": 10},
    "ppocr_cls-torchscript17": {"HardSwish": 18, "HardSigmoid": 9, "MaxPool": 1, "Gemm": 1, "Softmax": 1},
    "ppocr_rec_v4-torchscript17": {"LayerNormalization": 5, "Erf": 2, "MatMul": 13, "AveragePool": 1},
    "ppocr_rec_v4-paddle14": {"LayerNormalization": 0, "ReduceMean": 10, "Sqrt": 5, "Erf": 2},
    "yolov8n-torchscript17": {"MaxPool": 3, "Softmax": 1, "Resize": 2, "Conv": 64},
    "mtcnn_rnet-torchscript17": {"PRelu": 4, "MaxPool": 2, "Gemm": 3, "Softmax": 1},
    "mtcnn_onet-torchscript17": {"PRelu": 5, "MaxPool": 3, "Gemm": 4, "Softmax": 1},
    "crnn-torchscript17": {"LSTM": 2, "Conv": 7, "MaxPool": 4},
    "mobilenet_v3_small-torchscript17": {"HardSwish": 19, "HardSigmoid": 9, "Gemm": 2},
}


@pytest.mark.parametrize("entry", sorted(STRUCTURE))
def test_operator_structure(entry, zoo_dir):
    _, histogram = _ops(entry, zoo_dir)
    expected = STRUCTURE[entry]
    assert {op: histogram[op] for op in expected} == expected


def test_paddle_exports_hold_weights_as_constants(zoo_dir):
    for item in (i for i in REAL_MODELS if i.paddle):
        proto, histogram = _ops(item.id, zoo_dir)
        assert len(proto.graph.initializer) == 0 and histogram["Constant"] > histogram["Conv"] > 0
        dims = proto.graph.input[0].type.tensor_type.shape.dim
        assert [not d.HasField("dim_value") for d in dims] == [a in item.dynamic_in for a in range(4)]


def test_the_layouts_people_bring(zoo_dir):
    """The patterns the issue names: Paddle's 0.2-slope HardSigmoid, (2, 1) strides, SVTR's qkv Transpose that moves
    the batch axis, MTCNN's ceil-mode pools and (0, 3, 2, 1) permute, CRNN's sequence-first permutes, BiLSTMs."""
    def nodes(entry, op):
        return [n for n in _ops(entry, zoo_dir)[0].graph.node if n.op_type == op]

    det_gates = sorted(round(_attr(n, "alpha"), 4) for n in nodes("ppocr_det_v4-torchscript17", "HardSigmoid"))
    assert det_gates == [0.1667] * 2 + [0.2] * 8
    assert sum(_attr(n, "strides") == [2, 1] for n in nodes("ppocr_cls-torchscript17", "Conv")) == 4
    assert [_attr(n, "perm") for n in nodes("ppocr_rec_v4-torchscript17", "Transpose")].count([2, 0, 3, 1, 4]) == 2
    pools = nodes("mtcnn_onet-torchscript17", "MaxPool")
    assert [_attr(n, "ceil_mode") for n in pools] == [1, 1, 1]
    assert [_attr(n, "perm") for n in nodes("mtcnn_onet-torchscript17", "Transpose")] == [[0, 3, 2, 1]]
    perms = [_attr(n, "perm") for n in nodes("crnn-torchscript17", "Transpose")]
    assert [2, 0, 1] in perms and [1, 0, 2] in perms
    assert [_attr(n, "direction") for n in nodes("crnn-torchscript17", "LSTM")] == [b"bidirectional"] * 2
    dfl = {i.name: i for i in _ops("yolov8n-torchscript17", zoo_dir)[0].graph.initializer}
    assert any(np.array_equal(onnx.numpy_helper.to_array(t).ravel(), np.arange(16)) for t in dfl.values())


def test_heldback_samples_come_from_other_photos():
    held = heldback_mask(50)
    assert held.sum() == 10
    labels = disjoint_samples(50, lambda n, photos: np.array([PHOTO_NAMES.index(photos[i % len(photos)])
                                                               for i in range(n)]))
    assert {PHOTO_NAMES[i] for i in labels[held]} == set(HELD_BACK_PHOTOS)
    assert {PHOTO_NAMES[i] for i in labels[~held]} == set(CALIB_PHOTOS)
    assert not set(HELD_BACK_PHOTOS) & set(CALIB_PHOTOS)


@pytest.mark.parametrize("shape, aspect, count", [((427, 640), 4.0, 7), ((512, 512), 1.0, 17), ((300, 451), 0.75, 3)])
def test_crop_cells_never_overlap(shape, aspect, count):
    cells = crop_grid(shape, aspect, count)
    assert len(cells) >= count
    cover = np.zeros(shape, int)
    for top, left, h, w in cells:
        cover[top : top + h, left : left + w] += 1
        assert 0.5 * aspect <= w / h <= 2 * aspect or w == shape[1]
    assert cover.max() == 1


def test_calibration_data_follows_each_preprocessing(calib):
    texts = unique_texts(1000, seed=1)
    assert len(set(texts)) == 1000
    cls = calib(real_entry("ppocr_cls-torchscript17"))
    assert cls.shape == (50, 3, 48, 192) and cls.min() >= -1 and cls.max() <= 1
    assert (cls[:, :, :, -1] == 0).all(axis=(1, 2)).sum() > 10  # short lines are zero-padded on the right
    det = calib(real_entry("ppocr_det_v4-torchscript17"))
    assert -2.2 < det.min() < -1.5 and 2.0 < det.max() < 2.7  # ImageNet mean/std of RGB / 255
    yolo = calib(real_entry("yolov8n-torchscript17"))
    grey = np.isclose(yolo, 114 / 255)
    assert (grey[:, :, 0, :].all(axis=(1, 2)) | grey[:, :, :, 0].all(axis=(1, 2))).all()  # letterbox borders
    mtcnn = calib(real_entry("mtcnn_rnet-torchscript17"))
    assert mtcnn.min() >= -127.5 / 128 and mtcnn.max() <= 127.5 / 128
    crnn = calib(real_entry("crnn-torchscript17"))
    assert crnn.shape == (50, 1, 32, 100) and crnn.min() >= -1 and crnn.max() <= 1
    for x in (cls, det, yolo, mtcnn, crnn):
        assert len({s.tobytes() for s in x}) == len(x)  # no two samples alike
