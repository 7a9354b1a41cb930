import torch
import pytest

import ddpm_lib as dl
from analytic import OptimalGaussianEps

S = dl.NoiseSchedule.linear(1000)
D = dl.GaussianDiffusion(S, prediction="eps", variance="fixed_small")
M = OptimalGaussianEps(S, 0.3, 0.7)


def test_ddim_eta0_inverts():
    """DDIM with eta = 0 is invertible up to discretization: encode x_0 to x_T, decode, get x_0 back.

    Encoding reads eps at x_t, decoding at x_{t_next}: each step is off by O(h^2), so the round
    trip error is O(1/steps) (measured: 0.049 at 100 steps, 0.0053 at 1000).
    """
    x0 = torch.tensor([[0.5, -0.4], [1.0, 0.1], [-0.9, 0.3]], dtype=torch.float64)
    errs = []
    for n in [100, 1000]:
        xT = dl.ddim_encode(M, D, x0, steps=n)
        back = dl.ddim_sample(M, D, x0.shape, steps=n, noise=xT, progress=False)
        errs.append(float((back - x0).abs().max()))
        assert (xT - x0).abs().max() > 0.1  # it did move
    assert errs[1] < 0.01
    assert 6 < errs[0] / errs[1] < 14  # first order: ten times the steps, a tenth of the error


def test_ddim_and_respaced_sampling_recover_gaussian_data():
    """With few steps, beta~_t under-disperses and beta_t over-disperses (data std 0.7 < 1, DDPM Sec. 3.2
    calls them the two extreme choices); with more steps both converge to the data's std."""
    g = torch.Generator().manual_seed(0)
    large = dl.GaussianDiffusion(S, prediction="eps", variance="fixed_large")
    small50 = dl.sample_respaced(M, D, 50, (20_000, 1), generator=g, progress=False)
    large50 = dl.sample_respaced(M, large, 50, (20_000, 1), generator=g, progress=False)
    assert float(small50.std()) < 0.69 < 0.70 < float(large50.std()) < 0.73
    y, traj = dl.sample_respaced(M, D, 250, (20_000, 1), generator=g, progress=False, record=[250, 0])
    assert abs(float(y.mean()) - 0.3) < 0.02 and abs(float(y.std()) - 0.7) < 0.02
    assert float(y.std()) > float(small50.std())
    assert traj.timesteps.tolist() == [1000, 0] and traj.ts.tolist() == [250, 0]
    x = dl.ddim_sample(M, D, (20_000, 1), steps=250, eta=0.0, generator=g, progress=False)
    assert abs(float(x.mean()) - 0.3) < 0.02 and abs(float(x.std()) - 0.7) < 0.02


def test_ddim_trajectory_records_pred_x0():
    x, traj = dl.ddim_sample(
        M,
        D,
        (3, 2),
        steps=10,
        generator=torch.Generator().manual_seed(0),
        progress=False,
        record=[1000, 500, 0],
    )
    assert traj.ts.tolist() == [1000, 500, 0]
    assert torch.isfinite(traj.pred_x0[:2]).all() and torch.equal(traj.x_t[-1], x)


def test_inpainting_keeps_known_pixels_and_fills_the_rest():
    steps = D.respace(100)
    x_known = torch.tensor([[0.9, -0.8]]).repeat(4000, 1)
    mask = torch.tensor([1.0, 0.0])
    out, traj = dl.inpaint(
        M,
        steps,
        x_known,
        mask,
        generator=torch.Generator().manual_seed(0),
        progress=False,
        record=[100, 50, 0],
    )
    assert torch.equal(out[:, 0], x_known[:, 0])
    # independent coordinates: the unknown one is a fresh draw from the data distribution N(0.3, 0.7^2)
    assert abs(float(out[:, 1].mean()) - 0.3) < 0.04 and abs(float(out[:, 1].std()) - 0.7) < 0.04
    assert traj.x_t.shape == (3, 4000, 2)
    with pytest.raises(ValueError, match="mask must hold only 0"):
        dl.inpaint(M, steps, x_known[:2], torch.tensor([0.5, 1.0]), progress=False)
    with pytest.raises(ValueError, match="does not broadcast"):
        dl.inpaint(M, steps, x_known[:2], torch.ones(3), progress=False)


def test_reconstruction_shares_more_with_the_original_at_small_t():
    steps = D.respace(100)
    x0 = torch.full((2000, 1), 1.5)
    errs = []
    for t in [5, 30, 100]:
        r = dl.reconstruct(M, steps, x0, t, generator=torch.Generator().manual_seed(t), progress=False)
        errs.append(float((r - x0).abs().mean()))
    assert errs[0] < errs[1] < errs[2]
    with pytest.raises(ValueError, match=r"t must be in 1..T = 1..100"):
        dl.reconstruct(M, steps, x0, 0)


def test_interpolation_endpoints_and_shape():
    steps = D.respace(50)
    a, b = torch.full((3, 2), -1.0), torch.full((3, 2), 1.0)
    g = torch.Generator().manual_seed(0)
    out = dl.interpolate(M, steps, a, b, [0.0, 0.5, 1.0], t=10, generator=g, progress=False)
    assert out.shape == (3, 3, 2)
    assert float(out[0].mean()) < float(out[1].mean()) < float(out[2].mean())
    with pytest.raises(ValueError, match="lambdas must be"):
        dl.interpolate(M, steps, a, b, [1.5], t=10, progress=False)


def test_counting_model_counts_network_evaluations():
    """CountingModel: images seen = batch x steps for ancestral sampling; the output is the model's."""
    d = dl.GaussianDiffusion(dl.NoiseSchedule.linear(T=50, warn=False))
    model = lambda x, t: 0.5 * x  # noqa: E731
    counter = dl.CountingModel(model)
    x = torch.randn(3, 2)
    assert torch.equal(counter(x, torch.ones(3, dtype=torch.long)), model(x, None)) and counter.images == 3
    counter = dl.CountingModel(model)
    dl.sample_respaced(counter, d, 10, (4, 2), generator=torch.Generator().manual_seed(0), progress=False)
    assert counter.images == 4 * 10


# ---- a recorded trajectory: the network's eps from x_t and the predicted x_0 (chapter 10) ----------


def _toy_eps(x, t):
    """A deterministic stand-in for eps_theta: shrinks x_t by a t-dependent factor."""
    return x * (0.3 + 0.5 * (t.float() / 1000).view(-1, *([1] * (x.ndim - 1))))


@pytest.fixture(scope="module")
def toy_trajectory():
    _, traj = D.respace(100).sample(
        _toy_eps,
        (3, 1, 6, 6),
        generator=torch.Generator().manual_seed(0),
        progress=False,
        record=list(range(0, 101, 5)) + [1, 2, 3],
    )
    return traj


def test_predicted_eps_recovers_the_network_output(toy_trajectory):
    from ddpm_lib.sampling import predicted_eps

    traj = toy_trajectory
    for schedule in (S, D, None):  # the schedule, its diffusion, or the default (DDPM's linear, T = 1000)
        eps = predicted_eps(traj, schedule)
        assert eps.shape == traj.x_t.shape and eps.dtype == torch.float32
        for k, t in enumerate(traj.timesteps.tolist()):
            if t == 0:
                assert torch.isnan(eps[k]).all()
                continue
            want = _toy_eps(traj.x_t[k], torch.full((3,), t))
            assert (eps[k] - want).abs().max() < 1e-3 * (1 + want.abs().max()), t


def test_predicted_eps_is_eq_4_solved_for_eps():
    # x_t = sqrt(abar_t) x_0 + sqrt(1 - abar_t) eps, exactly, in float64: eps comes back to rounding
    x0 = torch.randn(2, 4, 3, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    eps = torch.randn(2, 4, 3, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    ts = torch.tensor([700, 3])
    ab = S.alpha_bars[ts].view(2, 1, 1)
    x_t = ab.sqrt() * x0 + (1 - ab).sqrt() * eps
    from ddpm_lib.sampling import predicted_eps

    got = predicted_eps(dl.Trajectory(ts, x_t, x0), S)
    assert (got.double() - eps).abs().max() < 1e-6


def test_recorded_trajectory_checks(toy_trajectory):
    from ddpm_lib.sampling import check_trajectory, predicted_eps, schedule_of

    traj = toy_trajectory
    assert torch.equal(check_trajectory(traj), traj.timesteps)
    assert schedule_of(D) is S and schedule_of(S) is S and schedule_of(None).T == 1000
    with pytest.raises(ValueError, match="outside 0..T"):
        predicted_eps(traj, dl.NoiseSchedule.linear(T=100, warn=False))
    with pytest.raises(TypeError, match="NoiseSchedule or a GaussianDiffusion"):
        predicted_eps(traj, "linear")
    with pytest.raises(TypeError, match=r"pair \(Trajectory, metadata\).*load_trajectory\(\.\.\.\)\[0\]"):
        predicted_eps((traj, {"seed": 0}), S)
    with pytest.raises(TypeError, match="Trajectory"):
        check_trajectory(traj.x_t)
    with pytest.raises(ValueError, match="pred_x0 must have x_t's shape"):
        check_trajectory(dl.Trajectory(traj.ts, traj.x_t, traj.pred_x0[:, :2], traj.timesteps))
    with pytest.raises(ValueError, match="states but 2 timesteps"):
        check_trajectory(dl.Trajectory(traj.ts[:2], traj.x_t, traj.pred_x0))
    same = torch.zeros_like(traj.ts)
    with pytest.raises(ValueError, match="distinct"):
        check_trajectory(dl.Trajectory(same, traj.x_t, traj.pred_x0))


@pytest.mark.slow
def test_resampled_inpainting_brings_the_filled_region_to_the_true_conditional():
    """RePaint's resampling (Lugmayr et al. 2022, Alg. 1) on a correlated 2-D Gaussian, where the exact
    eps-model and the true conditional x_2 | x_1 ~ N(rho x_1, 1 - rho^2) are known: replacement alone
    lags (its mean falls short of rho x_1); U = 10 passes per step close most of the gap."""
    s = dl.NoiseSchedule.linear(T=50, beta_start=1e-3, beta_end=0.2)
    d = dl.GaussianDiffusion(s, prediction="eps", variance="fixed_small", decoder="gaussian")
    rho, x1, n = 0.9, 1.5, 4000
    cov = torch.tensor([[1.0, rho], [rho, 1.0]], dtype=torch.float64)

    def exact_eps(x, t):  # E[eps | x_t] = sqrt(1 - abar) (abar C + (1 - abar) I)^-1 x_t
        ab = s.alpha_bars[t].view(-1, 1, 1)
        m = ab * cov + (1 - ab) * torch.eye(2, dtype=torch.float64)
        return ((1 - ab).sqrt() * torch.linalg.solve(m, x.unsqueeze(-1))).squeeze(-1)

    known = torch.zeros(n, 2, dtype=torch.float64)
    known[:, 0] = x1
    mask = torch.tensor([1.0, 0.0], dtype=torch.float64)
    gap = {}
    for U in (1, 10):
        out = dl.inpaint(
            exact_eps, d, known, mask, torch.Generator().manual_seed(0), progress=False, resample=U
        )
        assert torch.equal(out[:, 0], known[:, 0])
        gap[U] = abs(out[:, 1].mean().item() - rho * x1)  # standard error of the mean: about 0.007
    assert gap[1] > 0.3 and gap[10] < 0.1, gap
    with pytest.raises(ValueError, match="resample must be a positive integer"):
        dl.inpaint(exact_eps, d, known[:2], mask, resample=0, progress=False)
    with pytest.raises(ValueError, match="record is not available with resample > 1"):
        dl.inpaint(exact_eps, d, known[:2], mask, resample=2, record=[0], progress=False)


def test_slerp_keeps_the_norm_of_orthogonal_noises_and_its_ends():
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(4, 1, 28, 28, generator=g), torch.randn(4, 1, 28, 28, generator=g)
    assert torch.allclose(dl.sampling.slerp(a, b, 0.0), a) and torch.allclose(dl.sampling.slerp(a, b, 1.0), b)
    mid = dl.sampling.slerp(a, b, 0.5)
    ratio = mid.flatten(1).norm(dim=1) / a.flatten(1).norm(dim=1)
    assert ((ratio - 1).abs() < 0.1).all()  # nearly orthogonal, equal norms: the norm is kept
    lin = 0.5 * (a + b)
    assert (lin.flatten(1).norm(dim=1) / a.flatten(1).norm(dim=1) < 0.8).all()  # the linear mix shrinks
    # an exact case: orthogonal unit vectors, slerp = cos(lam pi/2) a + sin(lam pi/2) b
    e1, e2 = torch.tensor([[1.0, 0.0]]), torch.tensor([[0.0, 1.0]])
    out = dl.sampling.slerp(e1, e2, 1 / 3)
    assert torch.allclose(out, torch.tensor([[3**0.5 / 2, 0.5]]), atol=1e-6)
    assert torch.allclose(dl.sampling.slerp(e1, 2 * e1, 0.25), 1.25 * e1)  # parallel: the linear mix
    with pytest.raises(ValueError, match="lam must be in"):
        dl.sampling.slerp(a, b, 1.5)
    with pytest.raises(ValueError, match="same shape"):
        dl.sampling.slerp(a, b[:2], 0.5)


def test_interpolate_slerp_shares_latents_and_noise_with_linear():
    steps = D.respace(50)
    a, b = torch.full((3, 2), -1.0), torch.full((3, 2), 1.0)

    def run(mix):
        g = torch.Generator().manual_seed(0)
        return dl.interpolate(M, steps, a, b, [0.0, 0.5, 1.0], t=10, generator=g, progress=False, mix=mix)

    lin, sph = run("linear"), run("slerp")
    assert torch.equal(lin[0], sph[0]) and torch.equal(lin[2], sph[2])  # the same ends: same x_t and noise
    assert not torch.equal(lin[1], sph[1])
    with pytest.raises(ValueError, match="mix must be"):
        run("cubic")
