"""The alternatives that benchmarks/bench_cpu_alternatives.py times compute what they stand in for.

Its figures (the reason the CPU target is not met) mean something only if each variant is the
same function: Winograd F(2x2, 3x3) and NNPACK against F.conv2d, the NHWC group norm against
torch's (forward, and backward by gradcheck), and the patched networks against the UNet itself.
"""

import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
alt = pytest.importorskip("bench_cpu_alternatives")


def test_winograd_f2x2_3x3_equals_the_convolution():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 5, 6, 8, generator=g, dtype=torch.float64)
    w = torch.randn(7, 5, 3, 3, generator=g, dtype=torch.float64)
    b = torch.randn(7, generator=g, dtype=torch.float64)
    y = alt.winograd_conv3x3(x.contiguous(memory_format=torch.channels_last), w, b)
    assert y.shape == (2, 7, 6, 8)
    torch.testing.assert_close(y, F.conv2d(x, w, b, padding=1), rtol=1e-12, atol=1e-12)


@pytest.mark.skipif(not torch._nnpack_available(), reason="this PyTorch build has no NNPACK")
def test_nnpack_convolution_and_its_gradients():
    g = torch.Generator().manual_seed(1)
    x = torch.randn(2, 8, 7, 7, generator=g, requires_grad=True)
    w = torch.randn(6, 8, 3, 3, generator=g, requires_grad=True)
    b = torch.randn(6, generator=g, requires_grad=True)
    gy = torch.randn(2, 6, 7, 7, generator=g)
    y = alt.NNPackConv.apply(x, w, b, 1)
    grads = torch.autograd.grad(y, (x, w, b), gy)
    y_ref = F.conv2d(x, w, b, padding=1)
    grads_ref = torch.autograd.grad(y_ref, (x, w, b), gy)
    torch.testing.assert_close(y, y_ref, rtol=1e-4, atol=1e-4)
    for a, r in zip(grads, grads_ref):
        torch.testing.assert_close(a, r, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("act", [True, False])
def test_nhwc_group_norm_forward_and_gradcheck(act):
    g = torch.Generator().manual_seed(2)
    x = torch.randn(2, 8, 3, 5, generator=g, dtype=torch.float64) * 3 + 1
    x = x.contiguous(memory_format=torch.channels_last).requires_grad_()
    w = torch.randn(8, generator=g, dtype=torch.float64, requires_grad=True)
    b = torch.randn(8, generator=g, dtype=torch.float64, requires_grad=True)
    y = alt.GroupNormSiLUNHWC.apply(x, w, b, 4, 1e-6, act)
    ref = F.group_norm(x, 4, w, b, 1e-6)
    torch.testing.assert_close(y, F.silu(ref) if act else ref, rtol=1e-10, atol=1e-10)
    assert torch.autograd.gradcheck(lambda x, w, b: alt.GroupNormSiLUNHWC.apply(x, w, b, 4, 1e-6, act), (x, w, b))


def test_patched_networks_compute_the_same_function():
    pytest.importorskip("diffusers")
    torch._nnpack_available()  # NNPACK must be initialized before its first convolution
    ours, theirs, _, _ = alt.B.build_pair("cifar-micro")
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(3))
    t = torch.tensor([3, 700])
    with torch.no_grad():
        ref = ours.eval()(x, t)
        for name in ("ours-cl-gn", "ours-nnpack"):
            out = alt.make_variant(name, ours, theirs).eval()(x, t)
            torch.testing.assert_close(out, ref, rtol=1e-4, atol=1e-4, msg=name)


def test_results_sections_are_made_from_the_stored_json():
    """Each 'cpu-alternatives' section of RESULTS.md is what the script makes of its results JSON."""
    import json

    bench = Path(__file__).resolve().parents[1] / "benchmarks"
    text = (bench / "RESULTS.md").read_text()
    paths = sorted(bench.glob("results_cpu_alternatives*.json"))
    assert paths
    for path in paths:
        res = json.loads(path.read_text())
        tag = alt._tag(res["command"])
        name = "cpu-alternatives" + (f"-{tag}" if tag else "")
        assert path.name == f"results_cpu_alternatives{'_' + tag if tag else ''}.json"
        begin, end = f"<!-- {name}:begin -->", f"<!-- {name}:end -->"
        section = text[text.index(begin) + len(begin):text.index(end)]
        assert section.strip() == alt.markdown(res).strip(), name
