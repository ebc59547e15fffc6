"""The distillation student zoo: each model's params and MACs at 224x224 with 1000 classes against its paper, the
small-input stem, clear errors, and a full-integer INT8 .tflite of builtin ops for every student."""
from __future__ import annotations

import numpy as np
import pytest

from edgeopt.analyze.keras_summary import keras_summary
from edgeopt.distillation.students import STUDENTS, build_student, summaries
from edgeopt.errors import RecipeError


def test_every_student_matches_its_paper_within_3_percent_at_224():
    rows = summaries((224, 224, 3), 1000)
    assert [r["name"] for r in rows] == list(STUDENTS)
    for r in rows:
        # the papers count learned parameters (BatchNorm's moving statistics are not), and multiply-adds
        assert abs(r["trainable_params"] / r["paper_params"] - 1) <= 0.03, r
        assert abs(r["macs"] / r["paper_macs"] - 1) <= 0.03, r
    by_name = {r["name"]: r for r in rows}
    # exact figures of the reference implementations (torchvision's parameter counts)
    assert by_name["shufflenet_v2_x0_5"]["trainable_params"] == 1_366_792
    assert by_name["shufflenet_v2_x1_0"]["trainable_params"] == 2_278_604
    assert by_name["mobilenet_v2_100"]["trainable_params"] == 3_504_872
    assert by_name["mobilenet_v3_small"]["trainable_params"] == 2_542_856
    assert by_name["mobilenet_v3_large"]["trainable_params"] == 5_483_032


def test_small_inputs_get_a_stem_that_keeps_resolution():
    for name, final in (("mobilenet_v2_035", 2), ("mobilenet_v3_small", 2), ("shufflenet_v2_x0_5", 4)):
        model = build_student(name, (28, 28, 1), 10)
        pool = model.get_layer("pool")
        assert tuple(pool.input.shape[1:3]) == (final, final), name
        assert model.output_shape == (None, 10)
        # the same input without it: overall stride 32, less than half the MACs
        assert keras_summary(build_student(name, (32, 32, 1), 10, small=False))["macs"] < \
            keras_summary(build_student(name, (32, 32, 1), 10))["macs"] / 2


def test_students_refuse_what_they_cannot_build():
    with pytest.raises(RecipeError, match="did you mean 'shufflenet_v2_x0_5'"):
        build_student("shufflenet_v2_05", (28, 28, 1), 10)
    with pytest.raises(RecipeError, match="must be an image"):
        build_student("mobilenet_v2_035", (28, 28), 10)
    with pytest.raises(RecipeError, match="too small"):
        build_student("mobilenet_v2_035", (12, 12, 1), 10)
    with pytest.raises(RecipeError, match="at least 2 classes"):
        build_student("mobilenet_v2_035", (32, 32, 3), 1)


@pytest.mark.parametrize("name", list(STUDENTS))
def test_every_student_converts_to_int8_with_builtin_int8_ops_only(name, tmp_path):
    from edgeopt._tf import keras
    from edgeopt.analyze.tflite import read_tflite
    from edgeopt.quantization.ptq import quantize_int8

    keras().utils.set_random_seed(0)
    model = build_student(name, (32, 32, 3), 10)
    rng = np.random.default_rng(0)
    data = quantize_int8(model, [rng.uniform(0, 1, (8, 32, 32, 3)).astype(np.float32)], input_names=["x"],
                         output_names=["y"], io_type="int8", per_channel=True)
    path = tmp_path / f"{name}.tflite"
    path.write_bytes(data)
    s = read_tflite(path)
    assert s.fully_integer and s.float_ops == () and s.custom_ops == ()
    ops = set(s.op_histogram)
    assert not any(o.startswith("FLEX") or o == "CUSTOM" for o in ops)
    if name.startswith("mobilenet_v3"):
        assert "HARD_SWISH" in ops  # the HardSwish layer maps to TFLite's own op
    if name.startswith("shufflenet"):
        assert {"TRANSPOSE", "SPLIT_V", "CONCATENATION"} <= ops
        # the shuffle stays 4-D: no tensor of rank 5 anywhere (the GPU delegate takes up to 4)
        assert max(len(t.shape) for t in s.tensors) <= 4
