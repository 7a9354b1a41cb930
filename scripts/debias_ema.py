"""Remove the initial weights' share from an EMA that started at the initial weights.

An EMA with decay d started at w_0 holds, after N updates,
    ema_N = d^N w_0 + (1 - d) sum_{k=1..N} d^(N-k) w_k,
so for a short run (d^N not small) it still carries d^N of the untrained network. The
trained weights' normalized exponential average is (ema_N - d^N w_0) / (1 - d^N), the same
zero-debiasing Adam applies to its moments. w_0 is rebuilt exactly from the run's seed.

    python scripts/debias_ema.py CKPT OUT   (CKPT: an EMA checkpoint written by the trainer)
"""

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from ddpm_lib.checkpoints import build_model, load_checkpoint, save_checkpoint  # noqa: E402
from ddpm_lib.train import config_from_dict, debias_ema, make_model, stream_seed  # noqa: E402


def main(src, dst):
    ck = load_checkpoint(src)
    cfg = config_from_dict(ck.config["train"])
    N, d = int(ck.config["step"]), cfg.ema_decay
    torch.manual_seed(stream_seed(cfg.seed, "init"))  # as Trainer.__init__ does before building the model
    w0 = make_model(cfg, ck.config["data"]["shape"]).state_dict()
    ema = build_model(ck, use_ema=True)
    share = d**N
    ema.load_state_dict(debias_ema(ema.state_dict(), w0, d, N))
    conf = dict(ck.config)
    conf["ema_debiased"] = {
        "source": Path(src).name,
        "initial_share": share,
        "command": f"python scripts/debias_ema.py {src} {dst}",
    }
    save_checkpoint(dst, ema, config=conf, step=N)
    print(f"step {N}, decay {d}: removed the initial weights' share {share:.4f}")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
