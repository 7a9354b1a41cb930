"""CIFAR-10 reader: the official archive's layout, read with a restricted unpickler."""

import io
import os
import pickle
import struct
import tarfile

import numpy as np
import pytest
import torch

from ddpm_lib import cifar as C
from ddpm_lib.data import DataIntegrityError

torch.set_num_threads(1)

PER_BATCH = 3


class Py2Pickler(pickle._Pickler):
    """Protocol 2 as Python 2 wrote it: byte strings as (SHORT_)BINSTRING, not _codecs.encode(...)."""

    dispatch = pickle._Pickler.dispatch.copy()

    def save_py2_str(self, obj):
        n = len(obj)
        self.write(pickle.SHORT_BINSTRING + bytes([n]) + obj if n < 256 else pickle.BINSTRING + struct.pack("<i", n) + obj)
        self.memoize(obj)

    dispatch[bytes] = save_py2_str


def py2_dumps(obj) -> bytes:
    f = io.BytesIO()
    Py2Pickler(f, protocol=2).dump(obj)
    return f.getvalue()


def _batch_pickle(data: np.ndarray, labels, legacy_names: bool = True) -> bytes:
    """A batch as the official files hold it: a Python 2 protocol-2 pickle of a dict with byte-string keys.

    The official files were written by Python 2 with numpy 1, which names numpy's reconstructor
    ``numpy.core.multiarray._reconstruct``; numpy 2 writes ``numpy._core.multiarray``. With
    ``legacy_names`` the stream is rewritten to the old name (protocol 2 names globals in text).
    """
    d = {b"batch_label": b"training batch", b"labels": list(map(int, labels)), b"data": data,
         b"filenames": [b"img_%d.png" % i for i in range(len(labels))]}
    raw = py2_dumps(d)
    assert b"_codecs" not in raw
    if legacy_names:
        raw = raw.replace(b"numpy._core.multiarray", b"numpy.core.multiarray")
        assert b"cnumpy.core.multiarray\n_reconstruct" in raw
    return raw


def _images(seed: int, n: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(n, 3072), dtype=np.uint8)


def _write_archive(path, members: dict) -> None:
    with tarfile.open(path, "w:gz") as tar:
        for name, raw in members.items():
            info = tarfile.TarInfo(f"cifar-10-batches-py/{name}")
            info.size = len(raw)
            tar.addfile(info, io.BytesIO(raw))


@pytest.fixture
def small_archive(tmp_path):
    """A CIFAR-10-format archive with PER_BATCH images per batch: (path, train data, train labels, test data, test labels)."""
    members, tr_x, tr_y = {}, [], []
    for i in range(1, 6):
        x = _images(i, PER_BATCH)
        y = [(i + k) % 10 for k in range(PER_BATCH)]
        members[f"data_batch_{i}"] = _batch_pickle(x, y, legacy_names=(i % 2 == 1))  # both numpy names occur
        tr_x.append(x)
        tr_y += y
    te_x, te_y = _images(99, PER_BATCH), [9, 0, 5]
    members["test_batch"] = _batch_pickle(te_x, te_y)
    members["batches.meta"] = py2_dumps({b"label_names": [n.encode() for n in C.CIFAR10_CLASSES],
                                         b"num_cases_per_batch": PER_BATCH, b"num_vis": 3072})
    path = tmp_path / "cifar-10-python.tar.gz"
    _write_archive(path, members)
    return path, np.concatenate(tr_x), np.array(tr_y), te_x, np.array(te_y)


def test_reads_small_archive(small_archive):
    path, tr_x, tr_y, te_x, te_y = small_archive
    x, y = C.cifar10("train", root=path)
    assert x.shape == (5 * PER_BATCH, 3, 32, 32) and x.dtype == torch.float32
    assert y.dtype == torch.int64 and y.tolist() == tr_y.tolist()
    assert x.min() >= -1 and x.max() <= 1
    # layout: 1024 red, 1024 green, 1024 blue, each 32x32 row-major; scaling x / 127.5 - 1
    want = torch.from_numpy(tr_x.reshape(-1, 3, 32, 32).astype(np.float32)) / 127.5 - 1
    assert torch.equal(x, want)
    assert float(x[0, 1, 0, 0]) == pytest.approx(tr_x[0, 1024] / 127.5 - 1)
    xt, yt = C.cifar10("test", root=path)
    assert xt.shape == (PER_BATCH, 3, 32, 32) and yt.tolist() == te_y.tolist()
    # a folder holding the archive works too, and so does an extracted batches folder
    x2, _ = C.cifar10("test", root=path.parent)
    assert torch.equal(x2, xt)
    assert C.cifar10_class_names(path) == C.CIFAR10_CLASSES


def test_extracted_folder(small_archive, tmp_path):
    path, *_ , te_x, te_y = small_archive
    out = tmp_path / "extracted"
    with tarfile.open(path) as tar:
        for m in tar.getmembers():
            (out / m.name).parent.mkdir(parents=True, exist_ok=True)
            (out / m.name).write_bytes(tar.extractfile(m).read())
    x, y = C.cifar10("test", root=out)
    assert y.tolist() == te_y.tolist() and x.shape == (PER_BATCH, 3, 32, 32)


class _Evil:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_malicious_pickle_is_refused(tmp_path):
    marker = tmp_path / "pwned"
    evil = py2_dumps({b"data": _Evil(marker), b"labels": [0]})
    with pytest.raises(C.UnsafePickleError, match=r"refusing to load global (posix|os|nt)\.system"):
        C.restricted_loads(evil)
    assert not marker.exists()
    # plain pickle would have run it: the payload is real
    for payload in (pickle.dumps(eval, protocol=2), pickle.dumps(_Evil(marker), protocol=4)):
        with pytest.raises(C.UnsafePickleError):
            C.restricted_loads(payload)
    assert not marker.exists()

    # the same inside an archive: cifar10() refuses, naming the member
    members = {f"data_batch_{i}": _batch_pickle(_images(i, 1), [0]) for i in range(1, 6)}
    members["test_batch"] = evil
    path = tmp_path / "evil.tar.gz"
    _write_archive(path, members)
    with pytest.raises(C.UnsafePickleError, match="test_batch"):
        C.cifar10("test", root=path)
    assert not marker.exists()


def test_allowed_globals_only_numpy_reconstruction():
    assert set(C._allowed_globals()) == {("numpy.core.multiarray", "_reconstruct"),
                                         ("numpy._core.multiarray", "_reconstruct"),
                                         ("numpy", "ndarray"), ("numpy", "dtype")}
    # numpy's own pickles of plain arrays load; other classes do not
    a = np.arange(6, dtype=np.uint8).reshape(2, 3)
    assert np.array_equal(C.restricted_loads(py2_dumps(a)), a)
    assert np.array_equal(C.restricted_loads(pickle.dumps(a, protocol=4)), a)  # numpy 2's own names
    with pytest.raises(C.UnsafePickleError):
        C.restricted_loads(py2_dumps(np.ma.masked_array(a)))
    with pytest.raises(C.UnsafePickleError, match="_codecs.encode"):  # Python 3's protocol-2 bytes
        C.restricted_loads(pickle.dumps(b"abc", protocol=2))


def test_bad_batches_are_reported(tmp_path):
    def archive(test_batch):
        members = {f"data_batch_{i}": _batch_pickle(_images(i, 1), [0]) for i in range(1, 6)}
        members["test_batch"] = test_batch
        p = tmp_path / f"a{len(list(tmp_path.iterdir()))}.tar.gz"
        _write_archive(p, members)
        return p

    with pytest.raises(ValueError, match="uint8 array"):
        C.cifar10("test", root=archive(_batch_pickle(_images(0, 2)[:, :100], [0, 1])))
    with pytest.raises(ValueError, match="labels for"):
        C.cifar10("test", root=archive(_batch_pickle(_images(0, 2), [0])))
    with pytest.raises(ValueError, match="not a readable"):
        C.cifar10("test", root=archive(b"\x80\x02garbage"))
    truncated = tmp_path / "trunc.tar.gz"
    good = archive(_batch_pickle(_images(0, 2), [0, 1]))
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(ValueError):
        C.cifar10("test", root=truncated)


def test_offline_missing_message(tmp_path, monkeypatch):
    monkeypatch.setenv("DDPM_DATA_DIR", str(tmp_path / "data"))
    with pytest.raises(FileNotFoundError) as e:
        C.cifar10("train")
    msg = str(e.value)
    assert C.CIFAR10_URL in msg and C.CIFAR10_SHA256 in msg and C.CIFAR10_MD5 in msg
    assert "download=True" in msg and str(tmp_path / "data" / "cifar10") in msg
    # a download that cannot reach the network fails with the same advice
    def no_network(*a, **k):
        raise OSError("network unreachable")

    monkeypatch.setattr(C.urllib.request, "urlopen", no_network)
    with pytest.raises(FileNotFoundError, match="the download failed: network unreachable"):
        C.cifar10("test", download=True)
    assert not any((tmp_path / "data" / "cifar10").glob("*.part"))
    with pytest.raises(ValueError, match="unknown CIFAR-10 split"):
        C.cifar10("valid", root=tmp_path)


def test_data_folder_copy_must_be_official(small_archive, tmp_path, monkeypatch):
    path = small_archive[0]
    data = tmp_path / "data"
    (data / "cifar10").mkdir(parents=True)
    (data / "cifar10" / C.CIFAR10_ARCHIVE).write_bytes(path.read_bytes())
    monkeypatch.setenv("DDPM_DATA_DIR", str(data))
    with pytest.raises(DataIntegrityError, match="sha256 mismatch"):
        C.cifar10("test")
    # an explicit root is read as is, unless verify=True
    assert C.cifar10("test", root=path)[0].shape[0] == PER_BATCH
    with pytest.raises(DataIntegrityError):
        C.cifar10("test", root=path, verify=True)


def test_official_constants():
    assert C.CIFAR10_MD5 == "c58f30108f718f92721af3b95e74349a"
    assert C.CIFAR10_SHA256 == "6d958be074577803d12ecdefd02955f39262c83c16fe9348329d7fe0b5c001ce"
    assert C.CIFAR10_URL == "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
