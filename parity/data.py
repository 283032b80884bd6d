"""Data for training, in NumPy only, shared by both frameworks (nothing is downloaded).

scikit-learn's bundled digits (1,797 8×8 images), a reader and writer for MNIST's IDX files (for
users who have them locally), synthetic generators, and one seeded shuffler whose batch indices
both frameworks use. Images are (N, 1, H, W) float in [0, 1] (torch's layout, the canonical one);
labels are int64.
"""
from __future__ import annotations

import gzip
import math
import os
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np


@dataclass(frozen=True)
class Dataset:
    """A train/test split; `x` are images (N, 1, H, W) or features (N, d), `y` labels or targets."""

    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray

    def astype(self, dtype) -> "Dataset":
        """The same data with inputs (and float targets) in `dtype`."""
        cast = (lambda a: a.astype(dtype) if a.dtype.kind == "f" else a)
        return Dataset(self.name, cast(self.x_train), cast(self.y_train), cast(self.x_test), cast(self.y_test))


def _split(name, x, y, test_fraction, seed) -> Dataset:
    idx = np.random.default_rng(seed).permutation(len(x))
    n_test = int(round(len(x) * test_fraction))
    test, train = idx[:n_test], idx[n_test:]
    return Dataset(name, x[train], y[train], x[test], y[test])


def load_digits(test_fraction: float = 0.2, seed: int = 0) -> Dataset:
    """scikit-learn's 8×8 digits (pixel values 0–16, scaled to [0, 1]), split by a seeded permutation."""
    from sklearn.datasets import load_digits as sk_digits
    d = sk_digits()
    x = (d.images / 16.0).astype(np.float32)[:, None, :, :]
    return _split("digits", x, d.target.astype(np.int64), test_fraction, seed)


# ---------------------------------------------------------------- IDX files (MNIST's format)
# magic = 0, 0, type code, number of dimensions; then one big-endian uint32 per dimension; then data
_IDX_TYPES = {0x08: np.dtype(">u1"), 0x09: np.dtype(">i1"), 0x0B: np.dtype(">i2"),
              0x0C: np.dtype(">i4"), 0x0D: np.dtype(">f4"), 0x0E: np.dtype(">f8")}
_IDX_CODES = {np.dtype(v.newbyteorder("=")).str: k for k, v in _IDX_TYPES.items()}


class IdxFormatError(ValueError):
    """A file that is not a well-formed IDX file."""


def _open(path: Path):
    with open(path, "rb") as f:
        gz = f.read(2) == b"\x1f\x8b"
    return gzip.open(path, "rb") if gz else open(path, "rb")


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Read an IDX file (plain or gzip-compressed) into a native-endian NumPy array."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"IDX file not found: {path} (MNIST files are not downloaded; "
                                f"pass the folder that holds them, e.g. --data mnist:/path/to/mnist)")
    try:
        with _open(path) as f:
            raw = f.read()
    except (OSError, EOFError, zlib.error) as e:  # a broken gzip stream raises zlib.error or EOFError
        raise IdxFormatError(f"{path}: cannot be read as an IDX file: {e}") from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0:
        raise IdxFormatError(f"{path}: not an IDX file (magic number {raw[:4].hex() or 'missing'}, "
                             f"expected 0000 followed by a type code and a rank)")
    code, ndim = raw[2], raw[3]
    if code not in _IDX_TYPES:
        raise IdxFormatError(f"{path}: unknown IDX type code 0x{code:02x}; "
                             f"known: {', '.join(f'0x{c:02x}' for c in _IDX_TYPES)}")
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise IdxFormatError(f"{path}: truncated header ({len(raw)} bytes for {ndim} dimensions)")
    shape = tuple(int(s) for s in np.frombuffer(raw, ">u4", ndim, 4))
    dtype = _IDX_TYPES[code]
    want = math.prod(shape) * dtype.itemsize  # Python ints: a forged header cannot overflow
    if len(raw) - header != want:
        raise IdxFormatError(f"{path}: header says shape {shape} of {dtype.name} ({want} bytes of data), "
                             f"but the file holds {len(raw) - header}")
    return np.frombuffer(raw, dtype, offset=header).reshape(shape).astype(dtype.newbyteorder("="))


def write_idx(path: str | os.PathLike, array: np.ndarray) -> None:
    """Write an array as an IDX file (gzip-compressed when the name ends in .gz)."""
    a = np.asarray(array)
    key = a.dtype.newbyteorder("=").str
    if key not in _IDX_CODES:
        raise ValueError(f"write_idx: dtype {a.dtype} has no IDX type code "
                         f"(uint8, int8, int16, int32, float32, float64)")
    code = _IDX_CODES[key]
    data = (bytes([0, 0, code, a.ndim]) + np.asarray(a.shape, ">u4").tobytes()
            + a.astype(_IDX_TYPES[code]).tobytes())
    path = Path(path)
    with (gzip.open if path.suffix == ".gz" else open)(path, "wb") as f:
        f.write(data)


_MNIST = {"train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
          "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")}


def _find(folder: Path, stem: str) -> Path:
    for name in (stem, stem + ".gz", stem.replace("-idx", ".idx"), stem.replace("-idx", ".idx") + ".gz"):
        if (folder / name).is_file():
            return folder / name
    raise FileNotFoundError(f"MNIST file {stem}[.gz] not found in {folder} (nothing is downloaded; "
                            f"the folder must hold {', '.join(s for p in _MNIST.values() for s in p)})")


def _check_finite(path: Path, a: np.ndarray, what: str) -> None:
    """Float IDX data (type codes 0x0D, 0x0E) must be finite: a NaN pixel makes every loss NaN."""
    if a.dtype.kind != "f":
        return
    bad = ~np.isfinite(a)
    if bad.any():
        n_nan = int(np.isnan(a).sum())
        raise IdxFormatError(f"{path}: {int(bad.sum())} of {a.size} {what} values are not finite ({n_nan} NaN, "
                             f"{int(bad.sum()) - n_nan} infinite); {what}s must be finite numbers")


def load_mnist(folder: str | os.PathLike) -> Dataset:
    """MNIST from its four IDX files in `folder` (plain or .gz), images scaled to [0, 1] (uint8) or taken
    as they are (float, which must be finite); IdxFormatError, naming the file, for anything else."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"MNIST folder not found: {folder}")
    parts = {}
    for split, (img_stem, lab_stem) in _MNIST.items():
        img_path, lab_path = _find(folder, img_stem), _find(folder, lab_stem)
        img, lab = read_idx(img_path), read_idx(lab_path)
        _check_finite(img_path, img, "image")
        _check_finite(lab_path, lab, "label")
        if lab.dtype.kind == "f" and not np.array_equal(lab, np.round(lab)):
            raise IdxFormatError(f"{lab_path}: float labels that are not whole numbers (class labels are 0–9)")
        if img.ndim != 3 or lab.ndim != 1 or len(img) != len(lab):
            raise IdxFormatError(f"{folder}: {split} images {img.shape} and labels {lab.shape} do not "
                                 f"pair up (expected (N, H, W) and (N,))")
        if len(lab) == 0:
            raise IdxFormatError(f"{folder}: the {split} split holds no examples")
        if lab.min() < 0 or lab.max() > 9:
            raise IdxFormatError(f"{folder}: {split} labels outside 0–9 ({lab.min()}–{lab.max()})")
        scale = 255.0 if img.dtype == np.uint8 else 1.0
        parts[split] = ((img / scale).astype(np.float32)[:, None], lab.astype(np.int64))
    return Dataset(f"mnist:{folder}", *parts["train"], *parts["test"])


# ---------------------------------------------------------------- synthetic data
def synthetic_linear(w=(2.0, -3.4), b=4.2, n: int = 1000, noise: float = 0.01, seed: int = 0,
                     test_fraction: float = 0.2) -> Dataset:
    """d2l's synthetic regression data: y = x·w + b + N(0, noise²), x ~ N(0, 1); y of shape (n, 1)."""
    rng = np.random.default_rng(seed)
    w = np.asarray(w, np.float64)
    x = rng.standard_normal((n, len(w)))
    y = (x @ w + b + noise * rng.standard_normal(n))[:, None]
    return _split("synthetic-linear", x.astype(np.float32), y.astype(np.float32), test_fraction, seed)


def synthetic_images(n: int = 2000, image_size: int = 8, num_classes: int = 10, noise: float = 0.3,
                     seed: int = 0, test_fraction: float = 0.2) -> Dataset:
    """Images (n, 1, s, s) in [0, 1]: one random template per class plus Gaussian noise, clipped."""
    rng = np.random.default_rng(seed)
    templates = rng.uniform(0, 1, (num_classes, 1, image_size, image_size))
    y = rng.integers(0, num_classes, n)
    x = np.clip(templates[y] + noise * rng.standard_normal((n, 1, image_size, image_size)), 0, 1)
    return _split("synthetic-images", x.astype(np.float32), y.astype(np.int64), test_fraction, seed)


# ---------------------------------------------------------------- batches
class Shuffler:
    """One seeded NumPy generator of minibatch indices, served to both frameworks.

    Each epoch is a fresh permutation cut into full batches; the short remainder is dropped so that
    every step has the same shape and a jitted step never recompiles (docs/traps.md, trap 29).
    """

    def __init__(self, n: int, batch_size: int, seed: int = 0):
        if batch_size < 1 or batch_size > n:
            raise ValueError(f"batch_size must lie in [1, {n}] for {n} examples, got {batch_size}")
        self.n, self.batch_size = n, batch_size
        self.rng = np.random.default_rng(seed)

    @property
    def steps_per_epoch(self) -> int:
        return self.n // self.batch_size

    def epoch(self) -> np.ndarray:
        """The next epoch's batches as an int64 array (steps_per_epoch, batch_size)."""
        perm = self.rng.permutation(self.n)
        return perm[: self.steps_per_epoch * self.batch_size].reshape(-1, self.batch_size)


def load(spec: str, seed: int = 0) -> Dataset:
    """A dataset by name: 'digits', 'mnist:PATH', 'synthetic' (images) or 'synthetic-linear'."""
    if spec == "digits":
        return load_digits(seed=seed)
    if spec.startswith("mnist:"):
        return load_mnist(spec.split(":", 1)[1])
    if spec == "synthetic":
        return synthetic_images(seed=seed)
    if spec == "synthetic-linear":
        return synthetic_linear(seed=seed)
    raise ValueError(f"unknown data {spec!r}; use digits, mnist:PATH, synthetic or synthetic-linear")
