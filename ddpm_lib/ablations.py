"""Table 2 of Ho et al. 2020 (DDPM) at small scale: what the network predicts, what it is trained on,
and whether the reverse variance is fixed or learned.

Taught in chapter 11. The command that made the swiss-roll table of chapter 11 (the table records it,
and the seconds each run took; ``--resume`` continues it where a stopped run left it):

    ddpm-ablations --steps 60000 --seeds 0 --lr 1e-3 --lr-decay cosine --ema-decay 0.999 \
        --curve-every 2000 --threads 1 --workers 2

(60,000 steps a run, the learning rate lowered to 0 along a cosine so that each row ends at its optimum rather
than in Adam's noise around it; the bound over the last steps shows each row has stopped improving.)

Plain ``ddpm-ablations`` (2,000 steps, seeds 0, 1, 2, configs/swiss_roll.toml's learning rate and EMA)
is a quicker table of models that have not converged.

(``python -m ddpm_lib.ablations`` and ``python scripts/ablations.py`` are the same command; its front
end is :mod:`ddpm_lib.cli.ablations`.)

It trains every variant below with the library's Trainer and the repository's configs/swiss_roll.toml
(the same MLP, data, optimizer, seeds and steps for every row; only prediction / loss / variance
change), and writes
data/ablations/swiss_roll_table2.json and its .md, registered in data/registry.json with their
sha256 (:func:`load_table` checks them). Small images, on a GPU:

    ddpm-ablations --dataset fashion_mnist --preset tiny --steps 3000 --device cuda \
        [--data-root DIR] --out data/ablations/fashion_mnist_table2.json

(``--out`` may also name a folder: the file is then <folder>/<dataset>_table2.json.) Options (the
fields of :class:`AblationSettings`): ``--rows ID,ID`` a subset of rows, ``--seeds 0,1,2``,
``--steps N``, ``--threads N`` (CPU), ``--workers N`` (N runs at once in separate processes;
every run is seeded, so the numbers do not depend on N), ``--lr``, ``--ema-decay``, ``--resume`` (keep
the finished runs of the table at ``--out`` and train the rest).

Rows run apart (one process per row on a GPU, say) are folded into one table, which then says which
commands made it (``merged``) and drops them from ``not_measured``:

    ddpm-ablations --merge data/ablations/fashion_mnist_table2.json PART.json [PART.json ...]

The rows (paper's Table 2; CIFAR-10, columns IS / FID, "-" = unstable to train, poor samples):

    id                 prediction  loss    variance     paper's row                              IS / FID
    mean-vlb-learned   mean        vlb     learned      mu~ prediction, L, learned diagonal Sigma 7.28 / 23.69
    mean-vlb-fixed     mean        vlb     fixed_large  mu~ prediction, L, fixed isotropic Sigma  8.06 / 13.22
    mean-mse-fixed     mean        simple  fixed_large  mu~ prediction, ||mu~ - mu~_theta||^2     -    / -
    eps-vlb-learned    eps         vlb     learned      eps prediction, L, learned diagonal Sigma -    / -
    eps-vlb-fixed      eps         vlb     fixed_large  eps prediction, L, fixed isotropic Sigma  7.67 / 13.51
    eps-simple-fixed   eps         simple  fixed_large  eps prediction, L_simple (Eq. 14)         9.46 / 3.17
    eps-simple-small   (eval only: the eps-simple-fixed networks sampled and scored with sigma_t^2 = beta~_t)

"loss vlb" is the true bound L (Eq. 5: every L_{t-1} with its weight, L_0 by the decoder); "simple" is
the unweighted MSE of the predicted quantity: for eps prediction L_simple (Eq. 14), for mean prediction
||mu~_t(x_t, x_0) - mu_theta(x_t, t)||^2, i.e. Eq. 8 without its 1 / (2 sigma_t^2) (the paper's third row).
"fixed_large" is sigma_t^2 = beta_t (the paper's fixed isotropic Sigma on CIFAR-10), "learned" is a
diagonal Sigma_theta(x_t, t) whose log the network outputs (its output doubles: 2 * D values). A variance
never enters L_simple, so a net trained with it can be scored with either fixed variance (eps-simple-small).

Scores. ``bpd``: the whole bound L_T + sum_t L_{t-1} + L_0 (Eq. 5) with the EMA weights, in bits per
dimension, on held-out data (evaluate.bits_per_dim_on; each KL exact, one x_t draw per term). For the
swiss roll (continuous 2-D data, decoder "gaussian") it bounds -log2 of a *density*, so it can be
negative and is not comparable with image bits/dim; for Fashion-MNIST it bounds the discrete
likelihood of 8-bit pixels (decoder "discretized", Eq. 13). Sample quality: swiss roll: the sliced
Wasserstein-1 distance and the RBF MMD^2 (ddpm_lib.metrics) between samples (all T ancestral steps)
and held-out points; Fashion-MNIST: the Frechet classifier distance (ddpm_lib.evaluate.fcd; NOT
Inception FID). Instability, measured per run: divergence (the Trainer stops on a non-finite loss;
the step is recorded), loss and gradient-norm spikes (steps above 10 x the median of the 100 steps
before), the share of steps whose gradient was clipped, the bound during training, and samples out
of range (swiss roll: a coordinate beyond +-3; the data lie in [-1.2, 1.5]).

JSON schema (format 1) of <dataset>_table2.json (the .md beside it is the same table as text):
    format: 1                     what: str                     dataset: "swiss_roll" | "fashion_mnist"
    complete: bool (false while rows are still running; the file is rewritten after every run)
    command: str (the command that made the file)              library_version, torch, device: str
    threads: int                  seeds: [int]                  steps: int                    window: int
    train_config: {TrainConfig fields shared by every row; prediction/loss/variance are per row}
    eval: {bpd_n, bpd_seed, sample_n, sample_steps, sample_seed: "1000 + seed", sample_metric: str,
           reference_n, curve_every, curve_n, notes: str}
    units: {bpd: str, sample_score: str, loss: str}
    paper: {source: str, columns: ["IS", "FID"], nll_table1: {row id: str}}
    rows: [ {id, label, prediction, loss, variance, trained_as (id of the row whose networks it scores),
             paper: {IS: str, FID: str} (the paper's entries, "-" for unstable),
             summary: {n_runs, n_diverged, bpd_mean, bpd_std, score_mean, score_std, score_in_range_mean,
                       score_in_range_std, mmd_mean, mmd_std,
                       loss_spikes_mean, grad_spikes_mean, clipped_frac_mean, out_of_range_mean}
                      (means and sample standard deviations over the runs that did not diverge; null if none),
             runs: [ {seed, diverged_at (step or null), final_loss, seconds,
                      bpd, bpd_stderr, bpd_terms: {L_T, L_t_minus_1, L_0} (bits/dim),
                      score (sliced W1 or FCD, of all finite samples), score_in_range (the same of the samples
                      in range), mmd (swiss roll; null for images), out_of_range (fraction of samples),
                      loss_spikes, grad_spikes, clipped_frac, grad_norm: {median, p99, max},
                      curve: {step, loss_mean, loss_max, grad_norm_median, grad_norm_max} (windows of
                             `window` steps), bpd_curve: [[step, bpd], ...] (EMA weights, on the first curve_n
                             held-out points, every curve_every steps and at the last step)} ] } ]
    samples: {row id: {seed (str): [[x, y], ...]}} (swiss roll: the first --keep-samples samples of each run,
             4 decimals) or {row id: {seed: [[uint8 x 784], ...]}} (Fashion-MNIST: 16 samples per run)
    merged: [{command, library_version, torch, device}] (optional: the tables folded in by --merge)
    not_measured: {rows: [row id], why: str} (optional: rows left out, and why)
"""

from __future__ import annotations

# python -m ddpm_lib.ablations runs ddpm-ablations; up here, so that this module's body never runs as __main__
if __name__ == "__main__":
    from ddpm_lib.cli.ablations import main

    raise SystemExit(main())

import dataclasses
import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import numpy as np
import torch

from .data import DataIntegrityError, data_dir, registry_key, swiss_roll, to_uint8, verify_if_registered
from .diffusion import GaussianDiffusion
from .evaluate import bits_per_dim_on, fcd, load_test_split
from .metrics import mmd_rbf, sliced_w1_ratio, sliced_wasserstein
from .nets import UNet
from .pretrained import register_file
from .sampling import sample_respaced
from .train import LR_DECAYS, ConfigError, Trainer, TrainConfig, load_config
from .utils import atomic_write
from .utils import device as device_rule
from .version import __version__

__all__ = [
    "ROWS",
    "RUN_ORDER",
    "PAPER",
    "DATASETS",
    "AblationSettings",
    "base_config",
    "default_out",
    "count_spikes",
    "summarize_history",
    "run_one",
    "run_table",
    "merge_tables",
    "to_markdown",
    "write_table",
    "load_table",
]

# the repository's configs/ folder (the tables are made from a clone; an installed wheel has no configs)
CONFIGS_DIR = Path(__file__).resolve().parent.parent / "configs"

FORMAT = 1
DATASETS = ("swiss_roll", "fashion_mnist")

# id -> (prediction, loss, variance, label, paper IS, paper FID, trained_as)
ROWS = {
    "mean-vlb-learned": (
        "mean",
        "vlb",
        "learned",
        "mu~ prediction, L, learned diagonal Sigma",
        "7.28 ± 0.10",
        "23.69",
        None,
    ),
    "mean-vlb-fixed": (
        "mean",
        "vlb",
        "fixed_large",
        "mu~ prediction, L, fixed isotropic Sigma",
        "8.06 ± 0.09",
        "13.22",
        None,
    ),
    "mean-mse-fixed": (
        "mean",
        "simple",
        "fixed_large",
        "mu~ prediction, ||mu~ - mu~_theta||^2",
        "-",
        "-",
        None,
    ),
    "eps-vlb-learned": ("eps", "vlb", "learned", "eps prediction, L, learned diagonal Sigma", "-", "-", None),
    "eps-vlb-fixed": (
        "eps",
        "vlb",
        "fixed_large",
        "eps prediction, L, fixed isotropic Sigma",
        "7.67 ± 0.13",
        "13.51",
        None,
    ),
    "eps-simple-fixed": (
        "eps",
        "simple",
        "fixed_large",
        "eps prediction, ||eps - eps_theta||^2 (L_simple)",
        "9.46 ± 0.11",
        "3.17",
        None,
    ),
    "eps-simple-small": (
        "eps",
        "simple",
        "fixed_small",
        "eps prediction, L_simple, scored with sigma^2 = beta~_t",
        "",
        "",
        "eps-simple-fixed",
    ),
}
# the order rows run in: the paper's recipe first, so that a run cut short by a time limit keeps it
RUN_ORDER = [
    "eps-simple-fixed",
    "eps-vlb-fixed",
    "mean-vlb-fixed",
    "mean-vlb-learned",
    "eps-vlb-learned",
    "mean-mse-fixed",
]
PAPER = {
    "source": "Ho, Jain & Abbeel 2020, Table 2 (unconditional CIFAR-10; IS / FID; '-': unstable to train, "
    "poor samples with out-of-range scores) and Table 1 (NLL test bits/dim)",
    "columns": ["IS", "FID"],
    "nll_table1": {"eps-vlb-fixed": "<= 3.70", "eps-simple-fixed": "<= 3.75"},
}
SPIKE_FACTOR = 10.0  # a spike: a step above SPIKE_FACTOR x the median of the SPIKE_WINDOW steps before it
SPIKE_WINDOW = 100
OUT_OF_RANGE = 3.0  # swiss roll: a sample with a coordinate beyond this is out of range (data in [-1.2, 1.5])


# ----------------------------------------------------------------------------------------------
# measurements


def count_spikes(values, factor: float = SPIKE_FACTOR, window: int = SPIKE_WINDOW) -> int:
    """Steps whose value exceeds ``factor`` x the median of the ``window`` values before it (non-finite ones count)."""
    v = np.asarray(values, dtype=np.float64)
    n = 0
    for i in range(window, len(v)):
        if not np.isfinite(v[i]):
            n += 1
            continue
        ref = (
            np.median(v[i - window : i][np.isfinite(v[i - window : i])])
            if np.isfinite(v[i - window : i]).any()
            else np.nan
        )
        if np.isfinite(ref) and v[i] > factor * ref:
            n += 1
    return n


def summarize_history(loss, grad_norm, grad_clip: float, window: int = 50) -> dict:
    """Instability measurements of one run from its per-step loss and (unclipped) gradient norm."""
    loss = np.asarray(loss, dtype=np.float64)
    gn = np.asarray(grad_norm, dtype=np.float64)
    curve = {"step": [], "loss_mean": [], "loss_max": [], "grad_norm_median": [], "grad_norm_max": []}
    r = lambda x: None if not np.isfinite(x) else float(f"{x:.5g}")  # noqa: E731
    for lo in range(0, len(loss), window):
        sl, sg = loss[lo : lo + window], gn[lo : lo + window]
        curve["step"].append(lo + len(sl))
        curve["loss_mean"].append(r(sl.mean()))
        curve["loss_max"].append(r(sl.max()))
        curve["grad_norm_median"].append(r(np.median(sg)))
        curve["grad_norm_max"].append(r(sg.max()))
    finite = gn[np.isfinite(gn)]
    return {
        "loss_spikes": count_spikes(loss),
        "grad_spikes": count_spikes(gn),
        "clipped_frac": float(f"{(finite > grad_clip).mean():.4f}") if grad_clip > 0 and len(finite) else 0.0,
        "grad_norm": {
            "median": r(np.median(finite)) if len(finite) else None,
            "p99": r(np.percentile(finite, 99)) if len(finite) else None,
            "max": r(finite.max()) if len(finite) else None,
        },
        "curve": curve,
    }


def _mean_std(xs):
    xs = [x for x in xs if x is not None and math.isfinite(x)]
    if not xs:
        return None, None
    m = float(np.mean(xs))
    s = float(np.std(xs, ddof=1)) if len(xs) > 1 else 0.0
    return m, s


def _rnd(x, digits=5):
    return None if x is None or not math.isfinite(x) else float(f"{x:.{digits}g}")


# ----------------------------------------------------------------------------------------------
# configurations


@dataclass
class AblationSettings:
    """What a table depends on besides the code: the flags of ``ddpm-ablations`` as fields.

    0 (or "", or -1 for ``curve_every``) means the dataset's default; :meth:`resolved` fills them
    in and checks every value. ``out`` is the JSON file, or a folder for ``<dataset>_table2.json``
    (default: ``data/ablations/<dataset>_table2.json`` in the data folder).
    """

    dataset: str = "swiss_roll"
    preset: str = "tiny"
    steps: int = 0
    stop_at: int = 0
    seeds: list = field(default_factory=list)
    rows: list = field(default_factory=list)
    device: str = "cpu"
    threads: int = 1
    workers: int = 1
    T: int = 0
    reference_n: int = 10000
    grad_clip: Optional[float] = None
    lr: float = 0.0
    lr_decay: str = ""
    ema_decay: float = 0.0
    batch_size: int = 0
    data_root: str = ""
    fmnist_split: str = "train"
    bpd_n: int = 0
    bpd_batch: int = 0
    sample_n: int = 0
    sample_batch: int = 0
    sample_steps: int = 0
    curve_every: int = -1
    curve_n: int = 0
    keep_samples: int = 400
    window: int = 50
    out: str = ""
    resume: bool = False

    def resolved(self) -> "AblationSettings":
        """A copy with every default filled in; a value that cannot work raises ConfigError naming its flag."""
        a = dataclasses.replace(self, seeds=list(self.seeds), rows=list(self.rows))
        if a.dataset not in DATASETS:
            raise ConfigError(f"--dataset must be one of {', '.join(DATASETS)}, got {a.dataset!r}")
        if a.preset not in UNet.FASHION_MNIST_SIZES:
            raise ConfigError(
                f"--preset must be one of {', '.join(sorted(UNet.FASHION_MNIST_SIZES))}, got {a.preset!r}"
            )
        if a.fmnist_split not in ("train", "train-10k"):
            raise ConfigError(f"--fmnist-split must be train or train-10k, got {a.fmnist_split!r}")
        pts = a.dataset == "swiss_roll"
        a.seeds = [int(s) for s in a.seeds] or ([0, 1, 2] if pts else [0])
        a.rows = list(a.rows) or list(ROWS)
        bad = [r for r in a.rows if r not in ROWS]
        if bad:
            raise ConfigError(f"unknown row id(s) {', '.join(bad)}; the rows are: {', '.join(ROWS)}")
        if a.steps < 0:
            raise ConfigError(f"--steps must be >= 0, got {a.steps}")
        if not 0.0 <= a.ema_decay < 1.0:
            raise ConfigError(f"--ema-decay must be in [0, 1), got {a.ema_decay}")
        if a.lr_decay and a.lr_decay not in LR_DECAYS:
            raise ConfigError(f"--lr-decay must be one of {', '.join(LR_DECAYS)}, got {a.lr_decay!r}")
        for name in ("threads", "workers"):
            if getattr(a, name) < 1:
                raise ConfigError(f"--{name} must be >= 1, got {getattr(a, name)}")
        a.bpd_n = a.bpd_n or (2000 if pts else 256)
        a.bpd_batch = a.bpd_batch or (a.bpd_n if pts else 256)
        a.sample_n = a.sample_n or (2000 if pts else 500)
        a.sample_batch = a.sample_batch or (a.sample_n if pts else 500)
        steps = a.steps or (2000 if pts else 3000)
        if not 0 <= a.stop_at <= steps:
            raise ConfigError(f"--stop-at must lie in 0..--steps (0: train every step), got {a.stop_at}")
        if a.curve_every < 0:
            a.curve_every = 250 if pts else max(1, steps // 2)
        a.curve_n = a.curve_n or (500 if pts else 32)
        for name in ("bpd_n", "sample_n", "curve_n", "window"):
            least = 1 if name == "window" else 2
            if getattr(a, name) < least:
                raise ConfigError(f"--{name.replace('_', '-')} must be >= {least}")
        a.out = str(self.out_path_for(a.out, a.dataset))
        return a

    @staticmethod
    def out_path_for(out: str, dataset: str) -> Path:
        if not out:
            return default_out(dataset)
        o = Path(out)
        return o if o.suffix == ".json" else o / f"{dataset}_table2.json"

    @property
    def out_path(self) -> Path:
        """The JSON file the table is written to (its .md goes beside it)."""
        return self.out_path_for(self.out, self.dataset)


def base_config(settings: AblationSettings) -> TrainConfig:
    """The TrainConfig every row shares (prediction, loss and variance are set per row)."""
    name = "swiss_roll.toml" if settings.dataset == "swiss_roll" else "fashion_mnist.toml"
    path = CONFIGS_DIR / name
    if not path.is_file():
        raise ConfigError(
            f"the ablations start from the repository's configs/{name}, not found at {path}: "
            "run them from a clone of the repository"
        )
    cfg = load_config(path)
    if settings.dataset == "swiss_roll":
        cfg = dataclasses.replace(
            cfg, out_dir="", ckpt_every=0, sample_every=0, n_samples=0, steps=settings.steps or 2000
        )
    else:
        cfg = dataclasses.replace(
            cfg,
            dataset="fashion-mnist" if settings.fmnist_split == "train" else "fashion-mnist-10k",
            model=f"unet-fmnist-{settings.preset}",
            data_root=settings.data_root or "",
            out_dir="",
            ckpt_every=0,
            sample_every=0,
            n_samples=0,
            steps=settings.steps or 3000,
            batch_size=settings.batch_size or 128,
            warmup_steps=min(cfg.warmup_steps, max(1, (settings.steps or 3000) // 10)),
            ema_decay=0.999,
            bf16=False,
            compile=False,
        )
    if settings.lr:
        cfg = dataclasses.replace(cfg, lr=settings.lr)
    if settings.ema_decay:
        cfg = dataclasses.replace(cfg, ema_decay=settings.ema_decay)
    if settings.lr_decay:
        cfg = dataclasses.replace(cfg, lr_decay=settings.lr_decay)
    if settings.T:
        cfg = dataclasses.replace(cfg, T=settings.T)
    if settings.grad_clip is not None:
        cfg = dataclasses.replace(cfg, grad_clip=settings.grad_clip)
    return dataclasses.replace(
        cfg, device=settings.device, log_every=min(cfg.log_every, cfg.steps or 1) or 1
    ).validate()


def default_out(dataset: str) -> Path:
    """Where the shipped table of ``dataset`` lives: ``<data folder>/ablations/<dataset>_table2.json``."""
    return data_dir() / "ablations" / f"{dataset}_table2.json"


# ----------------------------------------------------------------------------------------------
# evaluation


class _Eval:
    """Held-out data, the reference set and the scoring of one trained network."""

    def __init__(self, settings, cfg: TrainConfig):
        self.settings, self.cfg = settings, cfg
        self.points = settings.dataset == "swiss_roll"
        if self.points:
            # fresh, independent draws (the training data are drawn from the Trainer's own seeded stream)
            self.x_bpd = swiss_roll(settings.bpd_n, generator=torch.Generator().manual_seed(1001))
            self.x_ref = swiss_roll(settings.sample_n, generator=torch.Generator().manual_seed(1002))
            self.x_curve = self.x_bpd[: settings.curve_n]
        else:
            test = load_test_split("fashion-mnist")
            self.x_bpd = test[: settings.bpd_n]
            self.x_curve = test[: settings.curve_n]
            # the FCD reference: the 10,000 test images (statistics cached by fcd()), or the first reference_n
            self.x_ref = None if settings.reference_n >= len(test) else test[: settings.reference_n]

    def bpd(self, model, d: GaussianDiffusion, x, seed: int = 2) -> dict:
        dev = next(model.parameters()).device
        return bits_per_dim_on(model, d, x, batch_size=self.settings.bpd_batch, seed=seed, device=dev)

    @torch.no_grad()
    def samples(self, model, d: GaussianDiffusion, seed: int) -> torch.Tensor:
        dev = next(model.parameters()).device
        shape = (self.settings.sample_n, *self.x_bpd.shape[1:])
        g = torch.Generator().manual_seed(1000 + seed)
        out = []
        for i in range(0, shape[0], self.settings.sample_batch):
            b = min(self.settings.sample_batch, shape[0] - i)
            if self.settings.sample_steps and self.settings.sample_steps < d.T:
                x = sample_respaced(
                    model,
                    d,
                    self.settings.sample_steps,
                    (b, *shape[1:]),
                    generator=g,
                    progress=False,
                    clip_x0=not self.points,
                    device=dev,
                )
            else:
                x = d.sample(
                    model, (b, *shape[1:]), generator=g, progress=False, clip_x0=not self.points, device=dev
                )
            out.append(x.float().cpu())
        return torch.cat(out)

    def score(self, x: torch.Tensor) -> dict:
        finite = torch.isfinite(x.flatten(1)).all(1)
        if self.points:
            inside = finite & (x.abs() <= OUT_OF_RANGE).all(1)
            oor = 1.0 - float(inside.float().mean())
            sw = lambda a: sliced_wasserstein(
                a,
                self.x_ref,
                n_projections=256,  # noqa: E731
                generator=torch.Generator().manual_seed(7),
            )
            return {
                "score": sw(x[finite]) if finite.sum() >= 2 else None,
                "w1_ratio": sliced_w1_ratio(x[finite])["ratio"] if finite.sum() >= 2 else None,
                "score_in_range": sw(x[inside]) if inside.sum() >= 2 else None,
                "mmd": mmd_rbf(x[finite], self.x_ref) if finite.sum() >= 2 else None,
                "out_of_range": oor,
            }
        oor = float((~finite).float().mean())
        score = fcd(x[finite].clamp(-1, 1), reference=self.x_ref) if finite.sum() >= 2 else None
        return {"score": score, "score_in_range": score, "mmd": None, "w1_ratio": None, "out_of_range": oor}


# ----------------------------------------------------------------------------------------------
# the table


def _row_diffusion(trained: GaussianDiffusion, variance: str) -> GaussianDiffusion:
    return GaussianDiffusion(
        trained.schedule,
        prediction=trained.prediction,
        variance=variance,
        loss=trained.loss,
        decoder=trained.decoder,
    )


def run_one(
    settings: AblationSettings, cfg: TrainConfig, ev: _Eval, row_id: str, seed: int, children
) -> dict:
    """Train one row with one seed, then score it (and the eval-only rows that reuse its network)."""
    pred, loss, var = ROWS[row_id][:3]
    rc = dataclasses.replace(cfg, prediction=pred, loss=loss, variance=var, seed=seed).validate()
    t0 = time.perf_counter()
    trainer = Trainer(rc, command=f"scripts/ablations.py row {row_id} seed {seed}")
    rids = [row_id] + children
    bpd_curves = {rid: [] for rid in rids}
    every = settings.curve_every

    def diffusion_of(tr, rid):
        return tr.diffusion if rid == row_id else _row_diffusion(tr.diffusion, ROWS[rid][2])

    def curve_point(tr):
        tr.ema.eval()
        for rid in rids:
            b = ev.bpd(tr.ema, diffusion_of(tr, rid), ev.x_curve, seed=3)["mean"]
            bpd_curves[rid].append([tr.step_count, _rnd(b)])

    def callback(tr):
        if every and tr.step_count % every == 0:
            curve_point(tr)

    diverged_at = None
    try:
        trainer.run(steps=settings.stop_at or None, callback=callback, progress=False)
    except FloatingPointError:
        pass
    h = trainer.history  # after a FloatingPointError the pending steps are already in it
    bad = [s for s, v in zip(h.step, h.loss) if not math.isfinite(v)]
    if bad:
        diverged_at = bad[0]
    elif every and (not bpd_curves[row_id] or bpd_curves[row_id][-1][0] != trainer.step_count):
        curve_point(trainer)  # the curve always ends at the last step (on the same points as before)
    stats = summarize_history(h.loss, h.grad_norm, rc.grad_clip, window=settings.window)
    base = {
        "seed": seed,
        "diverged_at": diverged_at,
        "final_loss": _rnd(h.loss[-1]) if h.loss else None,
        "steps_done": trainer.step_count,
        **stats,
    }
    results = {}
    ema = trainer.ema.eval()
    for rid in rids:
        r = dict(base)
        d = diffusion_of(trainer, rid)
        if diverged_at is None:
            b = ev.bpd(ema, d, ev.x_bpd)
            fin = math.isfinite(b["mean"])
            r.update(
                bpd=_rnd(b["mean"]),
                bpd_stderr=_rnd(b["stderr"], 3) if fin else None,
                bpd_terms={k: _rnd(b[k]) for k in ("L_T", "L_t_minus_1", "L_0")},
            )
            x = ev.samples(ema, d, seed)
            r.update({k: _rnd(v) if v is not None else None for k, v in ev.score(x).items()})
            r["bpd_curve"] = bpd_curves[rid]
            r["_samples"] = x
        else:
            r.update(
                bpd=None,
                bpd_stderr=None,
                bpd_terms=None,
                score=None,
                score_in_range=None,
                mmd=None,
                w1_ratio=None,
                out_of_range=None,
                bpd_curve=bpd_curves[rid],
                _samples=None,
            )
        r["seconds"] = round(time.perf_counter() - t0, 1)
        results[rid] = r
    return results


def _summary(runs) -> dict:
    ok = [r for r in runs if r["diverged_at"] is None]
    out = {"n_runs": len(runs), "n_diverged": len(runs) - len(ok)}
    for key, name in (
        ("bpd", "bpd"),
        ("score", "score"),
        ("score_in_range", "score_in_range"),
        ("mmd", "mmd"),
        ("w1_ratio", "w1_ratio"),
    ):
        m, s = _mean_std([r.get(key) for r in ok])
        out[f"{name}_mean"], out[f"{name}_std"] = _rnd(m), _rnd(s, 3)
    for key in ("loss_spikes", "grad_spikes", "clipped_frac", "out_of_range"):
        m, _ = _mean_std([r[key] for r in runs if r.get(key) is not None])
        out[f"{key}_mean"] = _rnd(m, 4)
    return out


def to_markdown(table: dict) -> str:
    img = table["dataset"] == "fashion_mnist"
    score = "FCD (classifier, not FID)" if img else "sliced W1"
    ratio = not img and any((r["summary"] or {}).get("w1_ratio_mean") is not None for r in table["rows"])
    rcol = " W1 / data floor |" if ratio else ""
    unit = "bits/dim, 8-bit pixels" if img else "bits/dim of a density, can be < 0"
    lines = [
        f"# DDPM Table 2 at small scale: {table['dataset']}",
        "",
        f"Made by: `{table['command']}`  ",
        f"ddpm_lib {table['library_version']}, torch {table['torch']}, "
        f"{table['device']}, seeds {table['seeds']}, {table['steps']} steps each"
        + (f", stopped after the first {table['stopped_at']}" if table.get("stopped_at") else "")
        + ("" if table["complete"] else "  \n**incomplete: some rows did not finish**"),
        "",
        f"| row | paper IS | paper FID | bound ({unit}) | {score} |{rcol} diverged | loss spikes | grad spikes "
        "| clipped |",
        "|---|---|---|---|---|---|---|---|---|" + ("---|" if ratio else ""),
    ]

    def pm(m, s, d=3):
        if m is None:
            return "–"
        if abs(m) >= 1000:
            return f"{m:.3g} ± {s:.2g}" if s else f"{m:.3g}"
        return f"{m:.{d}f} ± {s:.{d}f}" if s else f"{m:.{d}f}"

    for row in table["rows"]:
        s = row["summary"]
        label = row["label"].replace("|", "\\|")  # a pipe would end the table cell
        if s is None:
            lines.append(
                f"| {label} | {row['paper']['IS'] or ''} | {row['paper']['FID'] or ''} | not run yet |"
                " | | | | |" + (" |" if ratio else "")
            )
            continue
        lines.append(
            f"| {label} | {row['paper']['IS'] or ''} | {row['paper']['FID'] or ''} | "
            f"{pm(s['bpd_mean'], s['bpd_std'])} | {pm(s['score_mean'], s['score_std'])} | "
            + (f"{pm(s.get('w1_ratio_mean'), s.get('w1_ratio_std'), 2)} | " if ratio else "")
            + f"{s['n_diverged']}/{s['n_runs']} | {s['loss_spikes_mean']} | {s['grad_spikes_mean']} | "
            f"{s['clipped_frac_mean']} |"
        )
    lines += ["", f"Paper: {table['paper']['source']}.", "", table["eval"]["notes"], ""]
    if table.get("not_measured"):  # rows left out of a merged table, and why (written by whoever merged it)
        nm = table["not_measured"]
        lines += [f"Not measured: {', '.join(nm['rows'])}. {nm['why']}", ""]
    return "\n".join(lines)


def write_table(table: dict, path) -> Path:
    """Write ``table`` as JSON and its Markdown beside it (each atomically). A table written inside
    the data folder is (re)registered in ``data/registry.json`` with its sha256, so that
    :func:`load_table` refuses a copy edited by hand. Returns the JSON path."""
    path = Path(path)
    md = path.with_suffix(".md")
    for p, text in ((path, json.dumps(table, indent=1, ensure_ascii=False) + "\n"), (md, to_markdown(table))):
        atomic_write(p, lambda tmp, text=text: Path(tmp).write_text(text, encoding="utf-8"))
    if registry_key(path) is None:
        return path  # a table outside the data folder is the caller's own
    for p, what in ((path, "JSON"), (md, "Markdown")):
        register_file(
            p,
            description=f"DDPM Table 2 at small scale, {table['dataset']}: the table as {what} "
            f"({'complete' if table.get('complete') else 'incomplete'}); schema in ddpm_lib/ablations.py",
            source=table.get("command", "ddpm-ablations"),
            licence="MIT (this course's code; synthetic data)"
            if table["dataset"] == "swiss_roll"
            else "MIT, Zalando Research (made from models trained on Fashion-MNIST)",
        )
    return path


def load_table(which: str = "swiss_roll", verify: bool = True) -> dict:
    """A table of DDPM Table 2 at small scale, as :func:`run_table` wrote it.

    :param which: a dataset (``"swiss_roll"``, ``"fashion_mnist"``: the shipped table in the data
        folder) or the path of a table's JSON file.
    :param verify: check the file's size and sha256 against ``data/registry.json`` when the registry
        lists it (the shipped tables are listed; an edited copy is refused).
    :raises FileNotFoundError: naming the file and the command that makes it.
    :raises DataIntegrityError: when the file is not the registered one.
    """
    path = default_out(which) if which in DATASETS else Path(which)
    if not path.is_file():
        raise FileNotFoundError(
            f"no ablation table at {path}; make it with: ddpm-ablations"
            + (f" --dataset {which}" if which in DATASETS and which != "swiss_roll" else "")
        )
    if verify:
        verify_if_registered(path)
    try:
        table = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise DataIntegrityError(f"{path}: not a JSON ablation table ({e})") from None
    if (
        not isinstance(table, dict)
        or table.get("format") != FORMAT
        or not isinstance(table.get("rows"), list)
    ):
        raise DataIntegrityError(f"{path}: not an ablation table of format {FORMAT}")
    return table


def _prepare_folder(path: Path) -> None:
    """Make the folder of ``path``, or say which part of it is a file."""
    for p in (path.parent, *path.parent.parents):
        if p.exists():
            if not p.is_dir():
                raise NotADirectoryError(f"cannot write {path}: {p} is a file, not a folder")
            break
    path.parent.mkdir(parents=True, exist_ok=True)


def run_table(settings: AblationSettings, command: str = "ddpm-ablations") -> dict:
    """Train and score the requested rows; write the JSON (after every run) and the .md. Returns the table.

    ``command``: the command line to record in the table (the one that reproduces it)."""
    settings = settings.resolved()
    _prepare_folder(settings.out_path)  # an unusable --out fails now, not after the training
    cfg = base_config(settings)
    ev = _Eval(settings, cfg)
    wanted = [r for r in ROWS if r in settings.rows]
    trained = [r for r in RUN_ORDER if r in wanted or any(ROWS[c][6] == r and c in wanted for c in ROWS)]
    dev = torch.device(cfg.device if cfg.device != "auto" else device_rule())
    notes = (
        "Swiss roll: continuous 2-D data, decoder 'gaussian'; the bound is in bits per dimension of a density "
        "(-log2 p / 2), which can be negative and is not comparable with image bits/dim. Sample score: sliced "
        "Wasserstein-1 (256 directions) between samples and held-out points (lower is better); MMD^2 (RBF) too."
        if ev.points
        else f"Fashion-MNIST: 8-bit images, decoder 'discretized' (Eq. 13); "
        f"bound in bits/dim on the first {len(ev.x_bpd)} "
        f"test images. Sample score: Frechet classifier distance between {settings.sample_n} samples and the first "
        f"{10000 if ev.x_ref is None else len(ev.x_ref)} test images (NOT Inception FID)."
    )
    table = {
        "format": FORMAT,
        "what": "DDPM (Ho et al. 2020) Table 2 at small scale",
        "dataset": settings.dataset,
        "complete": False,
        "command": command,
        "library_version": __version__,
        "torch": torch.__version__,
        "device": torch.cuda.get_device_name(dev) if dev.type == "cuda" else dev.type,
        "threads": torch.get_num_threads(),
        "seeds": list(settings.seeds),
        "steps": cfg.steps,
        "stopped_at": settings.stop_at or None,
        "train_config": {
            k: v
            for k, v in dataclasses.asdict(cfg).items()
            if k not in ("prediction", "loss", "variance", "seed")
        },
        "window": settings.window,
        "eval": {
            "bpd_n": len(ev.x_bpd),
            "bpd_seed": 2,
            "curve_seed": 3,
            "sample_n": settings.sample_n,
            "sample_steps": settings.sample_steps or cfg.T,
            "sample_seed": "1000 + seed",
            "sample_metric": "sliced_wasserstein" if ev.points else "fcd",
            "reference_n": len(ev.x_ref) if ev.x_ref is not None else 10000,
            "curve_every": settings.curve_every,
            "curve_n": len(ev.x_curve),
            "spike_rule": f"> {SPIKE_FACTOR:g} x median of the {SPIKE_WINDOW} steps before",
            "out_of_range": f"|coordinate| > {OUT_OF_RANGE:g}" if ev.points else "non-finite",
            "notes": notes,
        },
        "units": {
            "bpd": "bits per dimension" + (" (density of continuous data)" if ev.points else ""),
            "sample_score": "sliced Wasserstein-1" if ev.points else "Frechet classifier distance",
            "loss": "the training objective per example: simple = MSE per dimension; vlb = T x L_{t-1} in bits/dim",
        },
        "paper": PAPER,
        "rows": [],
        "samples": {},
    }
    rows = {
        rid: {
            "id": rid,
            "label": ROWS[rid][3],
            "prediction": ROWS[rid][0],
            "loss": ROWS[rid][1],
            "variance": ROWS[rid][2],
            "trained_as": ROWS[rid][6] or rid,
            "paper": {"IS": ROWS[rid][4], "FID": ROWS[rid][5]},
            "summary": None,
            "runs": [],
        }
        for rid in wanted
    }
    out = settings.out_path
    t_start = time.perf_counter()
    jobs = [
        (rid, seed, [c for c in wanted if ROWS[c][6] == rid]) for rid in trained for seed in settings.seeds
    ]
    if settings.resume and out is not None and out.is_file():
        done = _resume_from(table, rows, json.loads(out.read_text(encoding="utf-8")))
        jobs = [j for j in jobs if not all((r, j[1]) in done for r in [j[0], *j[2]])]
        print(f"resuming {out}: {len(done)} runs kept, {len(jobs)} to go", flush=True)

    def merge(seed, res):
        for k, r in res.items():
            if k not in rows:
                continue
            keep = r.pop("_samples")
            if keep is not None:
                table["samples"].setdefault(k, {})[str(seed)] = keep
            rows[k]["runs"] = sorted(rows[k]["runs"] + [r], key=lambda x: settings.seeds.index(x["seed"]))
            rows[k]["summary"] = _summary(rows[k]["runs"])
            print(
                f"[{time.perf_counter() - t_start:7.1f} s] {k:17s} seed {seed}: bpd {r['bpd']}, score {r['score']}, "
                f"diverged_at {r['diverged_at']}, loss spikes {r['loss_spikes']}, grad spikes {r['grad_spikes']}, "
                f"clipped {r['clipped_frac']}",
                flush=True,
            )
        table["samples"] = {
            k: dict(sorted(v.items(), key=lambda kv: settings.seeds.index(int(kv[0]))))
            for k, v in table["samples"].items()
        }
        table["rows"] = [rows[r] for r in wanted]
        if out is not None:
            write_table(table, out)

    if settings.workers <= 1:
        for rid, seed, children in jobs:
            merge(seed, _job(settings, rid, seed, children))
    else:
        # independent runs in parallel processes: each is seeded and single-threaded, so the numbers are
        # the same as in one process (spawn: a fresh interpreter, no forked thread pools)
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor, as_completed

        with ProcessPoolExecutor(settings.workers, mp_context=multiprocessing.get_context("spawn")) as pool:
            futures = {pool.submit(_job, settings, rid, seed, children): seed for rid, seed, children in jobs}
            for f in as_completed(futures):
                merge(futures[f], f.result())
    table["complete"] = True
    table["rows"] = [rows[r] for r in wanted]
    if out is not None:
        write_table(table, out)
    return table


#: TrainConfig fields newer than some stored tables, with the value those tables were made with
_NEWER_FIELDS = {"lr_decay": "none", "init_from": "", "warmup_start": 0}


def _same_as_stored(key: str, value):
    """A table's ``key`` for comparison: a train_config gains the fields added since it was written."""
    return {**_NEWER_FIELDS, **value} if key == "train_config" and isinstance(value, dict) else value


def _resume_from(table: dict, rows: dict, old: dict) -> set:
    """Copy the finished runs of ``old`` (a table this command wrote before it was stopped) into
    ``rows`` and ``table["samples"]``; returns the (row id, seed) pairs kept. ``old`` must have been
    made alike (dataset, steps, seeds, training config but for its data folder and device, evaluation), else
    ValueError names the difference."""
    where = (
        "data_root",
        "device",
    )  # where the data lie and what runs them do not change the numbers' meaning
    for key in ("format", "dataset", "steps", "stopped_at", "seeds", "train_config", "window"):
        was, now = _same_as_stored(key, old.get(key)), _same_as_stored(key, table.get(key))
        if key == "train_config" and isinstance(was, dict):
            was, now = ({k: v for k, v in c.items() if k not in where} for c in (was, now))
        if was != now:
            if isinstance(was, dict) and isinstance(now, dict):  # name only the fields that differ
                diff = sorted(k for k in set(was) | set(now) if was.get(k) != now.get(k))
                was, now = ({k: c.get(k) for k in diff} for c in (was, now))
            raise ValueError(
                f"--resume: the table on disk has {key} {was!r}, this command {now!r}: "
                "resume with the same flags, or write elsewhere with --out"
            )
    strip = lambda ev: {k: v for k, v in ev.items() if k != "notes"}  # noqa: E731
    if strip(old.get("eval", {})) != strip(table["eval"]):
        raise ValueError("--resume: the table on disk was evaluated differently; resume with the same flags")
    done = set()
    for r in old.get("rows", []):
        if r["id"] not in rows or not r.get("runs"):
            continue
        rows[r["id"]]["runs"] = r["runs"]
        rows[r["id"]]["summary"] = _summary(r["runs"])
        done |= {(r["id"], run["seed"]) for run in r["runs"]}
        if r["id"] in old.get("samples", {}):
            table["samples"][r["id"]] = old["samples"][r["id"]]
    return done


def merge_tables(base: dict, parts: list) -> dict:
    """Fold finished tables of some rows (one process per row, say, on a GPU) into ``base``: each part's rows
    replace or join base's (in the order of ROWS), their stored samples too; merged rows leave
    ``not_measured``; ``complete`` once every row has a summary and none is left out. The parts must
    have been made with the same dataset, steps, seeds, training config and evaluation as ``base``."""
    out = json.loads(json.dumps(base))  # a deep copy
    same = ("format", "dataset", "steps", "stopped_at", "seeds", "train_config", "window")
    for i, part in enumerate(parts):
        for key in same:
            if _same_as_stored(key, part.get(key)) != _same_as_stored(key, out.get(key)):
                raise ValueError(
                    f"part {i} ({part.get('command', '?')}) has {key}={part.get(key)!r}, "
                    f"the table has {out.get(key)!r}: only runs made alike can share a table"
                )
        ev = {k: v for k, v in part["eval"].items() if k != "notes"}
        if ev != {k: v for k, v in out["eval"].items() if k != "notes"}:
            raise ValueError(f"part {i} was evaluated differently: {ev} vs {out['eval']}")
        if not part.get("complete"):
            raise ValueError(
                f"part {i} ({part.get('command', '?')}) is not complete: its runs did not all finish"
            )
        rows = {r["id"]: r for r in out["rows"]}
        for r in part["rows"]:
            rows[r["id"]] = r
            if r["id"] in part.get("samples", {}):
                out.setdefault("samples", {})[r["id"]] = part["samples"][r["id"]]
        out["rows"] = [rows[k] for k in ROWS if k in rows]
        out.setdefault("merged", []).append(
            {k: part.get(k) for k in ("command", "library_version", "torch", "device")}
        )
        nm = out.get("not_measured")
        if nm:
            nm["rows"] = [k for k in nm["rows"] if k not in {r["id"] for r in part["rows"]}]
            if not nm["rows"]:
                del out["not_measured"]
    out["samples"] = {k: out["samples"][k] for k in ROWS if k in out.get("samples", {})}
    out["complete"] = all(r["summary"] is not None for r in out["rows"]) and not out.get("not_measured")
    return out


_CACHE: dict = {}


def _job(settings, rid: str, seed: int, children) -> dict:
    """One run (a row and a seed) with its eval-only rows; samples kept as lists. Runs in a worker too."""
    if settings.device in ("cpu", "auto") and settings.threads:
        torch.set_num_threads(settings.threads)
    key = id(settings)
    if _CACHE.get("key") != key:
        cfg = base_config(settings)
        _CACHE.update(key=key, cfg=cfg, ev=_Eval(settings, cfg))
    cfg, ev = _CACHE["cfg"], _CACHE["ev"]
    res = run_one(settings, cfg, ev, rid, seed, children)
    for r in res.values():
        x = r["_samples"]
        if x is None:
            continue
        if ev.points:
            r["_samples"] = [
                [round(float(a), 4), round(float(b), 4)] for a, b in x[: settings.keep_samples].tolist()
            ]
        else:
            r["_samples"] = to_uint8(x[:16].clamp(-1, 1)).flatten(1).tolist()
    return res
