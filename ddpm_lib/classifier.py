"""A small CNN classifier for Fashion-MNIST: the feature extractor of the Fréchet classifier distance.

``FashionClassifier`` is three conv blocks (16, 32, 64 channels; conv 3x3 + BatchNorm + ReLU + 2x2 max-pool:
28 -> 14 -> 7 -> 3) followed by a 128-d fully connected layer (the *features*, after its ReLU)
and a linear head to the 10 classes. It takes images (B, 1, 28, 28) in [-1, 1], as
:func:`ddpm_lib.data.fashion_mnist` gives them and as the diffusion models generate them.

The shipped network (``data/checkpoints/fashion_mnist_classifier.safetensors``, registered as the
pretrained name ``"fashion-mnist-classifier"``) was made by

    python -m ddpm_lib.classifier train --out data/checkpoints/fashion_mnist_classifier.safetensors \\
        --epochs 6 --seed 0 --threads 1

(``ddpm-classifier train ...`` is the same command, :mod:`ddpm_lib.cli.classifier`; the exact
command is stored in the checkpoint's config and in ``data/registry.json``), on the full
60,000-image training split with random horizontal flips: 91.98 % accuracy on the official
10,000-image test split (recorded in the checkpoint's ``metrics``), about 5 minutes of one CPU
core, 98,554 parameters (400 kB). Load it with :func:`load_classifier`.
"""

from __future__ import annotations

# python -m ddpm_lib.classifier runs ddpm-classifier; up here, so that this module's body never runs as __main__
if __name__ == "__main__":
    from ddpm_lib.cli.classifier import main

    raise SystemExit(main())

import sys
import time
from pathlib import Path
from typing import Optional

import torch
import torch.nn as nn
import torch.nn.functional as F

from .checkpoints import save_checkpoint
from .nets import ClassifierConfig, FashionClassifier

__all__ = [
    "ClassifierConfig",
    "FashionClassifier",
    "train_classifier",
    "accuracy",
    "predict",
    "load_classifier",
    "make_classifier_checkpoint",
    "DEFAULT_CLASSIFIER",
    "AUGMENTATIONS",
]

DEFAULT_CLASSIFIER = "fashion-mnist-classifier"


# ----------------------------------------------------------------------------------------------
# evaluation


@torch.no_grad()
def predict(model: nn.Module, images: torch.Tensor, batch_size: int = 1000) -> torch.Tensor:
    """Predicted classes (N,) int64 for images (N, 1, 28, 28) in [-1, 1] (model in eval mode)."""
    was_training = model.training
    model.eval()
    dev = next(model.parameters()).device
    out = [
        model(images[i : i + batch_size].to(dev)).argmax(1).cpu() for i in range(0, len(images), batch_size)
    ]
    model.train(was_training)
    return torch.cat(out) if out else torch.zeros(0, dtype=torch.long)


def accuracy(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, batch_size: int = 1000) -> float:
    """Fraction of images whose predicted class is the label."""
    if len(images) != len(labels) or len(images) == 0:
        raise ValueError(
            f"need as many labels as images (and at least one), got {len(images)} and {len(labels)}"
        )
    return float((predict(model, images, batch_size) == labels.cpu()).double().mean())


# ----------------------------------------------------------------------------------------------
# training


AUGMENTATIONS = ("none", "flip", "flip-shift")


def _augment(x: torch.Tensor, g: torch.Generator, pad: int = 2) -> torch.Tensor:
    """Random horizontal flips and (``pad`` > 0) random translations by up to ``pad`` pixels (background -1)."""
    B = x.shape[0]
    flip = torch.rand(B, generator=g) < 0.5
    x = torch.where(flip[:, None, None, None], x.flip(3), x)
    if pad:
        H, W = x.shape[2:]
        padded = F.pad(x, (pad, pad, pad, pad), value=-1.0)
        dy = torch.randint(0, 2 * pad + 1, (B,), generator=g)
        dx = torch.randint(0, 2 * pad + 1, (B,), generator=g)
        rows = dy[:, None] + torch.arange(H)[None]  # (B, H)
        cols = dx[:, None] + torch.arange(W)[None]  # (B, W)
        b = torch.arange(B)[:, None, None]
        x = padded[:, 0][b, rows[:, :, None], cols[:, None, :]].unsqueeze(1)
    return x


def train_classifier(
    images: Optional[torch.Tensor] = None,
    labels: Optional[torch.Tensor] = None,
    *,
    epochs: int = 6,
    batch_size: int = 256,
    lr: float = 4e-3,
    weight_decay: float = 1e-4,
    seed: int = 0,
    augment: str = "flip",
    config: ClassifierConfig | dict | None = None,
    test: Optional[tuple] = None,
    progress: bool = True,
    device=None,
) -> tuple[FashionClassifier, dict]:
    """Train a :class:`FashionClassifier` with AdamW and a one-cycle (warm-up + cosine) learning rate.

    images, labels: (N, 1, 28, 28) in [-1, 1] and (N,) int64; default the full Fashion-MNIST
    training split (``fashion_mnist("train")``). ``augment``: "flip" (random horizontal flips),
    "flip-shift" (and random shifts by up to 2 pixels) or "none". ``test``: (images, labels) to
    measure accuracy on after each epoch. Returns (model in eval mode, history dict with per-epoch
    loss, wall-clock ``train_seconds`` and process ``cpu_seconds``, test accuracy).
    """
    if images is None:
        from .data import fashion_mnist

        images, labels = fashion_mnist("train")
    if labels is None or len(images) != len(labels):
        raise ValueError("images and labels must be given together, with the same length")
    if augment not in AUGMENTATIONS:
        raise ValueError(f"augment must be one of {AUGMENTATIONS}, got {augment!r}")
    device = torch.device(device) if device is not None else torch.device("cpu")
    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    model = FashionClassifier(config).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    n = len(images)
    steps_per_epoch = n // batch_size
    total = max(1, epochs * steps_per_epoch)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=total, pct_start=0.15)
    history = {"epoch_loss": [], "epoch_seconds": [], "test_accuracy": []}
    start, cpu_start = time.perf_counter(), time.process_time()
    for epoch in range(epochs):
        model.train()
        t0 = time.perf_counter()
        order = torch.randperm(n, generator=g)
        losses = []
        it = range(steps_per_epoch)
        if progress:
            from tqdm.auto import tqdm

            it = tqdm(it, desc=f"epoch {epoch + 1}/{epochs}", leave=False)
        for i in it:
            idx = order[i * batch_size : (i + 1) * batch_size]
            x, y = images[idx], labels[idx]
            if augment != "none":
                x = _augment(x, g, pad=2 if augment == "flip-shift" else 0)
            x, y = x.to(device), y.to(device)
            loss = F.cross_entropy(model(x), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            losses.append(loss.item())
        history["epoch_loss"].append(sum(losses) / max(1, len(losses)))
        history["epoch_seconds"].append(time.perf_counter() - t0)
        msg = f"epoch {epoch + 1}/{epochs}: loss {history['epoch_loss'][-1]:.4f}, {history['epoch_seconds'][-1]:.0f} s"
        if test is not None:
            history["test_accuracy"].append(accuracy(model, test[0], test[1]))
            msg += f", test accuracy {history['test_accuracy'][-1]:.4f}"
        if progress:
            print(msg, file=sys.stderr, flush=True)
    history["train_seconds"] = time.perf_counter() - start
    history["cpu_seconds"] = time.process_time() - cpu_start
    return model.eval(), history


# ----------------------------------------------------------------------------------------------
# loading


def load_classifier(name_or_path: str | Path = DEFAULT_CLASSIFIER, device=None) -> FashionClassifier:
    """The shipped classifier (a registered pretrained name, verified by sha256) or a checkpoint file, in eval mode."""
    from .checkpoints import build_model, load_checkpoint
    from .pretrained import load_pretrained, is_pretrained_name

    if is_pretrained_name(name_or_path):
        model = load_pretrained(str(name_or_path), device=device).model
    else:
        ckpt = load_checkpoint(name_or_path, map_location=device or "cpu")
        model = build_model(ckpt)
    if not isinstance(model, FashionClassifier):
        raise TypeError(f"{name_or_path} holds a {type(model).__name__}, not a FashionClassifier")
    return model.eval()


# ----------------------------------------------------------------------------------------------
# the shipped checkpoint


def make_classifier_checkpoint(
    out,
    *,
    epochs: int = 6,
    batch_size: int = 256,
    lr: float = 4e-3,
    seed: int = 0,
    augment: str = "flip",
    train_limit: Optional[int] = None,
    command: Optional[str] = None,
    progress: bool = True,
) -> tuple[Path, dict]:
    """Train on Fashion-MNIST's training split (its first ``train_limit`` images), measure the
    accuracy on the test split, and save a checkpoint at ``out`` whose config records the data,
    the training settings, the metrics and ``command`` (how the shipped one was made: the module
    docstring). Returns (the path written, that config)."""
    from .data import FASHION_MNIST_CLASSES, fashion_mnist

    x, y = fashion_mnist("train")
    if train_limit:
        x, y = x[:train_limit], y[:train_limit]
    xt, yt = fashion_mnist("test")
    model, hist = train_classifier(
        x, y, epochs=epochs, batch_size=batch_size, lr=lr, seed=seed, augment=augment, progress=progress
    )
    acc = accuracy(model, xt, yt)
    config = {
        "task": "classification",
        "data": {
            "dataset": "fashion-mnist",
            "shape": [1, 28, 28],
            "train_split": "train",
            "train_examples": len(y),
            "test_split": "test",
            "classes": list(FASHION_MNIST_CLASSES),
            "scaling": "x / 127.5 - 1",
        },
        "train": {
            "epochs": epochs,
            "batch_size": batch_size,
            "optimizer": "AdamW",
            "lr": lr,
            "weight_decay": 1e-4,
            "schedule": "OneCycleLR(pct_start=0.15)",
            "seed": seed,
            "augment": augment,
            "threads": torch.get_num_threads(),
            "epoch_loss": [round(v, 5) for v in hist["epoch_loss"]],
        },
        "metrics": {
            "test_accuracy": round(acc, 5),
            "test_examples": len(yt),
            "train_seconds": round(hist["train_seconds"], 1),
            "train_cpu_seconds": round(hist["cpu_seconds"], 1),
            "parameters": sum(p.numel() for p in model.parameters()),
        },
        "command": command,
    }
    path = save_checkpoint(out, model, config=config, step=epochs * (len(y) // batch_size))
    return path, config
