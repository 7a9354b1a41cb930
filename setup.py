"""The build hook that puts the course's shipped data into the wheel (all metadata is in pyproject.toml).

setuptools' package data cannot name files outside the package, and the data stay in data/ at the
repository root, where the chapters and tests read them. So the build gets one more sub-command,
``build_course_data`` (setuptools' documented protocol for custom build steps,
``setuptools.command.build.SubCommand``): it copies ``data/registry.json`` and every file a library
call loads from it -- each "pretrained" checkpoint and each "files" entry marked ``"shipped": true``
-- into ``ddpm_lib/_data/`` of the build, after checking each file's size and sha256 against the
registry. ``ddpm_lib.data.data_dir`` finds them there in an installed copy. The same list goes into
an sdist (``get_source_files``), so ``python -m build`` (sdist, then a wheel from it) works too.
An editable install copies nothing: it reads data/ of the clone, as running from the clone does.
"""

import hashlib
import json
import os
import shutil
from pathlib import Path

from setuptools import Command, setup
from setuptools.command.build import build

DATA = "data"  # relative to the project root, where setuptools runs this
PACKAGE_DATA = os.path.join("ddpm_lib", "_data")  # relative to build_lib; ddpm_lib.data.PACKAGE_DATA_DIR


def shipped_files() -> dict:
    """{path relative to data/: (size, sha256) or None for registry.json itself}, from data/registry.json."""
    registry = Path(DATA, "registry.json")
    if not registry.is_file():
        raise SystemExit(f"error: {registry.resolve()} not found: build the wheel from a clone of the course")
    reg = json.loads(registry.read_text(encoding="utf-8"))
    files = {"registry.json": None}
    for rel, e in reg.get("files", {}).items():
        if e.get("shipped"):
            files[rel] = (e["size"], e["sha256"])
    for e in reg.get("pretrained", {}).values():
        files[e["path"]] = (e["size"], e["sha256"])
    for rel in files:
        if Path(rel).is_absolute() or ".." in Path(rel).parts:
            raise SystemExit(f"error: {registry}: {rel!r} is not a path inside {DATA}/")
    return dict(sorted(files.items()))


class build_course_data(Command):
    description = (
        "copy data/registry.json and the files it lists as shipped into ddpm_lib/_data/ (checked by sha256)"
    )
    user_options = []

    def initialize_options(self):
        self.build_lib = None
        self.editable_mode = False

    def finalize_options(self):
        self.set_undefined_options("build_py", ("build_lib", "build_lib"))

    def get_source_files(self):
        return [f"{DATA}/{rel}" for rel in shipped_files()]

    def get_output_mapping(self):
        if self.editable_mode:  # an editable install reads data/ of the clone in place
            return {}
        return {
            os.path.join(self.build_lib, PACKAGE_DATA, *rel.split("/")): f"{DATA}/{rel}"
            for rel in shipped_files()
        }

    def get_outputs(self):
        return list(self.get_output_mapping())

    def run(self):
        if self.editable_mode:
            return
        wanted = shipped_files()
        # this command owns ddpm_lib/_data/ of the build: start afresh, so that a file the registry
        # no longer ships does not linger from an earlier build in build/lib
        stale = os.path.join(self.build_lib, PACKAGE_DATA)
        if os.path.isdir(stale):
            shutil.rmtree(stale)
        for dest, src in self.get_output_mapping().items():
            rel = src[len(DATA) + 1 :]
            path = Path(src)
            if not path.is_file():
                raise SystemExit(
                    f"error: {path.resolve()} is listed in {DATA}/registry.json as shipped but is "
                    f"missing; the wheel would lack it. Restore it (git checkout -- {src}), then build"
                )
            if wanted[rel] is not None:
                size, sha = wanted[rel]
                h = hashlib.sha256()
                with open(path, "rb") as f:
                    for chunk in iter(lambda: f.read(1 << 20), b""):
                        h.update(chunk)
                if path.stat().st_size != size or h.hexdigest() != sha:
                    raise SystemExit(
                        f"error: {path.resolve()} is not the file {DATA}/registry.json lists (size "
                        f"{size}, sha256 {sha}); got {path.stat().st_size} bytes, sha256 {h.hexdigest()}"
                    )
            self.mkpath(os.path.dirname(dest))
            self.copy_file(src, dest)


class build_with_course_data(build):
    sub_commands = build.sub_commands + [("build_course_data", None)]


setup(cmdclass={"build": build_with_course_data, "build_course_data": build_course_data})
