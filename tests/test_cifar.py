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
from ddpm_lib.cli.data import cifar10_main, main as data_main
from ddpm_lib.data import DataIntegrityError, DownloadError

torch.set_num_threads(1)

PER_BATCH = 3


class Py2Pickler(pickle._Pickler):
    """Protocol 2 as Python 2 wrote it: byte strings as (SHORT_)BINSTRING, not _codecs.encode(...)."""

    dispatch = pickle._Pickler.dispatch.copy()

    def save_py2_str(self, obj):
        n = len(obj)
        self.write(
            pickle.SHORT_BINSTRING + bytes([n]) + obj
            if n < 256
            else pickle.BINSTRING + struct.pack("<i", n) + obj
        )
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
    d = {
        b"batch_label": b"training batch",
        b"labels": list(map(int, labels)),
        b"data": data,
        b"filenames": [b"img_%d.png" % i for i in range(len(labels))],
    }
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
    """A CIFAR-10-format archive with PER_BATCH images per batch:
    (path, train data, train labels, test data, test labels)."""
    members, tr_x, tr_y = {}, [], []
    for i in range(1, 6):
        x = _images(i, PER_BATCH)
        y = [(i + k) % 10 for k in range(PER_BATCH)]
        members[f"data_batch_{i}"] = _batch_pickle(x, y, legacy_names=(i % 2 == 1))  # both numpy names occur
        tr_x.append(x)
        tr_y += y
    te_x, te_y = _images(99, PER_BATCH), [9, 0, 5]
    members["test_batch"] = _batch_pickle(te_x, te_y)
    members["batches.meta"] = py2_dumps(
        {
            b"label_names": [n.encode() for n in C.CIFAR10_CLASSES],
            b"num_cases_per_batch": PER_BATCH,
            b"num_vis": 3072,
        }
    )
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
    path, *_, te_x, te_y = small_archive
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
    assert set(C._allowed_globals()) == {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
    }
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
    with pytest.raises(
        DownloadError, match="the download failed: network unreachable"
    ):  # a FileNotFoundError
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


def test_verify_and_its_command_line(small_archive, tmp_path, capsys):
    path, *_ = small_archive
    folder = tmp_path / "extracted"
    with tarfile.open(path) as tar:
        for m in tar.getmembers():
            (folder / m.name).parent.mkdir(parents=True, exist_ok=True)
            (folder / m.name).write_bytes(tar.extractfile(m).read())
    batches = folder / "cifar-10-batches-py"
    r = C.verify_cifar10(folder)
    assert r["source"] == batches and r["sha256"] is None
    assert r["splits"] == {
        "train": ((5 * PER_BATCH, 3, 32, 32), 5 * PER_BATCH),
        "test": ((PER_BATCH, 3, 32, 32), PER_BATCH),
    }
    assert data_main(["cifar10", "verify", str(folder)]) == 0
    assert (
        capsys.readouterr().out
        == f"train: {(15, 3, 32, 32)} images, 15 labels\ntest: {(3, 3, 32, 32)} images, 3 labels\n"
    )
    # python -m ddpm_lib.cifar ARGS is ddpm-data cifar10 ARGS; an archive must be the official one (exit 1)
    with pytest.raises(DataIntegrityError, match="sha256 mismatch"):
        C.verify_cifar10(path)
    assert cifar10_main(["verify", str(path)]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"error: {path}: sha256 mismatch") and len(err.splitlines()) == 1
    # a batch that does not read fails the check (exit 1); nothing there is a usage error (exit 2)
    (batches / "data_batch_3").write_bytes(b"\x80\x02garbage")
    with pytest.raises(DataIntegrityError, match="data_batch_3 is not a readable CIFAR-10 batch"):
        C.verify_cifar10(folder)
    assert cifar10_main(["verify", str(folder)]) == 1
    assert cifar10_main(["verify", str(tmp_path / "nothing")]) == 2
    assert "CIFAR-10 not found" in capsys.readouterr().err


def test_download_failure_exits_1(tmp_path, monkeypatch, capsys):
    def no_network(*a, **k):
        raise OSError("network unreachable")

    monkeypatch.setattr(C.urllib.request, "urlopen", no_network)
    assert data_main(["cifar10", "download", "--dest", str(tmp_path)]) == 1
    assert capsys.readouterr().err == "error: network unreachable\n"
    assert not list(tmp_path.iterdir())


def test_official_constants():
    assert C.CIFAR10_MD5 == "c58f30108f718f92721af3b95e74349a"
    assert C.CIFAR10_SHA256 == "6d958be074577803d12ecdefd02955f39262c83c16fe9348329d7fe0b5c001ce"
    assert C.CIFAR10_URL == "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"


# -- crafted archives: bounded memory, one-line errors ------------------------------------------

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
REFUSAL_BUDGET_MB = 150  # peak RSS a refusal may add to the imports' (before the checks: 0.6-5.5 GB)


class _Uninitialised:
    """Pickles as numpy's ``_reconstruct(ndarray, shape, dtype)`` with no BUILD after it: without the
    check, unpickling returns an uninitialised array of ``shape`` that no byte of the file fills."""

    def __init__(self, shape, dtype="u1"):
        self.shape, self.dtype = shape, np.dtype(dtype)

    def __reduce__(self):
        from numpy._core.multiarray import _reconstruct

        return (_reconstruct, (np.ndarray, self.shape, self.dtype))


def _uninitialised_batch(n=200_000) -> bytes:
    # the labels are real (zeros, which gzip shrinks to nothing), so only the images are conjured
    return py2_dumps({b"data": _Uninitialised((n, 3072)), b"labels": np.zeros(n, np.uint8)})


def _gzip_bomb(path, claimed=600 << 20, member="test_batch") -> None:
    """A tar.gz of a few hundred kB whose ``member`` expands to ``claimed`` zero bytes,
    made as a multi-member gzip (one compressed 1 MiB block repeated) so the test writes it fast."""
    import gzip

    info = tarfile.TarInfo(f"{C.CIFAR10_FOLDER}/{member}")
    info.size = claimed
    block = gzip.compress(bytes(1 << 20), compresslevel=9)
    with open(path, "wb") as f:
        f.write(gzip.compress(info.tobuf(format=tarfile.GNU_FORMAT)))
        for _ in range(claimed >> 20):
            f.write(block)
        f.write(gzip.compress(bytes(1024)))  # the end-of-archive blocks


def test_a_pickle_cannot_ask_for_uninitialised_memory():
    raw = _uninitialised_batch()
    with pytest.raises(C.UnsafePickleError, match=r"refusing numpy _reconstruct\(ndarray, \(200000, 3072\)"):
        C.restricted_loads(raw)
    # numpy's own pickles still load, and their bytes must be all there (numpy checks the length)
    a = np.arange(12, dtype=np.uint8).reshape(4, 3)
    assert np.array_equal(C.restricted_loads(py2_dumps(a)), a)
    raw = py2_dumps(a)
    short = raw.replace(b"U\x0c" + bytes(range(12)), b"U\x0b" + bytes(range(11)))  # one byte fewer
    assert short != raw
    with pytest.raises(ValueError, match="buffer size does not match"):
        C.restricted_loads(short)


def test_members_larger_than_cifar_files_are_refused_unread(tmp_path):
    bomb = tmp_path / "bomb.tar.gz"
    _gzip_bomb(bomb)
    assert bomb.stat().st_size < 1 << 20
    with pytest.raises(
        ValueError,
        match=r"bomb.tar.gz: archive member cifar-10-batches-py/test_batch is "
        r"629145600 bytes, more than any CIFAR-10 file",
    ):
        C.cifar10("test", root=bomb)
    folder = tmp_path / "extracted" / C.CIFAR10_FOLDER
    folder.mkdir(parents=True)
    for name in ("data_batch_1", "test_batch"):
        with open(folder / name, "wb") as f:
            f.truncate(C.MAX_MEMBER_BYTES + 1)  # sparse: no disk used
    with pytest.raises(ValueError, match=r"test_batch is 33554433 bytes, more than any CIFAR-10 file"):
        C.cifar10("test", root=folder.parent)


def _train_cli_measured(data_root, out_dir):
    """(exit code, stderr, MB of peak RSS added after the imports) of the train CLI on CIFAR-10 at data_root."""
    import subprocess
    import sys

    code = (
        "import resource, sys\nfrom ddpm_lib.cli.train import main\n"
        "base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\nrc = main(sys.argv[1:])\n"
        "print(f'added_kb={resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base}', file=sys.stderr)\n"
        "sys.exit(rc)\n"
    )

    def cap_memory():  # a regression fails the test instead of exhausting the machine
        import resource

        resource.setrlimit(resource.RLIMIT_AS, (3 << 30, 3 << 30))

    args = [
        "--dataset",
        "cifar10",
        "--model",
        "unet",
        "--data-root",
        str(data_root),
        "--out-dir",
        str(out_dir),
        "--steps",
        "1",
        "--no-progress",
        "--threads",
        "1",
    ]
    r = subprocess.run(
        [sys.executable, "-c", code, *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        preexec_fn=cap_memory,
        env={"OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"},
    )
    added = [int(s.split("=")[1]) for s in r.stderr.splitlines() if s.startswith("added_kb=")]
    return r.returncode, r.stderr, (added[-1] / 1024 if added else float("inf"))


@pytest.mark.slow
@pytest.mark.parametrize("case", ["uninitialised", "gzip-bomb"])
def test_crafted_archives_reach_the_train_cli_as_one_line(tmp_path, case):
    path = tmp_path / "cifar-10-python.tar.gz"
    if case == "gzip-bomb":
        _gzip_bomb(path, member="data_batch_1")
        message = "archive member cifar-10-batches-py/data_batch_1 is 629145600 bytes"
    else:
        members = {f"data_batch_{i}": _uninitialised_batch() for i in range(1, 6)}
        members["test_batch"] = members["data_batch_1"]
        _write_archive(path, members)
        assert path.stat().st_size < 4000  # 5 x 614 MB of images asked for
        message = "data_batch_1: refusing numpy _reconstruct(ndarray, (200000, 3072)"
    rc, err, added_mb = _train_cli_measured(path, tmp_path / "run")
    assert rc == 1, err  # a corrupt data file is a failure (exit 1), as ddpm-data cifar10 verify reports it
    lines = [s for s in err.splitlines() if not s.startswith("added_kb=")]
    assert len(lines) == 1 and lines[0].startswith(f"error: cannot load dataset 'cifar10': {path}"), err
    assert message in lines[0], err
    assert added_mb < REFUSAL_BUDGET_MB, f"the refusal took {added_mb:.0f} MB"
