"""benchmarks/bench_cifar10_gpu.py, the GPU benchmark of issue 16, rehearsed on the CPU (--quick): its FLOP count,
MFU and profile, and the RESULTS.md section it renders. The figures themselves come from a GPU run."""

import importlib.util
import json
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def bench():
    sys.path.insert(0, str(REPO / "benchmarks"))
    spec = importlib.util.spec_from_file_location(
        "bench_cifar10_gpu", REPO / "benchmarks" / "bench_cifar10_gpu.py"
    )
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_flops_of_a_training_step_are_three_forward_passes(bench):
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from ddpm_lib.nets import UNet

    per_image = bench.train_flops_per_image(UNet.ddpm_cifar10)
    with torch.device("meta"):
        net = UNet.ddpm_cifar10()
        x, t = torch.randn(2, 3, 32, 32), torch.randint(1, 1001, (2,))
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        net(x, t)
    forward = counter.get_total_flops() / 2
    # backward costs twice the forward: gradients with respect to the inputs and to the weights
    assert per_image == pytest.approx(3 * forward, rel=0.02)
    assert round(per_image / 1e9, 1) == 35.1
    assert bench.peak_tflops("NVIDIA H200") == 989.4 and bench.peak_tflops("Tesla T4") is None


def test_quick_run_on_the_cpu_profiles_and_renders(bench, tmp_path, monkeypatch):
    monkeypatch.delenv("OUT", raising=False)
    out = tmp_path / "results_gpu.json"
    res = bench.main(
        ["--device", "cpu", "--quick", "--profile", "2", "--formats", "contiguous", "--out", str(out)]
    )
    assert json.loads(out.read_text())["runs"] == res["runs"]
    trains = [r for r in res["runs"] if r["workload"] == "train"]
    assert trains and all(
        r["tflops_per_s"] >= 0 and "mfu" not in r for r in trains
    )  # no peak known for a CPU
    prof = res["profiles"]["Trainer.step eager fp32"]
    assert prof["steps"] == 2 and prof["top"] and (tmp_path / prof["table"]).read_text().strip()
    md = bench.gpu_markdown(res)
    assert "| TFLOP/s | MFU |" in md and "Profile of Trainer.step eager fp32 (2 steps" in md
