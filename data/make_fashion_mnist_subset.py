"""Make data/fashion-mnist/train-10k-{images-idx3,labels-idx1}-ubyte.gz.

The first 10,000 images and labels of Fashion-MNIST's training split, written as new IDX files
(gzip level 9, mtime 0, no file name: re-running gives the same bytes with the same zlib).
The full training files are looked up as fashion_mnist() does (no download): --source, the
data folder, then Debian's /usr/share/datasets/fashion-mnist (apt-get install dataset-fashion-mnist),
and verified by sha256 first. Then check the result against the registry:

    python data/make_fashion_mnist_subset.py [--source DIR] [--out DIR]
    python -m ddpm_lib.data verify
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from ddpm_lib.cli.data import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main(["make-subset", *sys.argv[1:]]))
