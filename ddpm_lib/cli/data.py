"""``ddpm-data`` (``python -m ddpm_lib.data``): check the shipped data, remake the Fashion-MNIST
subset, get and check CIFAR-10.

``ddpm-data cifar10 download | verify [PATH]`` is also ``python -m ddpm_lib.cifar download |
verify [PATH]`` (:func:`cifar10_main`): CIFAR-10 is one more data set of the course's data folder,
so its commands are a subcommand here rather than a console script of their own. The library is
:mod:`ddpm_lib.data` and :mod:`ddpm_lib.cifar`; this module only parses and reports.
"""

from __future__ import annotations

import sys

from ..checkpoints import sha256_file
from ..cifar import CIFAR10_SHA256, CIFAR10_URL, download_cifar10, verify_cifar10
from ..data import data_dir, make_fashion_mnist_subset, verify_registry
from . import add_command, add_commands, make_parser, run

__all__ = ["build_parser", "main", "cifar10_main"]

EXAMPLES = (
    "ddpm-data verify",
    "ddpm-data cifar10 download",
    "ddpm-data cifar10 verify",
)


def build_parser():
    p = make_parser(
        "ddpm-data",
        "Check the course's data files (sha256 against data/registry.json), remake the "
        "Fashion-MNIST training subset, get and check CIFAR-10.",
        EXAMPLES,
        module="ddpm_lib.data",
    )
    sub = add_commands(p)
    add_command(
        sub,
        "verify",
        "check every shipped file under the data folder against registry.json",
        ["ddpm-data verify"],
    )
    mk = add_command(
        sub,
        "make-subset",
        "write the first 10,000 Fashion-MNIST training images and labels "
        "(byte-identical to the shipped subset)",
        ["ddpm-data make-subset --source /usr/share/datasets/fashion-mnist --out runs/subset"],
    )
    mk.add_argument(
        "--source",
        help="folder with train-{images,labels}-*.gz (default: the data folder, then "
        "Debian's /usr/share/datasets/fashion-mnist)",
    )
    mk.add_argument("--out", help="output folder (default: the data folder's fashion-mnist/)")
    c = add_command(sub, "cifar10", "get and check CIFAR-10 (also: python -m ddpm_lib.cifar)", EXAMPLES[1:])
    csub = add_commands(c, "cifar_cmd")
    d = add_command(
        csub,
        "download",
        f"fetch {CIFAR10_URL} into data/cifar10/ (170 MB, sha256-checked)",
        ["ddpm-data cifar10 download", "ddpm-data cifar10 download --dest runs/cifar10"],
    )
    d.add_argument(
        "--dest", default=None, help="folder to write cifar-10-python.tar.gz to (default: data/cifar10/)"
    )
    v = add_command(
        csub,
        "verify",
        "check the archive against the official sha256 and read both splits",
        ["ddpm-data cifar10 verify", "ddpm-data cifar10 verify runs/cifar10/cifar-10-python.tar.gz"],
    )
    v.add_argument(
        "path",
        nargs="?",
        default=None,
        help="the archive or its folder, or an extracted cifar-10-batches-py/ (default: data/cifar10/)",
    )
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)

    def body():
        if args.cmd == "verify":
            for rel, sha in verify_registry().items():
                print(f"ok  {sha}  {rel}")
            print(f"all shipped files under {data_dir()} match registry.json")
        elif args.cmd == "make-subset":
            for path in make_fashion_mnist_subset(args.source, args.out):
                print(f"{sha256_file(path)}  {path.stat().st_size:>9}  {path}")
        elif args.cifar_cmd == "download":
            print(f"ok  {CIFAR10_SHA256}  {download_cifar10(args.dest)}")
        else:
            r = verify_cifar10(args.path)
            if r["sha256"]:
                print(f"ok  {r['sha256']}  {r['source']}")
            for split, (shape, n) in r["splits"].items():
                print(f"{split}: {shape} images, {n} labels")

    return run(body)


def cifar10_main(argv=None) -> int:
    """``python -m ddpm_lib.cifar ARGS``: ``ddpm-data cifar10 ARGS``."""
    return main(["cifar10", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    sys.exit(main())
