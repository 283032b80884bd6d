"""Data: scikit-learn's digits, the IDX reader/writer on small files written here, MNIST folders,
synthetic generators and the one seeded shuffler both frameworks share."""
import gzip

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from parity import data
from parity.tolerances import LINREG_RECOVERY

IDX_DTYPES = [np.uint8, np.int8, np.int16, np.int32, np.float32, np.float64]


@given(arr=hnp.arrays(st.sampled_from(IDX_DTYPES), hnp.array_shapes(min_dims=1, max_dims=4, max_side=5)),
       gz=st.booleans())
def test_idx_round_trip(tmp_path_factory, arr, gz):
    path = tmp_path_factory.mktemp("idx") / ("a.idx.gz" if gz else "a.idx")
    data.write_idx(path, arr)
    back = data.read_idx(path)
    assert back.dtype == arr.dtype.newbyteorder("=") and back.shape == arr.shape
    np.testing.assert_array_equal(back, arr)


def test_idx_layout_is_big_endian_mnist(tmp_path):
    """The header MNIST's files use: 0x00000803 then the dimensions as big-endian uint32."""
    path = tmp_path / "x"
    data.write_idx(path, np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4))
    raw = path.read_bytes()
    assert raw[:4] == bytes([0, 0, 0x08, 3]) and raw[4:16] == bytes([0, 0, 0, 2, 0, 0, 0, 3, 0, 0, 0, 4])
    data.write_idx(path, np.array([1, 256], np.int32))
    assert path.read_bytes()[8:] == bytes([0, 0, 0, 1, 0, 0, 1, 0])


@pytest.mark.parametrize("raw,match", [
    (b"", "not an IDX file"),
    (b"\x01\x00\x08\x01", "not an IDX file"),
    (b"\x00\x00\x07\x01\x00\x00\x00\x01\x00", "unknown IDX type code 0x07"),
    (b"\x00\x00\x08\x03\x00\x00\x00\x02", "truncated header"),
    (b"\x00\x00\x08\x01\x00\x00\x00\x05\x01\x02", r"shape \(5,\).*holds 2"),
    (b"\x00\x00\x08\x01\x00\x00\x00\x01\x01\x02", "holds 2"),
])
def test_malformed_idx_files_raise_clearly(tmp_path, raw, match):
    path = tmp_path / "bad"
    path.write_bytes(raw)
    with pytest.raises(data.IdxFormatError, match=match):
        data.read_idx(path)


def test_truncated_gzip_raises_clearly(tmp_path):
    path = tmp_path / "bad.gz"
    path.write_bytes(gzip.compress(b"\x00\x00\x08\x01\x00\x00\x00\x04\x01\x02\x03\x04")[:-6])
    with pytest.raises(data.IdxFormatError, match="cannot be read"):
        data.read_idx(path)


def test_missing_file_and_unwritable_dtype(tmp_path):
    with pytest.raises(FileNotFoundError, match="IDX file not found.*not downloaded"):
        data.read_idx(tmp_path / "nope")
    with pytest.raises(ValueError, match="no IDX type code"):
        data.write_idx(tmp_path / "x", np.zeros(2, np.int64))


def _mnist_folder(folder, n_train=6, n_test=4, gz=False, labels=None):
    rng = np.random.default_rng(0)
    suffix = ".gz" if gz else ""
    for stem, n in (("train", n_train), ("t10k", n_test)):
        data.write_idx(folder / f"{stem}-images-idx3-ubyte{suffix}", rng.integers(0, 256, (n, 28, 28), dtype=np.uint8))
        lab = rng.integers(0, 10, n).astype(np.uint8) if labels is None else labels[:n]
        data.write_idx(folder / f"{stem}-labels-idx1-ubyte{suffix}", lab)
    return folder


@pytest.mark.parametrize("gz", [False, True])
def test_mnist_folder_of_small_idx_files(tmp_path, gz):
    ds = data.load_mnist(_mnist_folder(tmp_path, gz=gz))
    assert ds.x_train.shape == (6, 1, 28, 28) and ds.x_test.shape == (4, 1, 28, 28)
    assert ds.x_train.dtype == np.float32 and 0 <= ds.x_train.min() and ds.x_train.max() <= 1
    assert ds.y_train.dtype == np.int64
    raw = data.read_idx(tmp_path / ("train-images-idx3-ubyte" + (".gz" if gz else "")))
    np.testing.assert_array_equal(ds.x_train[:, 0], (raw / 255.0).astype(np.float32))
    assert data.load(f"mnist:{tmp_path}").name == f"mnist:{tmp_path}"


def test_mnist_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="MNIST folder not found"):
        data.load_mnist(tmp_path / "absent")
    folder = _mnist_folder(tmp_path)
    (folder / "t10k-labels-idx1-ubyte").unlink()
    with pytest.raises(FileNotFoundError, match="t10k-labels-idx1-ubyte.*not found"):
        data.load_mnist(folder)
    data.write_idx(folder / "t10k-labels-idx1-ubyte", np.zeros(3, np.uint8))  # 4 images, 3 labels
    with pytest.raises(data.IdxFormatError, match="do not pair up"):
        data.load_mnist(folder)
    bad = tmp_path / "bad"
    bad.mkdir()
    with pytest.raises(data.IdxFormatError, match="labels outside 0–9"):
        data.load_mnist(_mnist_folder(bad, labels=np.array([0, 1, 12, 3, 4, 5], np.uint8)))


def test_digits_shapes_and_split():
    ds = data.load_digits()
    assert len(ds.x_train) + len(ds.x_test) == 1797 and len(ds.x_test) == 359
    assert ds.x_train.shape[1:] == (1, 8, 8) and ds.x_train.dtype == np.float32
    assert ds.x_train.min() == 0 and ds.x_train.max() == 1
    assert set(np.unique(ds.y_train)) == set(range(10)) and ds.y_train.dtype == np.int64
    again = data.load_digits()
    np.testing.assert_array_equal(ds.x_test, again.x_test)  # the split is seeded


def test_synthetic_generators():
    ds = data.synthetic_linear(n=1000, seed=0)
    assert ds.x_train.shape == (800, 2) and ds.y_train.shape == (800, 1)
    x = np.c_[ds.x_train, np.ones(800)].astype(np.float64)
    w = np.linalg.lstsq(x, ds.y_train[:, 0].astype(np.float64), rcond=None)[0]
    np.testing.assert_allclose(w, [2.0, -3.4, 4.2], rtol=0, atol=LINREG_RECOVERY.atol, err_msg=LINREG_RECOVERY.source)
    im = data.synthetic_images(n=100, image_size=6, num_classes=3, seed=1)
    assert im.x_train.shape == (80, 1, 6, 6) and im.y_train.max() < 3 and 0 <= im.x_train.min()
    with pytest.raises(ValueError, match="unknown data"):
        data.load("cifar")


def test_shuffler_is_seeded_drops_the_remainder_and_never_repeats():
    a, b = data.Shuffler(50, 16, seed=3), data.Shuffler(50, 16, seed=3)
    e1, e2 = a.epoch(), a.epoch()
    np.testing.assert_array_equal(e1, b.epoch())  # one seed, one batch order for both frameworks
    assert e1.shape == (3, 16) and a.steps_per_epoch == 3  # 50 = 3·16 + 2: the 2 are dropped (docs/traps.md, trap 29)
    assert len(np.unique(e1)) == 48 and not np.array_equal(e1, e2)
    with pytest.raises(ValueError, match="batch_size"):
        data.Shuffler(10, 11)
