"""ddpm_lib against diffusers' ``DDPMScheduler`` and ``DDIMScheduler``.

Index mapping. diffusers counts timesteps from 0: its timestep k is the paper's (and
ddpm_lib's) t = k + 1, so ``scheduler.alphas_cumprod[k] == schedule.alpha_bars[k + 1]``. Every
conversion in this file goes through :func:`to_paper_t` / :func:`to_diffusers_k`; replacing
``k + 1`` by ``k`` (or ``k + 2``) there makes every test below fail.

Precision, and the tolerances that follow from it. diffusers builds its tables (betas, alphas,
alphas_cumprod) in float32; ddpm_lib keeps them in float64. All inputs here are float64, so
diffusers computes in float64 *from float32-rounded tables*, and each comparison isolates the
table precision. u = 2^-24 is one float32 ulp just below 1.

- Tables (elementwise): betas within 1-2 ulp of ours (rtol 2.4e-7; 6e-7 for the squared
  "scaled_linear"); alphas_cumprod, a float32 cumprod of 1000 factors, rtol 1e-4 (at most ~T u/2 = 3e-5
  from the products, and for the cosine schedule up to 3e-5 more from 1 - 0.999 at t = T); 1 - alpha_bar
  rtol u / beta_1: the rounding of alpha_bar_1 = 1 - beta_1 to float32 is all of the error there, 3e-4
  of 1 - alpha_bar_1 for beta_1 = 1e-4 (the "3e-4 near t = 1").
- A step's outputs are linear in x_t and the model output with coefficients made of these tables, so
  we bound max |diffusers - ours| / max |ours| per tensor (not elementwise: a mean c0 x0 + ct x_t
  can cancel to near 0 while its error does not):
  * DDPMScheduler re-derives beta_t = 1 - alpha_bar_t / alpha_bar_{t-1} from two rounded values: an
    error of ~2u / beta_2 = 1e-3 at worst at t = 2 (measured 1.7e-4 on the outputs).
    ``F32_RTOL_DDPM = 1e-3``.
  * DDIMScheduler uses alpha_bar (3e-7), 1 - alpha_bar (<= u/2 / beta_1 = 3e-4, only at t = 1) and
    1 - alpha_bar_t / alpha_bar_prev over >= 20 steps (<= 2u / 2.2e-3 = 5e-5); sigma carries half of
    these (a square root), measured 8e-5. ``F32_RTOL_DDIM = 3e-4``.
  * Whole loops are held to the tolerance of their steps: measured errors after 50 DDIM steps are
    ~2e-6 and after 1000 DDPM steps ~3e-5 (the reverse chain contracts errors, it does not add them).
  An off-by-one in the index mapping changes these outputs by >= 2e-3 relative (DDIM loop) and by
  0.01 to 1 elsewhere, so every tolerance above still fails it.
- Every float32-table comparison is repeated with diffusers' tables replaced by ddpm_lib's float64
  ones (:func:`use_float64_tables`): agreement is then elementwise rtol 1e-10, atol 1e-12 (``F64``;
  measured: max abs diff <= 6e-13, even after 1000 steps), which shows that the formulas are
  identical and only table precision differs.

Measured differences are printed with ``pytest -s``.

Conventions checked (not differences, but easy to get wrong):
- diffusers' "linear" is ddpm_lib's ``linear``; "squaredcos_cap_v2" is ddpm_lib's ``cosine`` with
  s = 0.008 and max_beta = 0.999 (diffusers takes beta_t = 1 - f(t/T) / f((t-1)/T) directly, ddpm_lib
  1 - abar_t / abar_{t-1} with abar = f / f(0): the same numbers); "scaled_linear" (sqrt(beta)
  linear, as Stable Diffusion uses with 0.00085..0.012) is exactly ddpm_lib's ``quadratic``
  (DDPM's "quad"). "sigmoid" and "laplace" have no ddpm_lib counterpart and are not tested.
- DDPMScheduler adds no noise at k = 0; ddpm_lib's ``p_sample`` returns the mean at t = 1. Its
  fixed_small variance at k = 0 is beta~_1 = 0 clamped to 1e-20, ddpm_lib's is beta~_2 (the log
  variance clipped as in improved-diffusion): unused by both samplers, so variances are compared for
  t >= 2 and the last step separately. fixed_large is beta_t at every k, in both.
- DDIMScheduler with ``clip_sample=True`` keeps the unclipped eps unless
  ``use_clipped_model_output=True``; ddpm_lib re-derives eps from the clipped x0 (as improved-diffusion
  and GLIDE do), so clipping comparisons pass ``use_clipped_model_output=True``.
- DDIMScheduler's previous timestep is k - T // num_inference_steps; a negative one means
  ``final_alpha_cumprod`` (1 with ``set_alpha_to_one=True``), i.e. ddpm_lib's t_prev = 0.
  ``ddim_sample``'s default grid is diffusers' "trailing" spacing; when n does not divide T,
  diffusers' step lands off its own grid, so whole loops coincide only for n dividing T.
"""

from __future__ import annotations

import math

import pytest
import torch

import ddpm_lib as dl
from ddpm_lib.interop import diffusers_timestep, paper_t

diffusers = pytest.importorskip("diffusers")
from diffusers import DDIMScheduler, DDPMScheduler  # noqa: E402
from diffusers.schedulers.scheduling_ddpm import betas_for_alpha_bar  # noqa: E402

T = 1000
F64 = dict(rtol=1e-10, atol=1e-12)  # float64 tables on both sides: only float64 rounding is left
# float32 tables in diffusers: bounds on max |diff| / max |ours| per tensor (see the module docstring)
F32_RTOL_DDPM = 1e-3
F32_RTOL_DDIM = 3e-4
TABLES = ("float32", "float64")
# diffusers' timesteps at which single steps are compared: both ends, near both ends, and between
KS = [0, 1, 2, 3, 9, 100, 499, 500, 900, 997, 998, 999]


# ---- the index convention lives in one place: ddpm_lib.interop (diffusers' k is our t - 1) ----------
to_paper_t, to_diffusers_k = paper_t, diffusers_timestep


# ---- helpers -------------------------------------------------------------------------------
def diffs(a: torch.Tensor, b: torch.Tensor):
    """(max |a - b|, max |a - b| / max |b|) in float64."""
    a, b = a.double(), b.double()
    err = (a - b).abs().max().item()
    return err, err / max(b.abs().max().item(), 1e-300)


def report(name, a, b):
    """Print max |a - b|, that over max |b|, and the largest elementwise |a - b| / |b|."""
    err, rel = diffs(a, b)
    a, b = a.double(), b.double()
    nz = b != 0
    elt = ((a - b).abs()[nz] / b.abs()[nz]).max().item() if nz.any() else float("nan")
    print(f"{name}: max abs diff {err:.3g}, relative to max |.| {rel:.3g}, elementwise relative {elt:.3g}")
    return err, rel


def check(name: str, a: torch.Tensor, b: torch.Tensor, tables: str, f32_rtol: float):
    """diffusers' a against ddpm_lib's b: elementwise to ~1e-12 (F64) with float64 tables; with float32
    tables max |a - b| <= f32_rtol * max |b|. Returns (max abs diff, relative diff)."""
    err, rel = diffs(a, b)
    if tables == "float64":
        torch.testing.assert_close(a.double(), b.double(), **F64, msg=lambda m: f"{name}: {m}")
    else:
        assert rel <= f32_rtol, (
            f"{name}: max abs diff {err:.3g} is {rel:.3g} of max |ours| (allowed {f32_rtol})"
        )
    return err, rel


def print_worst(prefix: str, worst: dict):
    for (tables, name), (err, rel) in worst.items():
        print(f"{prefix} ({tables} tables) {name}: max abs diff {err:.3g}, relative {rel:.3g}")


def use_float64_tables(sched, schedule: dl.NoiseSchedule):
    """Replace a scheduler's float32 tables by ddpm_lib's float64 ones (diffusers' index k = t - 1)."""
    sched.betas = schedule.betas[1:].clone()
    sched.alphas = schedule.alphas[1:].clone()
    sched.alphas_cumprod = schedule.alpha_bars[1:].clone()
    if hasattr(sched, "one"):
        sched.one = torch.tensor(1.0, dtype=torch.float64)
    if hasattr(sched, "final_alpha_cumprod"):
        sched.final_alpha_cumprod = (
            torch.tensor(1.0, dtype=torch.float64)
            if sched.config.set_alpha_to_one
            else schedule.alpha_bars[1].clone()
        )
    return sched


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """These tensors have ~100 elements: with 2 threads and a busy machine, each exp/sqrt/sin on them
    was measured at 8-16 ms (an OpenMP wake-up) against 5 us on one thread. Restored afterwards."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def full_t(t: int, B: int) -> torch.Tensor:
    return torch.full((B,), int(t), dtype=torch.long)


LINEAR = dl.NoiseSchedule.linear(T, 1e-4, 0.02)
_AB = LINEAR.alpha_bars  # a fixed float64 table that only defines the test "model" below


def eps_model_k(x: torch.Tensor, k) -> torch.Tensor:
    """A fixed deterministic eps-"model" in diffusers' convention (timestep k in 0..T-1).

    The optimal eps for data x_0 ~ N(0, 0.25 I) plus a small nonlinear term: it keeps samples bounded
    over 1000 steps and makes every step depend on the timestep.
    """
    k = torch.as_tensor(k)
    ab = _AB[k + 1].to(x.dtype)
    if ab.ndim == 1:
        ab = ab.view(-1, *([1] * (x.ndim - 1)))
    return (1 - ab).sqrt() * x / (0.25 * ab + 1 - ab) + 0.05 * torch.sin(3 * x) * (k.double() / T).to(
        x.dtype
    ).view_as(ab)


def ours_model(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """The same model in ddpm_lib's convention: it receives the paper's t (1..T)."""
    return eps_model_k(x, to_diffusers_k(t))


# ---- 1. tables ----------------------------------------------------------------------------
def test_linear_tables():
    ours = dl.NoiseSchedule.linear(T, 1e-4, 0.02)
    d = DDPMScheduler(num_train_timesteps=T, beta_start=1e-4, beta_end=0.02, beta_schedule="linear")
    k = torch.arange(T)
    t = to_paper_t(k)
    # float32 tables. betas: torch.linspace in float32 is within 2 ulp (2.4e-7 relative).
    report("linear betas (f32)", d.betas, ours.betas[t])
    torch.testing.assert_close(d.betas.double(), ours.betas[t], rtol=2.4e-7, atol=0)
    # alphas_cumprod: a float32 cumprod of 1000 factors; relative error <= ~T * 2^-25 = 3e-5 at worst.
    report("linear alphas_cumprod (f32)", d.alphas_cumprod, ours.alpha_bars[t])
    torch.testing.assert_close(d.alphas_cumprod.double(), ours.alpha_bars[t], rtol=1e-4, atol=0)
    # 1 - alpha_bar: the float32 rounding of alpha_bar_1 = 1 - 1e-4 (half an ulp, 2^-25 = 3e-8) costs up to
    # 3e-4 of 1 - alpha_bar_1 = beta_1; allowed: one ulp (2^-24), 6e-4 of beta_1.
    report("linear 1 - alphas_cumprod (f32)", 1 - d.alphas_cumprod.double(), 1 - ours.alpha_bars[t])
    torch.testing.assert_close(
        1 - d.alphas_cumprod.double(), 1 - ours.alpha_bars[t], rtol=2.0**-24 / float(ours.betas[1]), atol=0
    )
    # diffusers' construction carried out in float64 gives ddpm_lib's tables to rounding
    b64 = torch.linspace(1e-4, 0.02, T, dtype=torch.float64)
    torch.testing.assert_close(b64, ours.betas[t], rtol=1e-15, atol=0)
    torch.testing.assert_close(torch.cumprod(1.0 - b64, 0), ours.alpha_bars[t], rtol=1e-13, atol=0)


def test_cosine_tables_match_squaredcos_cap_v2():
    ours = dl.NoiseSchedule.cosine(T, s=0.008, max_beta=0.999)
    d = DDPMScheduler(num_train_timesteps=T, beta_schedule="squaredcos_cap_v2")
    t = to_paper_t(torch.arange(T))
    # diffusers computes these betas in Python float64 and only then rounds to float32: every beta is
    # within one float32 ulp (2^-23 relative) of ours, including the last one clipped at max_beta 0.999.
    report("cosine betas (f32)", d.betas, ours.betas[t])
    torch.testing.assert_close(d.betas.double(), ours.betas[t], rtol=2.0**-23, atol=0)
    assert float(d.betas[-1]) == pytest.approx(0.999, rel=1e-7) and float(ours.betas[T]) == 0.999
    assert torch.equal(betas_for_alpha_bar(T, max_beta=0.999), d.betas)
    # a float32 cumprod, as for linear; at t = T the factor 1 - beta_T = 1 - 0.999 is 0.001 to within
    # 2^-25 / 1e-3 = 3e-5 relative, so alpha_bar_T (2.4e-9) is the least accurate entry (measured 1.3e-5).
    report("cosine alphas_cumprod (f32)", d.alphas_cumprod, ours.alpha_bars[t])
    torch.testing.assert_close(d.alphas_cumprod.double(), ours.alpha_bars[t], rtol=1e-4, atol=0)
    # 1 - alpha_bar_1 = beta_1 = 4.1e-5 here: one float32 ulp below 1 (2^-24) is 1.5e-3 of it.
    report("cosine 1 - alphas_cumprod (f32)", 1 - d.alphas_cumprod.double(), 1 - ours.alpha_bars[t])
    torch.testing.assert_close(
        1 - d.alphas_cumprod.double(), 1 - ours.alpha_bars[t], rtol=2.0**-24 / float(ours.betas[1]), atol=0
    )


@pytest.mark.parametrize("beta_start,beta_end", [(1e-4, 0.02), (0.00085, 0.012)])
def test_quadratic_tables_match_scaled_linear(beta_start, beta_end):
    # diffusers' "scaled_linear" is linspace(sqrt(beta_start), sqrt(beta_end), T) ** 2: DDPM's "quad",
    # ddpm_lib's quadratic. (Stable Diffusion uses it with 0.00085..0.012.)
    ours = dl.NoiseSchedule.quadratic(T, beta_start, beta_end)
    d = DDPMScheduler(
        num_train_timesteps=T, beta_start=beta_start, beta_end=beta_end, beta_schedule="scaled_linear"
    )
    t = to_paper_t(torch.arange(T))
    report(f"quadratic {beta_start}..{beta_end} betas (f32)", d.betas, ours.betas[t])
    # float32 linspace of the square roots (2 ulp), then squared (doubling it, plus 1 ulp): 6e-7
    torch.testing.assert_close(d.betas.double(), ours.betas[t], rtol=6e-7, atol=0)
    report(f"quadratic {beta_start}..{beta_end} alphas_cumprod (f32)", d.alphas_cumprod, ours.alpha_bars[t])
    torch.testing.assert_close(d.alphas_cumprod.double(), ours.alpha_bars[t], rtol=1e-4, atol=0)
    b64 = torch.linspace(beta_start**0.5, beta_end**0.5, T, dtype=torch.float64) ** 2
    torch.testing.assert_close(b64, ours.betas[t], rtol=1e-14, atol=0)


# ---- 2. the forward process -----------------------------------------------------------------
@pytest.mark.parametrize("tables", ["float32", "float64"])
def test_add_noise_is_q_sample(tables):
    g = torch.Generator().manual_seed(0)
    k = torch.arange(T)  # one example per timestep: k = 0..999, t = 1..1000
    x0 = torch.randn(T, 2, 3, 3, generator=g, dtype=torch.float64)
    noise = torch.randn(x0.shape, generator=g, dtype=torch.float64)
    d = DDPMScheduler(num_train_timesteps=T, beta_schedule="linear")
    if tables == "float64":
        use_float64_tables(d, LINEAR)
    theirs = d.add_noise(x0, noise, k)
    ours = dl.GaussianDiffusion(LINEAR).q_sample(x0, to_paper_t(k), noise)
    report(f"add_noise vs q_sample ({tables} tables)", theirs, ours)
    if tables == "float32":
        # sqrt(alpha_bar) is good to ~2e-7 relative, sqrt(1 - alpha_bar) to 1.5e-4 relative at t = 1
        # (where it is 0.01): |diff| <= 1e-7 |x0| + 1.5e-6 |noise| ~ 1e-5 for |x0|, |noise| < 5.
        torch.testing.assert_close(theirs, ours, rtol=1e-5, atol=1e-5)
    else:
        torch.testing.assert_close(theirs, ours, **F64)


# ---- 3. DDPMScheduler.step ------------------------------------------------------------------
def _ddpm(variance_type, clip, prediction, tables):
    d = DDPMScheduler(
        num_train_timesteps=T,
        beta_schedule="linear",
        variance_type=variance_type,
        clip_sample=clip,
        prediction_type=prediction,
    )
    return use_float64_tables(d, LINEAR) if tables == "float64" else d


@pytest.mark.parametrize("prediction", ["epsilon", "sample"])
@pytest.mark.parametrize("clip", [False, True])
@pytest.mark.parametrize("variance_type", ["fixed_small", "fixed_large"])
def test_ddpm_step(variance_type, clip, prediction):
    """step(...) against p_mean_variance and p_sample with the very same noise, at the timesteps KS.

    diffusers draws its noise inside step() as torch.randn(shape, generator=g, dtype) (k > 0 only);
    a second generator with the same seed reproduces it exactly, and that z is given to p_sample.
    The mean is read back as prev_sample - sqrt(_get_variance(k)) * z (exact up to one rounding),
    and pred_original_sample is ddpm_lib's pred_x0. Variances are compared for k >= 1 (t >= 2); the
    last step (k = 0, t = 1) is noiseless on both sides and its prev_sample is the mean.
    Tolerances: F32_RTOL_DDPM (float32 tables), F64 (float64 tables); see the module docstring.
    """
    scheds = {tables: _ddpm(variance_type, clip, prediction, tables) for tables in TABLES}
    D = dl.GaussianDiffusion(
        LINEAR, prediction="eps" if prediction == "epsilon" else "x0", variance=variance_type
    )
    g = torch.Generator().manual_seed(1)
    B = 3
    worst = {}
    for k in KS:
        t = full_t(to_paper_t(k), B)
        x = 1.5 * torch.randn(B, 2, 4, 4, generator=g, dtype=torch.float64)
        # scales such that clipping to [-1, 1] is active in a good fraction of elements when on
        out = (1.5 if prediction == "sample" else 1.0) * torch.randn(
            x.shape, generator=g, dtype=torch.float64
        )
        seed = 100 + k
        z = torch.randn(x.shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
        p = D.p_mean_variance(out, x, t, clip_x0=clip)
        ours_prev = D.p_sample(out, x, t, noise=z, clip_x0=clip)
        if clip and k == 999:
            assert (p["pred_x0"].abs() == 1).any()  # clipping did happen
        for tables, d in scheds.items():
            res = d.step(out, k, x, generator=torch.Generator().manual_seed(seed))
            pairs = {
                "pred_x0": (res.pred_original_sample, p["pred_x0"]),
                "prev_sample": (res.prev_sample, ours_prev),
            }
            if k > 0:
                var_d = d._get_variance(k).double()
                pairs["mean"] = (res.prev_sample - var_d**0.5 * z, p["mean"])
                pairs["variance (t >= 2)"] = (var_d.expand(x.shape), p["variance"])
            else:
                pairs["mean (last step)"] = (res.prev_sample, p["mean"])
            for name, (a, b) in pairs.items():
                err = check(f"{name} at k={k} ({tables} tables)", a, b, tables, F32_RTOL_DDPM)
                worst[tables, name] = max(worst.get((tables, name), (0.0, 0.0)), err)
    print_worst(f"DDPM step {variance_type} clip={clip} {prediction}", worst)


@pytest.mark.parametrize("variance_type", ["fixed_small", "fixed_large"])
def test_ddpm_variance_conventions_and_noiseless_last_step(variance_type):
    d = _ddpm(variance_type, False, "epsilon", "float64")
    D = dl.GaussianDiffusion(LINEAR, variance=variance_type)
    x = torch.randn(2, 1, 3, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    t1 = full_t(to_paper_t(0), 2)
    ours_var = D.p_mean_variance(torch.zeros_like(x), x, t1)["variance"]
    if variance_type == "fixed_small":
        # diffusers: beta~_1 = 0 clamped to 1e-20; ddpm_lib: beta~_2 (clipped log variance). Neither is used.
        assert float(d._get_variance(0)) == 1e-20
        torch.testing.assert_close(ours_var, LINEAR.posterior_variance[2].expand_as(x), rtol=1e-14, atol=0)
    else:
        # fixed_large is beta_t at every k, k = 0 included, in both (diffusers: 1 - abar_t / abar_{t-1})
        k = torch.arange(T)
        theirs = torch.stack([d._get_variance(int(i)) for i in k])
        torch.testing.assert_close(theirs, LINEAR.betas[to_paper_t(k)], rtol=1e-11, atol=0)
        torch.testing.assert_close(ours_var, LINEAR.betas[1].expand_as(x), rtol=1e-14, atol=0)
    # k = 0 / t = 1 adds no noise: two different generators (diffusers), two different z (ours)
    out = torch.randn(x.shape, dtype=torch.float64, generator=torch.Generator().manual_seed(4))
    a = d.step(out, 0, x, generator=torch.Generator().manual_seed(5)).prev_sample
    b = d.step(out, 0, x, generator=torch.Generator().manual_seed(6)).prev_sample
    assert torch.equal(a, b)
    ours_a = D.p_sample(out, x, t1, noise=torch.randn_like(x))
    ours_b = D.p_sample(out, x, t1, noise=torch.randn_like(x))
    assert torch.equal(ours_a, ours_b)
    torch.testing.assert_close(a, ours_a, **F64)
    # ... while k = 1 / t = 2 does add noise, on both sides
    a1 = d.step(out, 1, x, generator=torch.Generator().manual_seed(5)).prev_sample
    b1 = d.step(out, 1, x, generator=torch.Generator().manual_seed(6)).prev_sample
    assert not torch.allclose(a1, b1)
    t2 = full_t(to_paper_t(1), 2)
    assert not torch.allclose(
        D.p_sample(out, x, t2, noise=torch.randn_like(x)), D.p_sample(out, x, t2, noise=torch.randn_like(x))
    )


# ---- 4. DDIMScheduler.step --------------------------------------------------------------------
def _ddim(spacing, clip, prediction, tables, steps=50):
    d = DDIMScheduler(
        num_train_timesteps=T,
        beta_schedule="linear",
        clip_sample=clip,
        prediction_type=prediction,
        set_alpha_to_one=True,
        timestep_spacing=spacing,
    )
    d.set_timesteps(steps)
    return use_float64_tables(d, LINEAR) if tables == "float64" else d


def ddim_prev_t(d, k: int) -> int:
    """ddpm_lib's t_prev for diffusers' DDIM step from k: k_prev = k - T // n mapped to k_prev + 1, and
    0 where k_prev < 0 (diffusers then uses final_alpha_cumprod = 1 = alpha_bar_0)."""
    k_prev = k - d.config.num_train_timesteps // d.num_inference_steps
    if k_prev >= 0:
        return to_paper_t(k_prev)
    assert d.config.set_alpha_to_one
    return 0


DDIM_CONFIGS = [
    (eta, spacing, clip, "epsilon")
    for eta in (0.0, 1.0)
    for spacing in ("leading", "trailing")
    for clip in (False, True)
] + [(0.0, "leading", True, "sample"), (1.0, "trailing", False, "sample")]


@pytest.mark.parametrize("eta,spacing,clip,prediction", DDIM_CONFIGS)
def test_ddim_step(eta, spacing, clip, prediction):
    """Each of the 50 steps of the schedule, against ddim_step(t = k + 1, t_prev) with the same noise.

    DDIMScheduler.step takes the noise itself (variance_noise), so no generator is involved. With
    clipping, use_clipped_model_output=True (ddpm_lib's convention, see test_ddim_clipping_convention).
    For eta = 1 the deterministic part (noise 0) and sigma (noise 1 minus noise 0) are compared too,
    and sigma against _get_variance and the closed form eta sqrt((1 - ab_prev)/(1 - ab)) sqrt(1 - ab/ab_prev).
    Tolerances: F32_RTOL_DDIM (float32 tables), F64 (float64 tables); see the module docstring.
    """
    scheds = {tables: _ddim(spacing, clip, prediction, tables) for tables in TABLES}
    D = dl.GaussianDiffusion(LINEAR, prediction="eps" if prediction == "epsilon" else "x0")
    g = torch.Generator().manual_seed(2)
    B = 2
    worst = {}
    ks = [int(k) for k in scheds["float32"].timesteps]
    assert (
        len(ks) == 50
        and ks[0] == (980 if spacing == "leading" else 999)
        and ks[-1] == (0 if spacing == "leading" else 19)
    )
    kw = dict(eta=eta, use_clipped_model_output=clip)
    for k in ks:
        t, tp = to_paper_t(k), ddim_prev_t(scheds["float32"], k)
        tt = full_t(t, B)
        x = 1.5 * torch.randn(B, 2, 4, 4, generator=g, dtype=torch.float64)
        out = (1.5 if prediction == "sample" else 1.0) * torch.randn(
            x.shape, generator=g, dtype=torch.float64
        )
        z = torch.randn(x.shape, generator=g, dtype=torch.float64)
        zero, one = torch.zeros_like(x), torch.ones_like(x)
        ours = {
            "prev_sample": D.ddim_step(out, x, tt, tp, eta=eta, noise=z, clip_x0=clip),
            "pred_x0": D.p_mean_variance(out, x, tt, clip_x0=clip)["pred_x0"],
        }
        if eta > 0:
            ours["deterministic"] = D.ddim_step(out, x, tt, tp, eta=eta, noise=zero, clip_x0=clip)
            ours["sigma"] = (
                D.ddim_step(out, x, tt, tp, eta=eta, noise=one, clip_x0=clip) - ours["deterministic"]
            )
            ab, abp = LINEAR.alpha_bars[t], LINEAR.alpha_bars[tp]
            sigma = eta * math.sqrt((1 - abp) / (1 - ab)) * math.sqrt(1 - ab / abp)
            torch.testing.assert_close(ours["sigma"], torch.full_like(x, sigma), rtol=1e-12, atol=1e-14)
        if clip and k == ks[0]:
            assert (ours["pred_x0"].abs() == 1).any()  # clipping did happen
        for tables, d in scheds.items():
            res = d.step(out, k, x, variance_noise=z if eta > 0 else None, **kw)
            pairs = {"prev_sample": res.prev_sample, "pred_x0": res.pred_original_sample}
            if eta > 0:
                pairs["deterministic"] = d.step(out, k, x, variance_noise=zero, **kw).prev_sample
                pairs["sigma"] = (
                    d.step(out, k, x, variance_noise=one, **kw).prev_sample - pairs["deterministic"]
                )
                k_prev = k - T // d.num_inference_steps
                pairs["sigma (_get_variance)"] = eta * d._get_variance(k, k_prev).double().sqrt() * one
                ours["sigma (_get_variance)"] = ours["sigma"]
            for name, a in pairs.items():
                err = check(f"{name} at k={k} ({tables} tables)", a, ours[name], tables, F32_RTOL_DDIM)
                worst[tables, name] = max(worst.get((tables, name), (0.0, 0.0)), err)
    print_worst(f"DDIM step eta={eta} {spacing} clip={clip} {prediction}", worst)


@pytest.mark.parametrize("n", [7, 10, 30, 50, 333])
def test_ddim_grid_is_diffusers_trailing(n):
    """ddim_sample(steps=n)'s default grid (T, ..., evenly spaced, rounded) is diffusers' "trailing"
    spacing mapped k -> k + 1. Where n does not divide T, diffusers' step from k goes to
    k - T // n, which is not always the next point of its own grid (ddpm_lib's ddim_sample goes to the
    next grid point), so whole loops coincide only when n divides T."""
    seen = []

    def recorder(x, t):  # records the timesteps the network is called at
        seen.append(int(t[0]))
        return torch.zeros_like(x)

    dl.ddim_sample(
        recorder,
        dl.GaussianDiffusion(LINEAR),
        (1, 1),
        steps=n,
        progress=False,
        noise=torch.zeros(1, 1, dtype=torch.float64),
    )
    d = DDIMScheduler(num_train_timesteps=T, timestep_spacing="trailing")
    d.set_timesteps(n)
    ks = [int(k) for k in d.timesteps]
    assert seen == [to_paper_t(k) for k in ks]
    jumps = [k - T // n for k in ks]
    off_grid = sum(j != nxt for j, nxt in zip(jumps[:-1], ks[1:]))
    assert (off_grid == 0) == (T % n == 0)


def test_ddim_clipping_convention():
    """With clip_sample and the default use_clipped_model_output=False, diffusers keeps the raw eps:
    not ddpm_lib's convention (eps re-derived from the clipped x0), and the results differ."""
    d = _ddim("leading", True, "epsilon", "float64")
    D = dl.GaussianDiffusion(LINEAR)
    g = torch.Generator().manual_seed(5)
    x = 1.5 * torch.randn(4, 2, 4, 4, generator=g, dtype=torch.float64)
    out = torch.randn(x.shape, generator=g, dtype=torch.float64)
    k = 500
    ours = D.ddim_step(out, x, full_t(to_paper_t(k), 4), ddim_prev_t(d, k), clip_x0=True)
    raw = d.step(out, k, x, use_clipped_model_output=False).prev_sample
    fixed = d.step(out, k, x, use_clipped_model_output=True).prev_sample
    torch.testing.assert_close(fixed, ours, **F64)
    assert (raw - ours).abs().max() > 1e-2


@pytest.mark.parametrize("spacing", ["leading", "trailing"])
@pytest.mark.parametrize("eta", [0.0, 1.0])
def test_ddim_sampling_loop(eta, spacing):
    """A whole 50-step DDIM loop: diffusers' loop vs ddim_sample(timesteps=[k + 1 ...]) from the same x_T.

    The model is eps_model_k in diffusers' loop and ours_model (the same function of t - 1) in ours.
    For eta = 1 both draw their noise from generators seeded alike, one torch.randn(shape) per step in
    the same order (the last step draws too, with sigma = 0, on both sides). float32 tables: the loop
    only carries each step's error (x_T -> x_0 contracts), so F32_RTOL_DDIM holds for the result.
    """
    shape = (4, 2, 4, 4)
    x_T = torch.randn(shape, generator=torch.Generator().manual_seed(7), dtype=torch.float64)
    D = dl.GaussianDiffusion(LINEAR)
    d32 = _ddim(spacing, False, "epsilon", "float32")
    ts = sorted(to_paper_t(int(k)) for k in d32.timesteps)
    ours = dl.ddim_sample(
        ours_model,
        D,
        shape,
        eta=eta,
        noise=x_T,
        timesteps=ts,
        progress=False,
        generator=torch.Generator().manual_seed(8),
    )
    assert ours.abs().max() < 10 and ours.std() > 0.1  # a sane sample, not a collapsed or exploded one
    for tables in TABLES:
        d = d32 if tables == "float32" else _ddim(spacing, False, "epsilon", tables)
        g = torch.Generator().manual_seed(8)
        x = x_T
        for k in d.timesteps:
            x = d.step(eps_model_k(x, k), k, x, eta=eta, generator=g if eta > 0 else None).prev_sample
        report(f"DDIM loop 50 steps eta={eta} {spacing} ({tables} tables)", x, ours)
        check(f"DDIM loop eta={eta} {spacing} ({tables} tables)", x, ours, tables, F32_RTOL_DDIM)


# ---- 5. the ancestral sampling loop ---------------------------------------------------------
@pytest.mark.parametrize("variance_type,clip", [("fixed_small", False), ("fixed_large", True)])
def test_ddpm_sampling_loop(variance_type, clip):
    """1000 steps of DDPMScheduler vs GaussianDiffusion.sample from the same x_T with the same noise.

    diffusers' step draws torch.randn(shape, generator=g, dtype=float64) at every k > 0; sample()
    draws the same at every t = T..1 (the draw at t = 1 is unused), so generators seeded alike give
    the same z at every step: no hook into either library is needed. float32 tables: each step's
    error (up to F32_RTOL_DDPM near t = 1, much smaller elsewhere) is not amplified by the reverse chain.
    """
    shape = (4, 2, 4, 4)
    x_T = torch.randn(shape, generator=torch.Generator().manual_seed(9), dtype=torch.float64)
    D = dl.GaussianDiffusion(LINEAR, variance=variance_type)
    ours = D.sample(
        ours_model,
        shape,
        generator=torch.Generator().manual_seed(10),
        noise=x_T,
        clip_x0=clip,
        progress=False,
    )
    assert ours.abs().max() < 10 and ours.std() > 0.1
    for tables in TABLES:
        d = _ddpm(variance_type, clip, "epsilon", tables)
        g = torch.Generator().manual_seed(10)
        x = x_T
        for k in d.timesteps:  # 999, ..., 0
            x = d.step(eps_model_k(x, k), k, x, generator=g).prev_sample
        report(f"DDPM loop 1000 steps {variance_type} clip={clip} ({tables} tables)", x, ours)
        check(f"DDPM loop {variance_type} ({tables} tables)", x, ours, tables, F32_RTOL_DDPM)
