"""edgeopt.data: every source kind, the preprocessing arithmetic, layouts, selection, splits and each error."""
from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from edgeopt.data import (
    Preprocess,
    load_samples,
    parse_preprocess_args,
    random_samples,
    read_idx,
    split_holdout,
    write_idx,
)
from edgeopt.errors import DataError
from edgeopt.frontends.spec import TensorSpec

MNIST = Path(__file__).resolve().parents[1].parent / "shared" / "material" / "data" / "mnist"


def nchw(c: int, h: int, w: int, name: str = "x") -> TensorSpec:
    return TensorSpec(name, (1, c, h, w), (1, h, w, c), "float32", (0, 2, 3, 1))


def nhwc(h: int, w: int, c: int, name: str = "x") -> TensorSpec:
    return TensorSpec(name, (1, h, w, c), (1, h, w, c), "float32", None)


def save(path: Path, pixels: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.asarray(pixels, np.uint8)).save(path)
    return path


def solid(h: int, w: int, rgb: tuple[int, int, int]) -> np.ndarray:
    return np.broadcast_to(np.array(rgb, np.uint8), (h, w, 3)).copy()


# ---------------------------------------------------------------- image folders


@pytest.fixture
def rgb_folder(tmp_path: Path) -> Path:
    save(tmp_path / "a.png", solid(4, 4, (255, 0, 51)))
    save(tmp_path / "b.png", solid(4, 4, (0, 128, 255)))
    return tmp_path


def test_folder_nchw_value_range_0_1(rgb_folder):
    x = load_samples(rgb_folder, nchw(3, 4, 4))
    assert x.shape == (2, 3, 4, 4) and x.dtype == np.float32
    np.testing.assert_allclose(x[0, :, 0, 0], [1.0, 0.0, 0.2], atol=1e-6)  # 255 -> 1, 51/255 = 0.2
    np.testing.assert_allclose(x[1, :, 2, 3], [0.0, 128 / 255, 1.0], atol=1e-6)


def test_folder_value_range_mean_std(rgb_folder):
    pre = Preprocess(value_range=(-1.0, 1.0), mean=(0.5, 0.0, -1.0), std=(0.5, 2.0, 4.0))
    x = load_samples(rgb_folder, nchw(3, 4, 4), preprocess=pre)
    # R: 255 -> 1 -> (1 - 0.5) / 0.5 = 1;  G: 0 -> -1 -> -1 / 2 = -0.5;  B: 51 -> -0.6 -> (-0.6 + 1) / 4 = 0.1
    np.testing.assert_allclose(x[0, :, 1, 1], [1.0, -0.5, 0.1], atol=1e-6)


def test_folder_bgr_swaps_channels(rgb_folder):
    x = load_samples(rgb_folder, nchw(3, 4, 4), preprocess=Preprocess(channel_order="bgr", value_range=(0, 255)))
    np.testing.assert_allclose(x[0, :, 0, 0], [51.0, 0.0, 255.0], atol=1e-4)


def test_folder_caffe_style_mean_in_model_channel_order(rgb_folder):
    pre = Preprocess(channel_order="bgr", value_range=(0, 255), mean=(104.0, 117.0, 123.0))
    x = load_samples(rgb_folder, nchw(3, 4, 4), preprocess=pre)
    np.testing.assert_allclose(x[0, :, 0, 0], [51 - 104, 0 - 117, 255 - 123], atol=1e-4)


def test_folder_onnx_nhwc_layout(rgb_folder):
    x = load_samples(rgb_folder, nhwc(4, 4, 3))
    assert x.shape == (2, 4, 4, 3)
    np.testing.assert_allclose(x[0, 0, 0], [1.0, 0.0, 0.2], atol=1e-6)


def test_color_folder_for_grayscale_model_uses_luma(rgb_folder):
    x = load_samples(rgb_folder, nchw(1, 4, 4))
    assert x.shape == (2, 1, 4, 4)
    # PIL "L": L = R*299/1000 + G*587/1000 + B*114/1000 = 76.245 + 0 + 5.814 -> 82
    assert x[0, 0, 0, 0] == pytest.approx(82 / 255, abs=1 / 255)


def test_center_crop_and_stretch(tmp_path):
    wide = np.zeros((4, 8, 3), np.uint8)
    wide[:, 2:6] = 255  # a white 4x4 square in the middle of a black 4x8 image
    save(tmp_path / "wide.png", wide)
    crop = load_samples(tmp_path, nchw(3, 4, 4))
    stretch = load_samples(tmp_path, nchw(3, 4, 4), preprocess=Preprocess(resize="stretch"))
    assert crop.min() == 1.0  # center crop keeps exactly the white square
    assert stretch[0, 0, 0, 0] < 0.5 and stretch[0, 0, 0, 1] > 0.5  # stretch squeezes the black sides in
    assert stretch.mean() == pytest.approx(0.5, abs=0.1)


def test_size_larger_than_input_resizes_then_center_crops(tmp_path):
    pixels = np.arange(64, dtype=np.uint8).reshape(8, 8) * 4
    save(tmp_path / "ramp.png", np.stack([pixels] * 3, -1))
    x = load_samples(tmp_path, nchw(3, 4, 4), preprocess=Preprocess(size=(8, 8), value_range=(0, 255)))
    np.testing.assert_allclose(x[0, 0], pixels[2:6, 2:6].astype(np.float32), atol=1e-4)


def test_resize_to_input_size(tmp_path):
    save(tmp_path / "big.png", solid(60, 90, (10, 20, 30)))
    x = load_samples(tmp_path, nchw(3, 16, 16), preprocess=Preprocess(value_range=(0, 255)))
    assert x.shape == (1, 3, 16, 16)
    np.testing.assert_allclose(x[0, :, 8, 8], [10, 20, 30], atol=1e-4)


def numbered_folder(root: Path) -> Path:
    """Images whose red value encodes their sorted position: b/ before c.png; hidden and non-image files skipped."""
    names = ["a0.png", "a1.jpg", "b/x.bmp", "b/y.png", "c.png", "d/e/f.png"]
    for i, name in enumerate(names):
        save(root / name, solid(4, 4, (i * 40, 0, 0)))
    save(root / ".hidden.png", solid(4, 4, (255, 255, 255)))
    (root / "notes.txt").write_text("not an image")
    return root


def test_folder_is_recursive_and_sorted(tmp_path):
    x = load_samples(numbered_folder(tmp_path), nchw(3, 4, 4), preprocess=Preprocess(value_range=(0, 255)))
    # a1.jpg is lossy: compare with a tolerance
    np.testing.assert_allclose(x[:, 0, 1, 1], [0, 40, 80, 120, 160, 200], atol=3)


def test_limit_is_deterministic(tmp_path):
    folder = numbered_folder(tmp_path)
    pre = Preprocess(value_range=(0, 255))
    first = load_samples(folder, nchw(3, 4, 4), preprocess=pre, limit=3, seed=None)
    np.testing.assert_allclose(first[:, 0, 1, 1], [0, 40, 80], atol=3)
    a = load_samples(folder, nchw(3, 4, 4), preprocess=pre, limit=3, seed=1)
    b = load_samples(folder, nchw(3, 4, 4), preprocess=pre, limit=3, seed=1)
    assert a.shape == (3, 3, 4, 4) and np.array_equal(a, b)
    assert np.all(np.diff(a[:, 0, 1, 1]) > 0)  # still in sorted order
    picks = {tuple(load_samples(folder, nchw(3, 4, 4), preprocess=pre, limit=3, seed=s)[:, 0, 1, 1].round())
             for s in range(6)}
    assert len(picks) > 1  # the seed changes the pick
    assert len(load_samples(folder, nchw(3, 4, 4), limit=100)) == 6


def test_single_image_file(rgb_folder):
    x = load_samples(rgb_folder / "b.png", nchw(3, 4, 4))
    assert x.shape == (1, 3, 4, 4) and x[0, 2, 0, 0] == 1.0


def test_large_folder_decodes_with_progress(tmp_path, capsys):
    for i in range(205):  # above the 200-image progress threshold
        save(tmp_path / f"{i:03d}.png", solid(2, 2, (i, i, i)))
    x = load_samples(tmp_path, nchw(1, 2, 2), preprocess=Preprocess(value_range=(0, 255)))
    assert x.shape == (205, 1, 2, 2)
    np.testing.assert_allclose(x[:, 0, 0, 0], np.arange(205), atol=1e-4)
    assert capsys.readouterr().out == ""  # progress goes to stderr, never into piped stdout


# ---------------------------------------------------------------- npy / npz


def test_npy_taken_as_is(tmp_path):
    data = np.random.default_rng(0).uniform(0, 1, (5, 3, 4, 4)).astype(np.float64)
    np.save(tmp_path / "d.npy", data)
    x = load_samples(tmp_path / "d.npy", nchw(3, 4, 4))
    assert x.dtype == np.float32 and x.shape == (5, 3, 4, 4)
    np.testing.assert_allclose(x, data, atol=1e-7)
    assert np.array_equal(load_samples(tmp_path / "d.npy", nchw(3, 4, 4), limit=2, seed=None), x[:2])


def test_npy_single_sample_gets_batch_axis(tmp_path):
    np.save(tmp_path / "one.npy", np.full((3, 4, 4), 0.5, np.float32))
    x = load_samples(tmp_path / "one.npy", nchw(3, 4, 4))
    assert x.shape == (1, 3, 4, 4) and float(x.mean()) == 0.5


def test_npz_picks_input_name_then_x_then_only(tmp_path):
    spec = nchw(1, 2, 2, name="image")
    a, b = np.full((2, 1, 2, 2), 0.25, np.float32), np.full((3, 1, 2, 2), 0.75, np.float32)
    np.savez(tmp_path / "named.npz", other=a, image=b)
    np.savez(tmp_path / "x.npz", y=a, x=b)
    np.savez(tmp_path / "only.npz", anything=a)
    assert load_samples(tmp_path / "named.npz", spec).mean() == 0.75
    assert load_samples(tmp_path / "x.npz", spec).shape == (3, 1, 2, 2)
    assert load_samples(tmp_path / "only.npz", spec).mean() == 0.25
    np.savez(tmp_path / "many.npz", a=a, b=b)
    with pytest.raises(DataError, match=r"\['a', 'b'\].*'image'"):
        load_samples(tmp_path / "many.npz", spec)


def test_npy_integer_input_keeps_its_dtype(tmp_path):
    spec = TensorSpec("ids", (1, 6), (1, 6), "int64", None)
    np.save(tmp_path / "ids.npy", np.arange(12, dtype=np.int32).reshape(2, 6) * 100)
    x = load_samples(tmp_path / "ids.npy", spec)
    assert x.dtype == np.int64 and int(x.max()) == 1100  # no value-range check on non-image inputs


def test_npy_wrong_shape_names_expected_and_found(tmp_path):
    np.save(tmp_path / "bad.npy", np.zeros((4, 3, 8, 8), np.float32))
    with pytest.raises(DataError, match=r"\[4, 3, 8, 8\].*expected \[N, 3, 4, 4\]") as e:
        load_samples(tmp_path / "bad.npy", nchw(3, 4, 4))
    assert "bad.npy" in str(e.value)


def test_npy_in_keras_layout_hints_transpose(tmp_path):
    np.save(tmp_path / "nhwc.npy", np.zeros((4, 4, 4, 3), np.float32))
    with pytest.raises(DataError, match=r"transpose\(0, 3, 1, 2\)"):
        load_samples(tmp_path / "nhwc.npy", nchw(3, 4, 4))


def test_npy_object_and_string_arrays(tmp_path):
    np.save(tmp_path / "obj.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(DataError, match="object array"):
        load_samples(tmp_path / "obj.npy", nchw(1, 2, 2))
    np.save(tmp_path / "str.npy", np.array([[["a", "b"], ["c", "d"]]]))
    with pytest.raises(DataError, match=r"dtype <U1 is not numeric"):
        load_samples(tmp_path / "str.npy", nchw(1, 2, 2))
    (tmp_path / "junk.npy").write_text("hello")
    with pytest.raises(DataError, match="not a numpy"):
        load_samples(tmp_path / "junk.npy", nchw(1, 2, 2))


def test_npy_nan_and_inf(tmp_path):
    data = np.zeros((3, 1, 2, 2), np.float32)
    data[1, 0, 0, 0], data[2, 0, 1, 1] = np.nan, np.inf
    np.save(tmp_path / "nan.npy", data)
    with pytest.raises(DataError, match=r"2 NaN/inf values \(first in sample 1\)"):
        load_samples(tmp_path / "nan.npy", nchw(1, 2, 2))


def test_npy_taken_as_given_without_stated_range(tmp_path):
    # 0..255, [-1, 1] and caffe-style (BGR minus mean) arrays: no range was stated, so none is checked
    rng = np.random.default_rng(0)
    for name, data in (("raw", np.linspace(0, 255, 32)), ("signed", np.linspace(-1, 1, 32)),
                       ("caffe", rng.uniform(0, 255, 32) - 117.0)):
        np.save(tmp_path / f"{name}.npy", data.astype(np.float32).reshape(2, 1, 4, 4))
        x = load_samples(tmp_path / f"{name}.npy", nchw(1, 4, 4))
        np.testing.assert_array_equal(x.ravel(), data.astype(np.float32))


def test_npy_0_255_data_with_stated_0_1_range(tmp_path):
    np.save(tmp_path / "raw.npy", np.linspace(0, 255, 32, dtype=np.float32).reshape(2, 1, 4, 4))
    stated = Preprocess(value_range=(0, 1), stated=("value_range",))
    with pytest.raises(DataError, match=r"\[0, 255\].*declared range \[0, 1\]") as e:
        load_samples(tmp_path / "raw.npy", nchw(1, 4, 4), preprocess=stated)
    assert "--value-range" in str(e.value)
    x = load_samples(tmp_path / "raw.npy", nchw(1, 4, 4), preprocess=Preprocess(value_range=(0, 255)))
    assert float(x.max()) == 255.0


def test_stated_follows_the_flags_given():
    assert parse_preprocess_args().stated == ()
    assert parse_preprocess_args(value_range="0,1").stated == ("value_range",)
    assert parse_preprocess_args(mean="0.5", std="0.5").stated == ("mean", "std")
    assert Preprocess(mean=(0.5,)).stated == ("mean",) and Preprocess().stated == ()


def test_npy_0_1_data_with_0_255_range(tmp_path):
    np.save(tmp_path / "unit.npy", np.linspace(0, 1, 32, dtype=np.float32).reshape(2, 1, 4, 4))
    with pytest.raises(DataError, match="tiny part") as e:
        load_samples(tmp_path / "unit.npy", nchw(1, 4, 4), preprocess=Preprocess(value_range=(0, 255)))
    assert "--value-range" in str(e.value)


def test_npy_range_accounts_for_mean_std(tmp_path):
    # ImageNet-normalized data spans about [-2.1, 2.6]: a stated 0..1 range refuses it, the stated mean/std accept it
    data = ((np.random.default_rng(0).uniform(0, 1, (4, 3, 4, 4)) - 0.45) / 0.225).astype(np.float32)
    np.save(tmp_path / "norm.npy", data)
    with pytest.raises(DataError, match="outside the declared range"):
        load_samples(tmp_path / "norm.npy", nchw(3, 4, 4), preprocess=Preprocess(stated=("value_range",)))
    pre = Preprocess(mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225))
    assert load_samples(tmp_path / "norm.npy", nchw(3, 4, 4), preprocess=pre).shape == (4, 3, 4, 4)


# ---------------------------------------------------------------- idx


def test_idx_grayscale(tmp_path):
    images = np.arange(2 * 28 * 28, dtype=np.int64).reshape(2, 28, 28).astype(np.uint8)
    path = write_idx(images, path=tmp_path / "t-images-idx3-ubyte.gz")
    x = load_samples(path, nchw(1, 28, 28))
    assert x.shape == (2, 1, 28, 28)
    np.testing.assert_allclose(x[:, 0] * 255, images, atol=1e-4)


def test_idx_uncompressed_resized_and_repeated_for_color_model(tmp_path):
    images = np.full((3, 28, 28), 51, np.uint8)
    path = write_idx(images, path=tmp_path / "t-images-idx3-ubyte")
    x = load_samples(path, nchw(3, 32, 32), preprocess=Preprocess(mean=(0.1,), std=(0.5,)))
    assert x.shape == (3, 3, 32, 32)
    np.testing.assert_allclose(x, (0.2 - 0.1) / 0.5, atol=1e-5)  # gray in R, G and B
    assert load_samples(path, nhwc(16, 16, 1)).shape == (3, 16, 16, 1)


def test_idx_roundtrip_and_reproducible_gzip(tmp_path):
    labels = np.arange(10, dtype=np.uint8)
    a = write_idx(labels, path=tmp_path / "a-labels-idx1-ubyte.gz")
    b = write_idx(labels, path=tmp_path / "b-labels-idx1-ubyte.gz")
    assert a.read_bytes() == b.read_bytes()
    assert gzip.decompress(a.read_bytes())[:4] == bytes([0, 0, 8, 1])
    assert np.array_equal(read_idx(a), labels)


def test_idx_errors(tmp_path):
    bad = tmp_path / "bad-images-idx3-ubyte"
    bad.write_bytes(bytes([0x12, 0x34, 0x56, 0x78]) + bytes(100))
    with pytest.raises(DataError, match="magic number 0x12345678.*0x00000803"):
        load_samples(bad, nchw(1, 28, 28))
    short = tmp_path / "short-images-idx3-ubyte"
    short.write_bytes(write_idx(np.zeros((5, 28, 28), np.uint8), path=tmp_path / "full-idx3-ubyte").read_bytes()[:-100])
    with pytest.raises(DataError, match=r"truncated.*\(5, 28, 28\) \(3920 bytes.*3820 bytes"):
        load_samples(short, nchw(1, 28, 28))
    labels = write_idx(np.zeros(5, np.uint8), path=tmp_path / "l-labels-idx1-ubyte")
    with pytest.raises(DataError, match=r"labels \(1-D\)"):
        load_samples(labels, nchw(1, 28, 28))
    broken = tmp_path / "broken-images-idx3-ubyte.gz"
    broken.write_bytes(b"not gzip at all")
    with pytest.raises(DataError, match="cannot read the idx file"):
        load_samples(broken, nchw(1, 28, 28))


@pytest.mark.skipif(not MNIST.is_dir(), reason=f"real MNIST not found in {MNIST}")
def test_real_mnist_idx():
    x = load_samples(MNIST / "t10k-images-idx3-ubyte.gz", nchw(1, 28, 28, name="Input3"))
    assert x.shape == (10_000, 1, 28, 28) and x.dtype == np.float32
    assert float(x.min()) == 0.0 and float(x.max()) == 1.0
    assert float(x.mean()) == pytest.approx(0.1325, abs=0.001)  # the t10k pixel mean, 33.79 / 255
    labels = read_idx(MNIST / "t10k-labels-idx1-ubyte.gz")
    assert labels.shape == (10_000,) and np.bincount(labels).tolist()[:2] == [980, 1135]
    raw = load_samples(MNIST / "t10k-images-idx3-ubyte.gz", nchw(1, 28, 28), limit=50,
                       preprocess=Preprocess(value_range=(0, 255)))
    assert raw.shape == (50, 1, 28, 28) and float(raw.max()) == 255.0


# ---------------------------------------------------------------- other errors


def test_missing_path_and_unknown_type(tmp_path):
    with pytest.raises(DataError, match="no such file or folder") as e:
        load_samples(tmp_path / "nowhere", nchw(3, 4, 4))
    assert "nowhere" in str(e.value) and "hint" in str(e.value)
    (tmp_path / "data.csv").write_text("1,2,3")
    with pytest.raises(DataError, match="unknown data file type '.csv'"):
        load_samples(tmp_path / "data.csv", nchw(3, 4, 4))


def test_empty_folder_lists_extensions(tmp_path):
    (tmp_path / "readme.txt").write_text("no images here")
    with pytest.raises(DataError, match=r"no images found \(looked for .jpg, .jpeg, .png"):
        load_samples(tmp_path, nchw(3, 4, 4))


def test_corrupt_image_is_named(rgb_folder):
    (rgb_folder / "c_broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 definitely not a jpeg")
    with pytest.raises(DataError, match="c_broken.jpg: cannot decode"):
        load_samples(rgb_folder, nchw(3, 4, 4))


def test_images_for_non_image_input(rgb_folder):
    with pytest.raises(DataError, match=r"shape \[1, 10\].*does not take images"):
        load_samples(rgb_folder, TensorSpec("v", (1, 10), (1, 10)))
    with pytest.raises(DataError, match="has 4 channels"):
        load_samples(rgb_folder, nchw(4, 4, 4))


def test_mean_length_must_match_channels(rgb_folder):
    with pytest.raises(DataError, match=r"mean has 3 values .* 1 channel"):
        load_samples(rgb_folder, nchw(1, 4, 4), preprocess=Preprocess(mean=(0.1, 0.2, 0.3)))


def test_size_smaller_than_input(rgb_folder):
    with pytest.raises(DataError, match="smaller than the model input"):
        load_samples(rgb_folder, nchw(3, 4, 4), preprocess=Preprocess(size=(2, 2)))


def test_bad_limit(rgb_folder):
    with pytest.raises(DataError, match="limit must be a positive"):
        load_samples(rgb_folder, nchw(3, 4, 4), limit=0)


# ---------------------------------------------------------------- preprocess arguments


def test_parse_preprocess_args():
    pre = parse_preprocess_args(size="224", mean="0.485,0.456,0.406", std="0.229 0.224 0.225",
                                value_range="0,255", channel_order="BGR", resize="stretch")
    assert pre == Preprocess(size=(224, 224), mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225),
                             value_range=(0.0, 255.0), channel_order="bgr", resize="stretch")
    assert parse_preprocess_args(size="240,320").size == (240, 320)
    assert parse_preprocess_args(size="240x320", value_range="-1,1").value_range == (-1.0, 1.0)
    assert parse_preprocess_args() == Preprocess()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"size": "abc"}, "--size 'abc'"),
        ({"size": "0"}, "--size '0'"),
        ({"size": "1,2,3"}, "--size '1,2,3'"),
        ({"mean": "0.5,x"}, "--mean '0.5,x'"),
        ({"std": "0"}, "std value must be positive"),
        ({"value_range": "0,1,2"}, "two numbers low,high"),
        ({"value_range": "1,0"}, "low < high"),
        ({"channel_order": "rbg"}, "expected rgb or bgr"),
        ({"resize": "fill"}, "expected stretch or center-crop"),
    ],
)
def test_parse_preprocess_args_errors(kwargs, message):
    with pytest.raises(DataError, match=message.replace("(", r"\(")):
        parse_preprocess_args(**kwargs)


# ---------------------------------------------------------------- holdout and random samples


def test_split_holdout_sizes_and_order():
    samples = np.arange(100)
    calib, held = split_holdout(samples)
    assert (len(calib), len(held)) == (80, 20)
    assert sorted(np.concatenate([calib, held]).tolist()) == list(range(100))
    assert np.all(np.diff(calib) > 0) and np.all(np.diff(held) > 0)
    again = split_holdout(samples)
    assert np.array_equal(again[1], held) and not np.array_equal(split_holdout(samples, seed=1)[1], held)
    assert [len(p) for p in split_holdout(np.arange(20))] == [12, 8]  # min_holdout=8 beats 20 % of 20 = 4
    assert [len(p) for p in split_holdout(np.arange(10), holdout=0.0, min_holdout=0)] == [10, 0]


def test_split_holdout_errors():
    with pytest.raises(DataError, match="8 samples are too few to hold back 8"):
        split_holdout(np.arange(8))
    with pytest.raises(DataError, match=r"fraction in \[0, 1\)"):
        split_holdout(np.arange(100), holdout=1.5)


def test_random_samples():
    pre = Preprocess(value_range=(0, 255), mean=(100.0, 0.0, 0.0), std=(1.0, 1.0, 255.0))
    x = random_samples(nchw(3, 8, 8), 64, preprocess=pre, seed=3)
    assert x.shape == (64, 3, 8, 8) and x.dtype == np.float32
    assert -100 <= x[:, 0].min() and x[:, 0].max() <= 155 and x[:, 2].max() <= 1.0  # per-channel mean/std
    assert x[:, 1].mean() == pytest.approx(127.5, abs=3)
    assert np.array_equal(x, random_samples(nchw(3, 8, 8), 64, preprocess=pre, seed=3))
    y = random_samples(nhwc(8, 8, 1), 4, preprocess=Preprocess(value_range=(-1, 1)))
    assert y.shape == (4, 8, 8, 1) and -1 <= y.min() < -0.5 and 0.5 < y.max() <= 1
    ids = random_samples(TensorSpec("ids", (1, 5), (1, 5), "int32"), 3, preprocess=Preprocess(value_range=(0, 9)))
    assert ids.dtype == np.int32 and ids.min() >= 0 and ids.max() <= 9


# ---------------------------------------------------------------- real photos (tests/images.py)


def test_photo_crops_round_trip_through_a_folder(tmp_path):
    from images import photo_crops, write_image_folder

    crops = photo_crops(16, (32, 24), seed=5)
    assert crops.shape == (16, 32, 24, 3) and crops.dtype == np.uint8
    assert np.array_equal(crops, photo_crops(16, (32, 24), seed=5))
    assert crops.std() > 30 and len({int(c.mean()) for c in crops}) > 8  # varied, natural pixels
    folder = write_image_folder(tmp_path / "photos", crops)
    x = load_samples(folder, nchw(3, 32, 24))
    np.testing.assert_allclose(x, crops.transpose(0, 3, 1, 2) / 255.0, atol=1e-6)  # PNG is lossless
