"""Evaluate a trained diffusion model: bits/dim on the test split, and a sample-quality score.

    ddpm-evaluate CKPT_OR_NAME [--bpd] [--subset N] [--fid-samples N] [--sample-steps K]
        [--sample-method ancestral|respaced|ddim] [--json out.json] [--seed 0] [--device auto]

(the command line is :mod:`ddpm_lib.cli.evaluate`; ``python -m ddpm_lib.evaluate`` runs it too;
from Python, :func:`evaluate_checkpoint`.)

(a) ``--bpd``: the negative log-likelihood bound, L = L_T + sum_{t=2}^T L_{t-1} + L_0 (Ho et al.
    2020, Eq. 5, every term, each KL exact and each term with one draw of x_t ~ q(x_t | x_0)), in
    bits per dimension on the test split of the checkpoint's data set (Fashion-MNIST or CIFAR-10),
    as :meth:`GaussianDiffusion.bits_per_dim` computes it. ``--subset N``: the first N test images.
    Reported: mean and standard error over images, and the split of the mean into L_T,
    sum L_{t-1} (t = 2..T) and L_0 (all bits/dim; they add up to the total).

(b) ``--fid-samples N``: the Fréchet classifier distance (FCD) between Gaussians fitted to the
    128-d penultimate features of the shipped Fashion-MNIST classifier
    (:mod:`ddpm_lib.classifier`) for the 10,000 test images and for N generated images:
    ||mu_1 - mu_2||^2 + tr(S_1 + S_2 - 2 (S_1^{1/2} S_2 S_1^{1/2})^{1/2}).
    THIS IS NOT INCEPTION FID: its features come from a small Fashion-MNIST classifier, not from
    Inception-v3 on ImageNet, so its values are not comparable to published FID numbers. It is
    offline, fast and compares models of this course with each other (at equal N: the estimate is
    biased upward for small N).

(c) ``--points N``: for a model of 2-D points (the swiss roll, the Gaussian mixture), N samples
    against fresh data, by :func:`point_metrics`: the sliced Wasserstein-1 distance and its ratio to
    the distance between two fresh data sets of N points (:func:`ddpm_lib.metrics.sliced_w1_ratio`;
    1 is as good as the data), the same distance for N(0, I) noise, and the squared MMD of both.
"""

from __future__ import annotations

# python -m ddpm_lib.evaluate runs ddpm-evaluate; up here, so that this module's body never runs as __main__
if __name__ == "__main__":
    from ddpm_lib.cli.evaluate import main

    raise SystemExit(main())

import json
import math
import time
from pathlib import Path
from typing import Optional

import numpy as np
import torch

from .diffusion import GaussianDiffusion, progress_bar
from .metrics import W1_RATIO_DATA_SEED, mmd_rbf, sliced_w1_ratios
from .sampling import DEFAULT_STEPS, generate

__all__ = [
    "FCD_NOTE",
    "bits_per_dim_on",
    "frechet_distance",
    "classifier_statistics",
    "fcd",
    "fcd_floor",
    "point_metrics",
    "load_test_split",
    "evaluate_checkpoint",
    "write_json",
]

FCD_NOTE = (
    "FCD (Frechet classifier distance) uses the 128-d features of ddpm_lib's small Fashion-MNIST classifier; "
    "it is NOT Inception FID and NOT comparable to published FID numbers."
)

_LN2 = math.log(2.0)


# ----------------------------------------------------------------------------------------------
# bits per dimension


def bits_per_dim_on(
    model,
    diffusion: GaussianDiffusion,
    images: torch.Tensor,
    *,
    batch_size: int = 64,
    seed: int = 0,
    device=None,
    progress: bool = False,
) -> dict:
    """The whole variational bound on ``images`` (N, ...) in [-1, 1], in bits per dimension.

    Uses :meth:`GaussianDiffusion.vlb_terms` (the terms :meth:`~GaussianDiffusion.bits_per_dim`
    sums) with a CPU generator seeded by ``seed``, batch by batch (``progress``: bars over the batches
    and over each batch's terms). Returns a dict with
    ``bpd`` (N,) per image, ``mean``, ``stderr`` (std / sqrt(N), ddof = 1), ``n``, and the mean's
    parts ``L_T``, ``L_t_minus_1`` (sum over t = 2..T of L_{t-1}) and ``L_0``, each in bits/dim
    (L_T + L_t_minus_1 + L_0 == mean up to rounding), plus ``terms_mean`` (T + 1,) in bits/dim
    (column j is L_j as in vlb_terms).
    """
    if images.ndim < 2 or len(images) == 0:
        raise ValueError(f"images must be a non-empty batch (N, ...), got shape {tuple(images.shape)}")
    if device is None:
        try:
            device = next(model.parameters()).device
        except (AttributeError, StopIteration):
            device = torch.device("cpu")
    gen = torch.Generator().manual_seed(int(seed))
    D = images[0].numel()
    chunks = []
    # a bar over the batches, and below it one over the T terms of the batch (minutes each on a CPU)
    for i in progress_bar(range(0, len(images), batch_size), "bits/dim", progress):
        x0 = images[i : i + batch_size].to(device)
        chunks.append(diffusion.vlb_terms(model, x0, generator=gen, progress=progress).cpu() / (D * _LN2))
    terms = torch.cat(chunks)  # (N, T + 1) bits/dim
    bpd = terms.sum(1)
    n = len(bpd)
    T = diffusion.T
    mean_terms = terms.mean(0)
    return {
        "bpd": bpd,
        "mean": float(bpd.mean()),
        "stderr": float(bpd.std(unbiased=True) / math.sqrt(n)) if n > 1 else float("nan"),
        "n": n,
        "L_T": float(mean_terms[T]),
        "L_t_minus_1": float(mean_terms[1:T].sum()),
        "L_0": float(mean_terms[0]),
        "terms_mean": mean_terms,
        "T": T,
        "seed": int(seed),
    }


# ----------------------------------------------------------------------------------------------
# the Fréchet distance


def _psd_eigh(a: torch.Tensor):
    """Eigen-decomposition (w, V) of a symmetric PSD matrix, eigenvalues at round-off level set to 0.

    eigh's eigenvalues carry an absolute error of about D * eps * max|w|; below that they are
    noise (often negative), and their square roots would add up to sqrt(eps)-sized errors.
    """
    a = 0.5 * (a + a.T)
    w, v = torch.linalg.eigh(a)
    tol = a.shape[0] * torch.finfo(torch.float64).eps * float(w.abs().max()) if w.numel() else 0.0
    return torch.where(w > tol, w, torch.zeros_like(w)), v


def frechet_distance(mu1, sigma1, mu2, sigma2) -> float:
    """The Fréchet (2-Wasserstein squared) distance between N(mu1, sigma1) and N(mu2, sigma2).

    d^2 = ||mu1 - mu2||^2 + tr(S1 + S2 - 2 (S1^{1/2} S2 S1^{1/2})^{1/2}), computed in float64 with
    symmetric eigendecompositions: S1^{1/2} = V diag(sqrt w) V^T, and the trace of the square root
    of the symmetric PSD matrix S1^{1/2} S2 S1^{1/2} as the sum of the square roots of its
    eigenvalues (those at round-off level, D * eps * max|w| or below, count as 0). This equals
    the usual tr((S1 S2)^{1/2}), since S1 S2 is similar to S1^{1/2} S2 S1^{1/2}. Inputs: numpy arrays or
    tensors, mu (D,), sigma (D, D) (or scalars for D = 1).
    """
    m1 = torch.as_tensor(
        np.asarray(mu1, dtype=np.float64) if not isinstance(mu1, torch.Tensor) else mu1, dtype=torch.float64
    ).reshape(-1)
    m2 = torch.as_tensor(
        np.asarray(mu2, dtype=np.float64) if not isinstance(mu2, torch.Tensor) else mu2, dtype=torch.float64
    ).reshape(-1)
    D = m1.numel()

    def cov(s, name):
        s = torch.as_tensor(
            np.asarray(s, dtype=np.float64) if not isinstance(s, torch.Tensor) else s, dtype=torch.float64
        )
        s = s.reshape(1, 1) if s.numel() == 1 and D == 1 else s
        if s.shape != (D, D):
            raise ValueError(f"{name} must have shape ({D}, {D}) to match the means, got {tuple(s.shape)}")
        if not torch.isfinite(s).all():
            raise ValueError(f"{name} holds NaN or infinite values")
        return s

    if m2.numel() != D:
        raise ValueError(f"mu1 and mu2 must have the same length, got {D} and {m2.numel()}")
    s1, s2 = cov(sigma1, "sigma1"), cov(sigma2, "sigma2")
    w1, v1 = _psd_eigh(s1)
    s1h = (v1 * w1.sqrt()) @ v1.T
    m = s1h @ (0.5 * (s2 + s2.T)) @ s1h
    wm, _ = _psd_eigh(m)
    tr_sqrt = wm.sqrt().sum()
    diff = m1 - m2
    d = diff @ diff + torch.trace(s1) + torch.trace(s2) - 2 * tr_sqrt
    return float(d)


# ----------------------------------------------------------------------------------------------
# classifier features


def _classifier(classifier=None):
    from .classifier import DEFAULT_CLASSIFIER, load_classifier

    if classifier is None:
        return load_classifier(DEFAULT_CLASSIFIER)
    if isinstance(classifier, (str, Path)):
        return load_classifier(classifier)
    return classifier


@torch.no_grad()
def classifier_features(
    images: torch.Tensor, classifier=None, batch_size: int = 500, progress: bool = False
) -> torch.Tensor:
    """The classifier's penultimate features (N, 128), float64, for images (N, 1, 28, 28) in [-1, 1]."""
    clf = _classifier(classifier)
    clf.eval()
    dev = next(clf.parameters()).device
    batches = progress_bar(
        range(0, len(images), batch_size), f"classifier features of {len(images)} images", progress
    )
    out = [clf.features(images[i : i + batch_size].to(dev, torch.float32)).double().cpu() for i in batches]
    return torch.cat(out)


def classifier_statistics(
    images: torch.Tensor, classifier=None, batch_size: int = 500, progress: bool = False
):
    """(mu (128,), sigma (128, 128)) float64 of the classifier's features of ``images``.

    sigma is the unbiased sample covariance (ddof = 1), as in the usual FID code. ``classifier``:
    a model with ``features(x)``, a checkpoint path or pretrained name (default: the shipped one).
    ``progress``: a bar over the batches (the 10,000 test images take seconds on a CPU).
    """
    if images.ndim != 4 or len(images) < 2:
        raise ValueError(f"need at least 2 images (N, 1, 28, 28), got shape {tuple(images.shape)}")
    f = classifier_features(images, classifier, batch_size, progress)
    mu = f.mean(0)
    c = f - mu
    sigma = c.T @ c / (len(f) - 1)
    return mu, sigma


def load_test_split(dataset: str = "fashion-mnist", subset: Optional[int] = None) -> torch.Tensor:
    """The test split of a data set the course evaluates on, scaled to [-1, 1] (first ``subset`` images)."""
    ds = (dataset or "fashion-mnist").lower()
    if ds.startswith("fashion-mnist") or ds in ("fashion_mnist", "fashionmnist"):
        from .data import fashion_mnist

        x, _ = fashion_mnist("test", download=False)
    elif ds in ("cifar10", "cifar-10"):
        from .cifar import cifar10

        x, _ = cifar10("test")
    else:
        raise ValueError(
            f"no test split for data set {dataset!r}: bits/dim is evaluated on image data "
            f"(fashion-mnist, cifar10)"
        )
    if subset is not None and not 1 <= subset <= len(x):
        raise ValueError(
            f"subset must be an integer in 1..{len(x)} (the test split of {dataset!r}), got {subset}"
        )
    return x if subset is None else x[:subset]


_REFERENCE_CACHE: dict = {}


def fcd(
    generated: torch.Tensor,
    reference: Optional[torch.Tensor] = None,
    classifier=None,
    batch_size: int = 500,
    progress: bool = False,
) -> float:
    """Fréchet classifier distance between ``generated`` images and ``reference`` images.

    Both (N, 1, 28, 28) in [-1, 1]; ``reference`` defaults to the 10,000 Fashion-MNIST test images
    (their statistics are cached per process for the default classifier). ``progress``: bars over
    the classifier's batches. NOT Inception FID: see :data:`FCD_NOTE`.
    """
    stats_g = classifier_statistics(generated, classifier, batch_size, progress)
    if reference is None and classifier is None:
        from .classifier import DEFAULT_CLASSIFIER
        from .pretrained import pretrained_path

        key = ("fashion-mnist-test", str(pretrained_path(DEFAULT_CLASSIFIER, verify=False)))
        if key not in _REFERENCE_CACHE:
            _REFERENCE_CACHE[key] = classifier_statistics(
                load_test_split("fashion-mnist"), None, batch_size, progress
            )
        stats_r = _REFERENCE_CACHE[key]
    else:
        stats_r = classifier_statistics(
            load_test_split("fashion-mnist") if reference is None else reference,
            classifier,
            batch_size,
            progress,
        )
    return frechet_distance(stats_r[0], stats_r[1], stats_g[0], stats_g[1])


def fcd_floor(n: int, classifier=None, batch_size: int = 500) -> float:
    """The FCD a perfect sampler would score with ``n`` samples: two disjoint sets of the test split,
    its first ``n`` images against the ``n`` from image 5,000 on (so n <= 5,000). FCD is biased upward
    at small n, so a model's FCD on n samples is read against this floor at the same n."""
    x = load_test_split("fashion-mnist")
    half = len(x) // 2
    if isinstance(n, bool) or not isinstance(n, int) or not 2 <= n <= half:
        raise ValueError(f"n must be an integer in 2..{half} (half the test split), got {n!r}")
    return fcd(x[:n], x[half : half + n], classifier, batch_size)


# ----------------------------------------------------------------------------------------------
# 2-D points


def point_metrics(
    model,
    diffusion: GaussianDiffusion,
    dataset: str = "swiss-roll",
    n: int = 4000,
    *,
    seed: int = 1,
    method: str = "ancestral",
    steps: Optional[int] = None,
    batch_size: Optional[int] = None,
    device=None,
    progress: bool = False,
) -> dict:
    """Sample quality of a model of 2-D points: ``n`` samples against fresh points of ``dataset``.

    Samples with :func:`ddpm_lib.sampling.generate` (``method``, ``steps``, noise from a generator seeded
    ``seed``), then :func:`ddpm_lib.metrics.sliced_w1_ratio` against fresh ``dataset`` points (its
    default seeds and 8 pairs of data sets). Returns a JSON-able dict: ``w1_ratio`` (the samples'
    sliced W1 over that of fresh data, the floor), ``sliced_w1_samples``, ``sliced_w1_data`` (the floor),
    ``sliced_w1_noise`` (N(0, I) noise, seeded ``seed + 1``, for scale), ``mmd2_samples`` and
    ``mmd2_noise`` (:func:`ddpm_lib.metrics.mmd_rbf` against the first reference set), and how they
    were measured (``n``, ``sampler``, ``how``).
    """
    from .train.components import point_sampler

    if dataset not in ("swiss-roll", "gaussian-mixture"):
        raise ValueError(f"point metrics are for 2-D data (swiss-roll, gaussian-mixture), got {dataset!r}")
    if isinstance(n, bool) or not isinstance(n, int) or n < 2:
        raise ValueError(f"n must be an integer >= 2, got {n!r}")
    draw = point_sampler(dataset)
    data = lambda m, generator: draw(m, generator)  # noqa: E731  (the keyword sliced_w1_ratio passes)
    x, _ = generate(
        model,
        diffusion,
        (2,),
        n,
        method=method,
        steps=steps,
        generator=torch.Generator().manual_seed(int(seed)),
        device=device,
        batch_size=batch_size,
        progress=progress,
    )
    if not torch.isfinite(x).all():
        raise ValueError("the generated samples hold NaN or infinite values")
    noise = torch.randn(n, 2, generator=torch.Generator().manual_seed(int(seed) + 1))
    r, r_noise = sliced_w1_ratios([x, noise], data)
    ref = data(n, generator=torch.Generator().manual_seed(W1_RATIO_DATA_SEED))  # sliced_w1_ratio's first set
    steps_run = diffusion.T if method == "ancestral" else (steps or min(DEFAULT_STEPS[method], diffusion.T))
    return {
        "w1_ratio": r["ratio"],
        "sliced_w1_samples": r["w1"],
        "sliced_w1_data": r["w1_floor"],
        "sliced_w1_noise": r_noise["w1"],
        "mmd2_samples": mmd_rbf(x, ref),
        "mmd2_noise": mmd_rbf(noise, ref),
        "n": n,
        "sampler": {"method": method, "steps": steps_run, "seed": int(seed)},
        "how": f"{n} samples ({method}, {steps_run} steps, seed {seed}) against {n} fresh {dataset} points: "
        f"sliced W1 (256 directions) averaged over 8 data sets (seeds {W1_RATIO_DATA_SEED}, "
        f"{W1_RATIO_DATA_SEED + 2}, ...); w1_ratio divides it by the same distance of another {n} fresh "
        f"points (ddpm_lib.metrics.sliced_w1_ratio); MMD^2 against the first of those sets",
    }


# ----------------------------------------------------------------------------------------------
# the whole evaluation


def evaluate_checkpoint(
    spec,
    *,
    bpd: bool = False,
    subset: Optional[int] = None,
    fid_samples: int = 0,
    points: int = 0,
    sample_steps: Optional[int] = None,
    sample_method: Optional[str] = None,
    seed: int = 0,
    device=None,
    batch_size: int = 64,
    use_ema: bool = True,
    progress: bool = True,
) -> dict:
    """Bits/dim (``bpd=True``), FCD (``fid_samples`` > 0) and/or, for 2-D points, sample distances
    (``points`` > 0: :func:`point_metrics`) of a checkpoint file or pretrained name.

    Returns a JSON-able dict (see the module docstring for what each number is).
    """
    from .pretrained import load_model

    if not bpd and not fid_samples and not points:
        raise ValueError("nothing to evaluate: ask for --bpd, --fid-samples N and/or --points N")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    p = load_model(spec, device=device, use_ema=use_ema)
    if p.diffusion is None:
        raise ValueError(f"{spec}: its config has no 'diffusion' entry: not a diffusion model checkpoint")
    data = p.config.get("data") if isinstance(p.config.get("data"), dict) else {}
    dataset = data.get("dataset", "fashion-mnist")
    result = {
        "checkpoint": str(p.path),
        "name": p.name,
        "sha256": p.sha256,
        "dataset": dataset,
        "T": p.diffusion.T,
        "step": p.config.get("step"),
        "use_ema": use_ema,
        "seed": seed,
    }
    if bpd:
        images = load_test_split(dataset, subset)
        t0 = time.perf_counter()
        r = bits_per_dim_on(p.model, p.diffusion, images, batch_size=batch_size, seed=seed, progress=progress)
        result["bpd"] = {
            "split": "test",
            "n": r["n"],
            "subset": subset,
            "mean": r["mean"],
            "stderr": r["stderr"],
            "L_T": r["L_T"],
            "L_t_minus_1": r["L_t_minus_1"],
            "L_0": r["L_0"],
            "terms": "L_T = KL(q(x_T|x_0) || N(0, I)); L_t_minus_1 = sum over t = 2..T of "
            "KL(q(x_{t-1}|x_t, x_0) || p(x_{t-1}|x_t)); L_0 = -log p(x_0|x_1) (discretized decoder); "
            "all in bits/dim, one draw of x_t per term and image",
            "seconds": round(time.perf_counter() - t0, 2),
        }
    if fid_samples:
        if not str(dataset).startswith("fashion-mnist"):
            raise ValueError(
                f"FCD uses a Fashion-MNIST classifier; this checkpoint's data set is {dataset!r}"
            )
        method = sample_method or ("respaced" if sample_steps else "ancestral")
        t0 = time.perf_counter()
        gen = torch.Generator().manual_seed(int(seed))
        samples, _ = generate(
            p.model,
            p.diffusion,
            p.data_shape,
            int(fid_samples),
            method=method,
            steps=sample_steps,
            generator=gen,
            device=next(p.model.parameters()).device,
            batch_size=max(batch_size, 1),
            progress=progress,
        )
        t_sample = time.perf_counter() - t0
        if not torch.isfinite(samples).all():
            raise ValueError("the generated samples hold NaN or infinite values")
        samples = samples.clamp(-1, 1)
        from .classifier import DEFAULT_CLASSIFIER
        from .pretrained import list_pretrained

        value = fcd(samples, progress=progress)
        entry = list_pretrained().get(DEFAULT_CLASSIFIER, {})
        result["fcd"] = {
            "value": value,
            "n_generated": int(fid_samples),
            "n_reference": 10000,
            "reference": "fashion-mnist test split",
            "sampler": {
                "method": method,
                "seed": seed,
                "steps": p.diffusion.T
                if method == "ancestral"
                else (sample_steps or min(DEFAULT_STEPS[method], p.diffusion.T)),
            },
            "classifier": DEFAULT_CLASSIFIER,
            "classifier_sha256": entry.get("sha256"),
            "note": FCD_NOTE,
            "sample_seconds": round(t_sample, 2),
        }
    if points:
        if p.data_shape != (2,):
            raise ValueError(
                f"--points is for models of 2-D points; this checkpoint's data set is {dataset!r}"
            )
        method = sample_method or ("respaced" if sample_steps else "ancestral")
        t0 = time.perf_counter()
        result["points"] = point_metrics(
            p.model,
            p.diffusion,
            dataset,
            int(points),
            seed=seed,
            method=method,
            steps=sample_steps,
            progress=progress,
        )  # in one batch (2-D points are cheap): the samples do not depend on --batch-size
        result["points"]["seconds"] = round(time.perf_counter() - t0, 2)
    return result


def write_json(result: dict, path) -> Path:
    """An :func:`evaluate_checkpoint` result as indented JSON at ``path`` (written atomically)."""
    from .utils import atomic_write

    text = json.dumps(result, indent=2, sort_keys=True) + "\n"
    return atomic_write(path, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))
