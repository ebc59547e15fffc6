"""Reading and writing idx files, the format of MNIST and Fashion-MNIST (optionally gzip-compressed).

Layout (big-endian): two zero bytes, a type code, the number of dimensions, one uint32 per dimension, then the
values in C order. ``0x00000803`` is a 3-D uint8 array (images), ``0x00000801`` a 1-D uint8 array (labels).
Format described at http://yann.lecun.com/exdb/mnist/ ("FILE FORMATS FOR THE MNIST DATABASE").
"""
from __future__ import annotations

import gzip
import re
import zlib
from pathlib import Path

import numpy as np

from edgeopt.errors import DataError

# type code -> big-endian numpy dtype
_DTYPES = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
_CODES = {dt.newbyteorder("="): code for code, dt in _DTYPES.items()}

# train-images-idx3-ubyte, t10k-images.idx3-ubyte, labels-idx1-ubyte.gz, data.idx
_IDX_NAME = re.compile(r"(idx\d-ubyte|\.idx)$")


def is_idx_path(path: str | Path) -> bool:
    """Whether a file name looks like an idx file.

    >>> is_idx_path("t10k-images-idx3-ubyte.gz"), is_idx_path("x.npy")
    (True, False)
    """
    name = Path(path).name.lower()
    if name.endswith(".gz"):
        name = name[:-3]
    return bool(_IDX_NAME.search(name))


def _read_bytes(path: Path) -> bytes:
    try:
        if path.name.lower().endswith(".gz"):
            with gzip.open(path, "rb") as f:
                return f.read()
        return path.read_bytes()
    except (OSError, EOFError, zlib.error) as e:
        raise DataError(
            f"{path}: cannot read the idx file ({e}).",
            hint="the file is damaged or not gzip-compressed although its name ends in .gz; download it again",
        ) from None


def read_idx(path: str | Path) -> np.ndarray:
    """Read an idx file (``.gz`` or raw) into a native-endian numpy array.

    >>> read_idx("t10k-images-idx3-ubyte.gz").shape  # doctest: +SKIP
    (10000, 28, 28)
    """
    path = Path(path)
    raw = _read_bytes(path)
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _DTYPES or raw[3] == 0:
        found = raw[:4].hex() if raw else "an empty file"
        raise DataError(
            f"{path}: not an idx file: magic number 0x{found} (expected 0x00000803 for uint8 images, "
            "0x00000801 for uint8 labels).",
            hint="give an MNIST-format '*-idx3-ubyte[.gz]' images file, or a folder of images or a .npy file",
        )
    dtype, ndim = _DTYPES[raw[2]], raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DataError(f"{path}: truncated idx file: the header needs {header} bytes, the file has {len(raw)}.")
    dims = tuple(int(d) for d in np.frombuffer(raw, ">u4", count=ndim, offset=4))
    need = int(np.prod(dims)) * dtype.itemsize
    have = len(raw) - header
    if have < need:
        raise DataError(
            f"{path}: truncated idx file: the header declares shape {dims} ({need} bytes of data), "
            f"the file holds {have} bytes.",
            hint="the download was cut short; fetch the file again",
        )
    data = np.frombuffer(raw, dtype, count=int(np.prod(dims)), offset=header).reshape(dims)
    return data.astype(dtype.newbyteorder("="))


def write_idx(array: np.ndarray, *, path: str | Path) -> Path:
    """Write an array as an idx file; gzip-compressed (reproducibly, no timestamp) when ``path`` ends in ``.gz``.

    >>> write_idx(np.zeros((2, 28, 28), np.uint8), path="/tmp/x-idx3-ubyte.gz")  # doctest: +SKIP
    PosixPath('/tmp/x-idx3-ubyte.gz')
    """
    array = np.asarray(array)
    code = _CODES.get(array.dtype.newbyteorder("="))
    if code is None:
        raise DataError(f"cannot write dtype {array.dtype} to an idx file (supported: {sorted(map(str, _CODES))}).")
    header = bytes([0, 0, code, array.ndim]) + np.asarray(array.shape, ">u4").tobytes()
    payload = header + array.astype(_DTYPES[code]).tobytes()
    path = Path(path)
    if path.name.lower().endswith(".gz"):
        payload = gzip.compress(payload, mtime=0)  # mtime=0: the same array always gives the same bytes
    path.write_bytes(payload)
    return path
