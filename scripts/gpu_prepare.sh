#!/usr/bin/env bash
# Before a device window (issue 16), here, from the repository root:
#   bash scripts/gpu_prepare.sh          .gpu_data (the Fashion-MNIST training images, verified) and a tree that travels
#   bash scripts/gpu_prepare.sh back     put back what was set aside (tracked files, restored from git)
#
# The device tool carries at most 64 MiB: the tracked files (52.4 MB on 2026-12-04, 25.9 MB of them the shipped
# U-Net, which the window continues) and .gpu_data (the 60,000 training images: 26.4 MB) are more than that.
# So the files no stage of scripts/gpu_session.sh reads are set aside for the call: the chapters' notebooks, the
# stored trajectory, the swiss-roll model and the 10,000-image subset. They are tracked and unchanged (checked
# first), so `back` restores them with git. .gpu_data holds the training split's files from Debian's package
# dataset-fashion-mnist, checked against their sha256 in data/registry.json (where they are a registered variant).
set -euo pipefail
cd "$(dirname "$0")/.."
ASIDE=(chapters/*.ipynb data/trajectories data/checkpoints/swiss_roll_mlp.safetensors
       data/fashion-mnist/train-10k-images-idx3-ubyte.gz data/fashion-mnist/train-10k-labels-idx1-ubyte.gz)

if [ "${1:-}" = back ]; then
  git checkout -- 'chapters/*.ipynb' data/trajectories data/checkpoints/swiss_roll_mlp.safetensors \
    'data/fashion-mnist/train-10k-*' 
  git status --short
  exit 0
fi

mkdir -p .gpu_data/fashion-mnist
DEB=/usr/share/datasets/fashion-mnist   # where Debian's package puts the files (CI installs it)
if [ ! -f .gpu_data/fashion-mnist/train-images-idx3-ubyte.gz ]; then
  tmp=$(mktemp -d)
  if [ ! -f $DEB/train-images-idx3-ubyte.gz ]; then   # not installed: the package's files, unpacked here
    (cd "$tmp" && apt-get download -q dataset-fashion-mnist >/dev/null 2>&1) ||
      { apt-get update -qq; (cd "$tmp" && apt-get download -q dataset-fashion-mnist); }
    dpkg -x "$tmp"/dataset-fashion-mnist_*.deb "$tmp/x"
    DEB=$tmp/x$DEB
  fi
  # Debian's files are registered variants (data/registry.json), so the loader accepts them as they are
  python3 - "$DEB" <<'PY'
import hashlib, json, shutil, sys
reg = json.load(open("data/registry.json"))["files"]
for name in ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"):
    src, want = f"{sys.argv[1]}/{name}", reg[f"fashion-mnist/{name}"]["variants"]["debian"]["sha256"]
    if hashlib.sha256(open(src, "rb").read()).hexdigest() != want:
        raise SystemExit(f"{src}: not the file data/registry.json names (Debian's variant, sha256 {want})")
    shutil.copyfile(src, f".gpu_data/fashion-mnist/{name}")
    print(f".gpu_data/fashion-mnist/{name}: verified")
PY
  rm -rf "$tmp"
fi

if ! git diff --quiet -- "${ASIDE[@]}"; then
  echo "these files have changes that setting them aside would lose; commit them first:" >&2
  git diff --stat -- "${ASIDE[@]}" >&2
  exit 1
fi
rm -rf "${ASIDE[@]}"
travel=$(git ls-files -z | python3 -c "
import os, sys
files = [f for f in sys.stdin.read().split(chr(0)) if f and os.path.isfile(f)]
files += [os.path.join(r, f) for r, _, fs in os.walk('.gpu_data') for f in fs]
print(sum(os.path.getsize(f) for f in files))")
echo "what travels: $((travel / 1000000)) MB of the 67.1 MB (64 MiB) the device tool carries; carry [\".gpu_data\"]"
[ "$travel" -lt 67108864 ] || { echo "too much to travel" >&2; exit 1; }
echo "after the window: bash scripts/gpu_prepare.sh back"
