#!/usr/bin/env bash
# Make the stored 1000-step sampling trajectory of chapter 10 (sampling), then register it.
#
#   bash scripts/make_trajectory.sh            # on the CPU (about 160 s uncontended: 4 images x 1000 steps)
#   DEVICE=auto bash scripts/make_trajectory.sh  # on a GPU when there is one (seconds)
#
# Algorithm 2 with all T = 1000 steps (sigma_t^2 as in the shipped model's config), 4 images, seed 0,
# drawn by the shipped U-Net `fashion-mnist-unet`. It records x_t and the predicted x_0 at
# t = 1000, 990, ..., 10 (every 10th step), at t = 19, 18, ..., 1 (the last steps, where the
# picture sharpens) and at t = 0 (the samples): 120 states, about 3 MB. The predicted eps is not
# stored: it follows exactly from x_t and the predicted x_0 by DDPM Eq. 4,
# eps = (x_t - sqrt(abar_t) x0_hat) / sqrt(1 - abar_t).
# After the samples are written, the file's size and sha256 are entered in data/registry.json
# (under "files"), so that chapter 10 can verify what it loads. Rerun after the shipped model changes.
set -euo pipefail
cd "$(dirname "$0")/.."

python -m ddpm_lib.sample fashion-mnist-unet --method ancestral --n 4 --seed 0 --device "${DEVICE:-cpu}" \
    --record "$(seq -s, 0 10 1000),$(seq -s, 1 19)" --no-progress \
    --trajectory data/trajectories/fashion_mnist_unet_ancestral1000_seed0.safetensors \
    --out data/trajectories/fashion_mnist_unet_ancestral1000_seed0.png

python - <<'PY'
from ddpm_lib.data import data_dir
from ddpm_lib.pretrained import register_file

rel = "trajectories/fashion_mnist_unet_ancestral1000_seed0.safetensors"
entry = register_file(
    data_dir() / rel,
    description=("Algorithm 2 with all 1000 steps of the shipped fashion-mnist-unet, 4 images, seed 0: "
                 "safetensors ts, timesteps (K,), x_t, pred_x0 (K, 4, 1, 28, 28) at t = 1000, 990, ..., 10, "
                 "19, ..., 1 and 0 (pred_x0 NaN at t = 0); metadata: the checkpoint's sha256 and the settings"),
    source="bash scripts/make_trajectory.sh (python -m ddpm_lib.sample fashion-mnist-unet --method ancestral "
           "--n 4 --seed 0 --device cpu --record 0,10,...,1000,1,...,19 --trajectory ...)",
    licence="MIT, Zalando Research (made from a model trained on Fashion-MNIST)",
)
print(f"registered {rel}: {entry['size']} bytes, sha256 {entry['sha256']}")
PY
