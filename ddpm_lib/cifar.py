"""CIFAR-10 from the official python-format archive, read without trusting pickle.

The archive ``cifar-10-python.tar.gz`` (https://www.cs.toronto.edu/~kriz/cifar.html) holds a
folder ``cifar-10-batches-py/`` with ``data_batch_1`` .. ``data_batch_5`` (10,000 images each),
``test_batch`` (10,000) and ``batches.meta``. Each is a Python 2 pickle of a dict with
``b"data"``, a uint8 numpy array (N, 3072) (1024 red, then 1024 green, then 1024 blue values,
each a 32x32 image in row-major order) and ``b"labels"``, a list of N ints in 0..9.

A pickle can run any code when loaded, so these files are never given to ``pickle.load``: a
:class:`RestrictedUnpickler` resolves only the few globals that a numpy array needs
(``numpy.core.multiarray._reconstruct`` -- ``numpy._core.multiarray`` in numpy 2 --,
``numpy.ndarray`` and ``numpy.dtype``) and refuses every other global (``os.system``, ``eval``,
...) with :class:`UnsafePickleError` before anything is called. Its ``_reconstruct`` makes only
the empty placeholder numpy itself pickles, so every array's contents come from the bytes in the
file (numpy's ``__setstate__`` requires exactly shape x itemsize of them): a pickle cannot ask
for a large uninitialised array. Members are read straight from the archive (nothing is
extracted, so no path in the archive is ever written), and none larger than MAX_MEMBER_BYTES is
read: a crafted archive costs at most that much memory per member.

Where the archive is looked for, in order:

1. ``root=``: the archive itself, a folder holding it, or a folder holding ``cifar-10-batches-py/``;
2. the course's data folder, ``data/cifar10/`` (``$DDPM_DATA_DIR/cifar10/``);
3. a download from the official URL (``download=True``), checked by sha256 (and md5).

An archive in the data folder or downloaded must be the official one (sha256 below); an
archive passed as ``root`` is read as is unless ``verify=True`` (the restricted unpickler and
the shape checks still apply).

Command line (:mod:`ddpm_lib.cli.data`): ``ddpm-data cifar10 download`` | ``verify [PATH]``, the
same as ``python -m ddpm_lib.cifar download`` | ``verify [PATH]``.
"""

from __future__ import annotations

# python -m ddpm_lib.cifar runs ddpm-data cifar10; up here, so that this module's body never runs as __main__
if __name__ == "__main__":
    from ddpm_lib.cli.data import cifar10_main

    raise SystemExit(cifar10_main())

import hashlib
import http.client
import io
import pickle
import tarfile
import urllib.request
import zlib
from pathlib import Path
from typing import Optional

import numpy as np
import torch

from .data import DATA_DIR_ENV, DataIntegrityError, DownloadError, data_dir
from .utils import atomic_write

__all__ = [
    "cifar10",
    "CIFAR10_CLASSES",
    "CIFAR10_URL",
    "CIFAR10_ARCHIVE",
    "CIFAR10_SHA256",
    "CIFAR10_MD5",
    "CIFAR10_SIZE",
    "RestrictedUnpickler",
    "UnsafePickleError",
    "restricted_loads",
    "find_cifar10",
    "verify_archive",
    "download_cifar10",
    "verify_cifar10",
]

CIFAR10_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
CIFAR10_ARCHIVE = "cifar-10-python.tar.gz"
CIFAR10_FOLDER = "cifar-10-batches-py"
# the official archive (the md5 is the one published on the CIFAR page and used by torchvision)
CIFAR10_MD5 = "c58f30108f718f92721af3b95e74349a"
CIFAR10_SHA256 = "6d958be074577803d12ecdefd02955f39262c83c16fe9348329d7fe0b5c001ce"
CIFAR10_SIZE = 170498071  # bytes; informational (the check is by sha256)
CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
_SPLITS = {"train": tuple(f"data_batch_{i}" for i in range(1, 6)), "test": ("test_batch",)}
DOWNLOAD_TIMEOUT = 30.0
# The official archive's largest files are the batches, 31,035,704 bytes each (batches.meta is
# 158): a member claiming more is not CIFAR-10, and is refused before a byte of it is read.
MAX_MEMBER_BYTES = 32 << 20
MAX_MEMBERS = 64  # the official archive has 9 entries; a scan of the archive stops here


# ----------------------------------------------------------------------------------------------
# restricted unpickling


class UnsafePickleError(pickle.UnpicklingError):
    """A pickle that asks for a global this reader does not allow."""


def _allowed_globals() -> dict:
    """(module, name) -> object: exactly what numpy arrays in the CIFAR batches need."""
    try:
        from numpy._core import multiarray as _ma  # numpy >= 2
    except ImportError:  # pragma: no cover - numpy 1.x
        from numpy.core import multiarray as _ma
    reconstruct = _placeholder_only(_ma._reconstruct)
    return {
        ("numpy.core.multiarray", "_reconstruct"): reconstruct,  # as the official files (numpy 1) name it
        ("numpy._core.multiarray", "_reconstruct"): reconstruct,  # as numpy 2 names it
        ("numpy", "ndarray"): np.ndarray,
        ("numpy", "dtype"): np.dtype,
    }


def _placeholder_only(reconstruct):
    """numpy's ``_reconstruct`` limited to the empty array numpy's own pickles start from.

    numpy pickles an array as ``_reconstruct(ndarray, (0,), b'b')`` followed by a BUILD whose
    ``__setstate__`` sets the shape and copies the stored bytes (refusing any other length). Called
    with another shape, ``_reconstruct`` returns an *uninitialised* array of that shape: 522 bytes
    of pickle could ask for gigabytes of heap, read back as images. So any non-empty shape is
    refused here, and every array that has contents got them from bytes in the file.
    """

    def _reconstruct(subtype, shape, dtype):
        dims = shape if isinstance(shape, tuple) else (shape,)
        if subtype is not np.ndarray or not all(type(d) is int for d in dims) or 0 not in dims:
            raise UnsafePickleError(
                f"refusing numpy _reconstruct({getattr(subtype, '__name__', subtype)}, {shape!r}, ...): numpy's own "
                f"pickles create only an empty ndarray here and fill it from the stored bytes (a non-empty shape "
                f"would be uninitialised memory)"
            )
        return reconstruct(subtype, shape, dtype)

    return _reconstruct


class RestrictedUnpickler(pickle.Unpickler):
    """An Unpickler whose ``find_class`` resolves only numpy's array-reconstruction globals.

    Anything else -- ``os.system``, ``builtins.eval``, ``subprocess.Popen``, any class -- raises
    :class:`UnsafePickleError` when the pickle names it, before it could be called. The allowed
    objects are looked up in a fixed table, never imported by the names in the file.
    """

    _ALLOWED = None

    def find_class(self, module: str, name: str):
        if RestrictedUnpickler._ALLOWED is None:
            RestrictedUnpickler._ALLOWED = _allowed_globals()
        obj = RestrictedUnpickler._ALLOWED.get((module, name))
        if obj is None:
            allowed = ", ".join(f"{m}.{n}" for m, n in RestrictedUnpickler._ALLOWED)
            raise UnsafePickleError(
                f"refusing to load global {module}.{name} from a pickle: only {allowed} are allowed "
                f"(the CIFAR-10 batches need nothing else; this file is not an official CIFAR-10 batch)"
            )
        return obj

    def persistent_load(self, pid):
        raise UnsafePickleError("refusing a pickle with persistent ids")


def restricted_loads(data: bytes, encoding: str = "bytes"):
    """Unpickle ``data`` with :class:`RestrictedUnpickler` (Python 2 strings come back as bytes)."""
    return RestrictedUnpickler(io.BytesIO(data), encoding=encoding).load()


# ----------------------------------------------------------------------------------------------
# finding and verifying the archive


def _sha256_md5(path: Path) -> tuple[str, str]:
    h, m = hashlib.sha256(), hashlib.md5()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
            m.update(chunk)
    return h.hexdigest(), m.hexdigest()


_VERIFIED: dict = {}


def verify_archive(path) -> str:
    """Check that ``path`` is the official archive (sha256; cached per process). Returns the sha256."""
    path = Path(path)
    st = path.stat()
    key = (str(path.resolve()), st.st_size, st.st_mtime_ns)
    if key in _VERIFIED:
        return _VERIFIED[key]
    sha, md5 = _sha256_md5(path)
    if sha != CIFAR10_SHA256:
        raise DataIntegrityError(
            f"{path}: sha256 mismatch for {CIFAR10_ARCHIVE}: expected {CIFAR10_SHA256} (md5 {CIFAR10_MD5}, "
            f"{CIFAR10_SIZE} bytes); got {sha} (md5 {md5}, {st.st_size} bytes). The file is corrupt or not the "
            f"official archive: delete it and get it again."
        )
    _VERIFIED[key] = sha
    return sha


def _default_dir() -> Path:
    return data_dir() / "cifar10"


def _candidates(root) -> list[tuple[Path, bool, str]]:
    """(path, must_verify, why) for every place to look, archive or extracted folder."""
    out = []
    if root is not None:
        r = Path(root)
        out += [
            (r, False, "root="),
            (r / CIFAR10_ARCHIVE, False, "root="),
            (r / CIFAR10_FOLDER, False, "root="),
        ]
    d = _default_dir()
    out += [
        (d / CIFAR10_ARCHIVE, True, f"the course's data folder (${DATA_DIR_ENV} overrides)"),
        (d / CIFAR10_FOLDER, False, f"the course's data folder (${DATA_DIR_ENV} overrides)"),
    ]
    return out


def _is_batches_folder(p: Path) -> bool:
    return p.is_dir() and (p / "test_batch").is_file() and (p / "data_batch_1").is_file()


def find_cifar10(root=None) -> Optional[tuple[Path, bool]]:
    """(the archive or batches folder found, whether it must be the official archive), or None."""
    for p, must, _ in _candidates(root):
        if p.is_file() and (p.name.endswith((".tar.gz", ".tgz", ".tar")) or tarfile.is_tarfile(p)):
            return p, must
        if _is_batches_folder(p):
            return p, False
    return None


def _missing_message(root) -> str:
    looked = "\n".join(f"    {p}  ({why})" for p, _, why in _candidates(root))
    return (
        f"CIFAR-10 not found. Looked for {CIFAR10_ARCHIVE} (or an extracted {CIFAR10_FOLDER}/) in:\n{looked}\n"
        "Ways to get it:\n"
        f"  1. download {CIFAR10_URL} (170 MB; sha256 {CIFAR10_SHA256}, md5 {CIFAR10_MD5}) and put it in "
        f"{_default_dir()}/ (or set ${DATA_DIR_ENV} to a folder holding cifar10/{CIFAR10_ARCHIVE});\n"
        f"  2. pass root= the archive or the folder that holds it (a torchvision download folder has the same file);\n"
        f"  3. call cifar10(..., download=True) or run: ddpm-data cifar10 download  (needs the network)"
    )


def download_cifar10(dest_dir=None) -> Path:
    """Fetch the official archive into ``dest_dir`` (default data/cifar10/), verified by sha256 and md5."""
    dest_dir = Path(dest_dir) if dest_dir is not None else _default_dir()

    def fetch(tmp):
        h, m, size = hashlib.sha256(), hashlib.md5(), 0
        with open(tmp, "wb") as f, urllib.request.urlopen(CIFAR10_URL, timeout=DOWNLOAD_TIMEOUT) as r:
            for chunk in iter(lambda: r.read(1 << 20), b""):
                f.write(chunk)
                h.update(chunk)
                m.update(chunk)
                size += len(chunk)
        if h.hexdigest() != CIFAR10_SHA256 or m.hexdigest() != CIFAR10_MD5:
            raise DataIntegrityError(
                f"{CIFAR10_URL}: sha256/md5 mismatch: expected {CIFAR10_SHA256} / {CIFAR10_MD5}, "
                f"got {h.hexdigest()} / {m.hexdigest()} ({size} bytes)"
            )

    return atomic_write(dest_dir / CIFAR10_ARCHIVE, fetch)


# ----------------------------------------------------------------------------------------------
# reading


def _too_large(where: str, size: int) -> ValueError:
    return ValueError(
        f"{where} is {size} bytes, more than any CIFAR-10 file (at most {MAX_MEMBER_BYTES} bytes "
        f"read; the batches are 31,035,704): not the CIFAR-10 archive, refused before reading it"
    )


def _find_member(tar: tarfile.TarFile, source: Path, want: str) -> tarfile.TarInfo:
    """The member ``want``, scanning at most MAX_MEMBERS headers and refusing any member larger than
    MAX_MEMBER_BYTES on sight (its header says so before its data is decompressed)."""
    for k, info in enumerate(iter(tar.next, None)):
        if k >= MAX_MEMBERS:
            raise ValueError(
                f"{source}: more than {MAX_MEMBERS} entries before {want} (the CIFAR-10 archive has 9): "
                f"not the CIFAR-10 archive"
            )
        if info.size > MAX_MEMBER_BYTES:
            raise _too_large(f"{source}: archive member {info.name}", info.size)
        if info.name == want:
            return info
    raise FileNotFoundError(f"{source}: the archive has no member {want}")


def _member_bytes(source: Path, name: str) -> bytes:
    """The bytes of cifar-10-batches-py/<name> from an archive or an extracted folder, at most
    MAX_MEMBER_BYTES of them (a larger file is refused before it is read)."""
    if source.is_dir():
        p = source / name
        if not p.is_file():
            raise FileNotFoundError(f"{p}: missing from the CIFAR-10 batches folder")
        if p.stat().st_size > MAX_MEMBER_BYTES:
            raise _too_large(str(p), p.stat().st_size)
        with open(p, "rb") as f:
            return f.read(MAX_MEMBER_BYTES)
    want = f"{CIFAR10_FOLDER}/{name}"
    try:
        with tarfile.open(source, "r:*") as tar:
            info = _find_member(tar, source, want)
            if not info.isfile():
                raise ValueError(f"{source}: {want} is not a regular file in the archive")
            # bounded even if the stream disagrees with the header: a gzip bomb stops here
            raw = tar.extractfile(info).read(MAX_MEMBER_BYTES + 1)
    except (tarfile.TarError, EOFError, OSError, zlib.error) as e:
        if isinstance(e, FileNotFoundError):
            raise
        raise ValueError(f"{source}: not a readable tar.gz archive ({e})") from None
    if len(raw) != info.size:
        raise ValueError(
            f"{source}: {want} holds {len(raw)} bytes, its header says {info.size}: the archive is corrupt"
        )
    return raw


def _read_batch(source: Path, name: str) -> tuple[np.ndarray, np.ndarray]:
    raw = _member_bytes(source, name)
    try:
        d = restricted_loads(raw)
    except UnsafePickleError as e:
        raise UnsafePickleError(f"{source}: {name}: {e}") from None
    except Exception as e:  # a broken stream: report it, whatever pickle raised
        raise ValueError(
            f"{source}: {name} is not a readable CIFAR-10 batch ({type(e).__name__}: {e})"
        ) from None
    if not isinstance(d, dict) or b"data" not in d or b"labels" not in d:
        keys = sorted(d) if isinstance(d, dict) else type(d).__name__
        raise ValueError(f"{source}: {name}: expected a dict with b'data' and b'labels', got {keys}")
    data, labels = d[b"data"], d[b"labels"]
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072:
        desc = f"{data.dtype} {data.shape}" if isinstance(data, np.ndarray) else type(data).__name__
        raise ValueError(f"{source}: {name}: b'data' must be a uint8 array (N, 3072), got {desc}")
    if not isinstance(labels, (list, tuple, np.ndarray)) or len(labels) != len(data):
        raise ValueError(
            f"{source}: {name}: {len(labels) if hasattr(labels, '__len__') else '?'} labels for "
            f"{len(data)} images"
        )
    lab = np.asarray(labels)
    if lab.dtype.kind not in "iu" or (len(lab) and (lab.min() < 0 or lab.max() > 9)):
        raise ValueError(f"{source}: {name}: labels must be integers in 0..9")
    return data, lab.astype(np.int64)


def cifar10_class_names(source: Path) -> tuple[str, ...]:
    """label_names from batches.meta (decoded), read with the restricted unpickler."""
    try:
        d = restricted_loads(_member_bytes(source, "batches.meta"))
    except pickle.UnpicklingError as e:
        raise UnsafePickleError(f"{source}: batches.meta: {e}") from None
    return tuple(n.decode() if isinstance(n, bytes) else str(n) for n in d[b"label_names"])


def cifar10(split: str = "train", root=None, download: bool = False, verify: Optional[bool] = None):
    """Load a CIFAR-10 split, scaled to [-1, 1].

    :param split: "train" (50,000 images, data_batch_1..5) or "test" (10,000, test_batch).
    :param root: the archive, a folder holding it, or a folder holding cifar-10-batches-py/ (searched first).
    :param download: fetch the official archive into data/cifar10/ when none is found.
    :param verify: check the archive's sha256 against the official one. Default: yes for the
        data folder's copy and downloads, no for an archive given as ``root``.
    :return: (images, labels): (N, 3, 32, 32) float32 in [-1, 1] (x / 127.5 - 1) and (N,) int64.
    """
    if split not in _SPLITS:
        raise ValueError(f"unknown CIFAR-10 split {split!r}; allowed: 'train', 'test'")
    if root is not None and not Path(root).exists():  # a typo would otherwise fall back to the data folder
        raise FileNotFoundError(
            f"root {str(root)!r} does not exist: give the CIFAR-10 archive, the folder that holds it or "
            f"{CIFAR10_FOLDER}/, or None for the usual lookup"
        )
    found = find_cifar10(root)
    if found is None:
        if not download:
            raise FileNotFoundError(_missing_message(root))
        try:
            found = (download_cifar10(), True)
        except (OSError, http.client.HTTPException) as e:
            raise DownloadError(_missing_message(root) + f"\n  (the download failed: {e})") from e
    source, must = found
    if (must if verify is None else verify) and source.is_file():
        verify_archive(source)
    datas, labels = zip(*(_read_batch(source, name) for name in _SPLITS[split]))
    data = np.concatenate(datas)
    images = torch.from_numpy(data.reshape(-1, 3, 32, 32).copy()).to(torch.float32) / 127.5 - 1
    return images, torch.from_numpy(np.concatenate(labels))


def verify_cifar10(root=None) -> dict:
    """Check CIFAR-10 where :func:`cifar10` finds it: an archive must be the official one (sha256),
    and both splits must read with every check of :func:`cifar10`.

    :param root: the archive, a folder holding it, or a folder holding cifar-10-batches-py/
        (default: the course's data folder).
    :return: {"source": the archive or folder checked, "sha256": the archive's (None for a
        folder), "splits": {"train": (images shape, number of labels), "test": ...}}.
    :raises FileNotFoundError: nothing found (the message says where it looked and how to get it).
    :raises DataIntegrityError: not the official archive, or a split that does not read.
    :raises UnsafePickleError: a batch whose pickle asks for anything but numpy arrays.
    """
    found = find_cifar10(root)
    if found is None:
        raise FileNotFoundError(_missing_message(root))
    source = found[0]
    sha = verify_archive(source) if source.is_file() else None
    splits = {}
    for split in _SPLITS:
        try:
            x, y = cifar10(split, root=source, verify=False)
        except (
            ValueError,
            FileNotFoundError,
        ) as e:  # a member missing, too large, not a batch: the check fails
            if isinstance(e, DataIntegrityError):
                raise
            raise DataIntegrityError(str(e)) from None
        splits[split] = (tuple(x.shape), len(y))
    return {"source": source, "sha256": sha, "splits": splits}
