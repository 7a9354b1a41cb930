"""ddpm_lib.ablations and ddpm-ablations (DDPM Table 2 at small scale, chapter 11) end to end on tiny
settings, the shipped tables' registration, the loss identities the chapter relies on, and the
chapter's exercise checkers (mu_mse_weight, optimal_variance)."""

import json
import shutil
import subprocess
import sys
import math
from pathlib import Path

import pytest
import torch

import ddpm_lib as dl
from ddpm_lib import ablations as abl
from ddpm_lib.cli import ablations as cli
from ddpm_lib.course import checks
from ddpm_lib.data import DataIntegrityError

ROOT = Path(__file__).resolve().parent.parent


# a short chain (T = 20) keeps every evaluation cheap; the warning that it does not reach noise is expected
TINY = ["--T", "20", "--bpd-n", "40", "--sample-n", "40", "--curve-n", "20", "--window", "10"]
pytestmark = pytest.mark.filterwarnings("ignore:schedule 'linear' does not reach noise")


def _run(tmp_path, *argv):
    out = tmp_path / "t.json"
    assert cli.main([*argv, *TINY, "--out", str(out)]) == 0
    return json.loads(out.read_text()), out


# ---- the command ---------------------------------------------------------------------------------------


def test_swiss_roll_table_end_to_end(tmp_path):
    table, out = _run(
        tmp_path,
        "--steps",
        "20",
        "--seeds",
        "0,1",
        "--curve-every",
        "10",
        "--rows",
        "eps-simple-fixed,eps-simple-small,mean-vlb-learned",
    )
    assert table["format"] == 1 and table["complete"] is True and table["dataset"] == "swiss_roll"
    assert table["command"].startswith("ddpm-ablations --steps 20")
    assert table["steps"] == 20 and table["seeds"] == [0, 1] and table["library_version"] == dl.__version__
    tc = table["train_config"]
    assert (
        tc["T"] == 20 and tc["model"] == "mlp" and tc["lr"] == 2e-3 and tc["batch_size"] == 256
    )  # swiss_roll.toml
    assert [r["id"] for r in table["rows"]] == ["mean-vlb-learned", "eps-simple-fixed", "eps-simple-small"]
    rows = {r["id"]: r for r in table["rows"]}
    for r in rows.values():
        assert len(r["runs"]) == 2 and r["summary"]["n_runs"] == 2
        for run in r["runs"]:
            assert [p[0] for p in run["bpd_curve"]] == [10, 20]
            assert len(run["curve"]["step"]) == 2 and run["curve"]["step"][-1] == 20
            assert set(run["bpd_terms"]) == {"L_T", "L_t_minus_1", "L_0"}
            if run["diverged_at"] is None:
                parts = sum(run["bpd_terms"].values())
                assert abs(parts - run["bpd"]) < 1e-3 * max(1.0, abs(run["bpd"]))
        assert set(table["samples"][r["id"]]) == {"0", "1"}
    # eps-simple-small scores the networks of eps-simple-fixed: same training, other variance
    a, b = rows["eps-simple-fixed"]["runs"][0], rows["eps-simple-small"]["runs"][0]
    assert a["final_loss"] == b["final_loss"] and a["curve"] == b["curve"]
    assert a["bpd"] != b["bpd"]
    assert rows["eps-simple-small"]["trained_as"] == "eps-simple-fixed"
    assert rows["mean-vlb-learned"]["paper"] == {"IS": "7.28 ± 0.10", "FID": "23.69"}
    md = out.with_suffix(".md").read_text()
    assert "\\|\\|eps - eps_theta\\|\\|" in md and table["command"] in md


def test_a_shorter_run_reproduces_the_start_of_a_longer_one(tmp_path):
    """The chapter's live check: the same command with fewer steps retraces the stored run exactly."""
    short, _ = _run(
        tmp_path, "--steps", "20", "--seeds", "0", "--rows", "eps-vlb-fixed", "--curve-every", "10"
    )
    long, _ = _run(
        tmp_path, "--steps", "30", "--seeds", "0", "--rows", "eps-vlb-fixed", "--curve-every", "10"
    )
    s, l_ = short["rows"][0]["runs"][0], long["rows"][0]["runs"][0]
    assert s["curve"]["loss_mean"] == l_["curve"]["loss_mean"][:2]
    assert s["bpd_curve"] == l_["bpd_curve"][:2]


@pytest.mark.slow
def test_parallel_workers_give_the_same_numbers(tmp_path):
    argv = ["--steps", "10", "--seeds", "0,1", "--rows", "eps-vlb-learned", "--curve-every", "5", *TINY]
    assert cli.main([*argv, "--workers", "2", "--out", str(tmp_path / "w2.json")]) == 0
    assert cli.main([*argv, "--out", str(tmp_path / "w1.json")]) == 0
    a, b = (json.loads((tmp_path / f).read_text()) for f in ("w1.json", "w2.json"))
    strip = lambda t: [
        [{k: v for k, v in run.items() if k != "seconds"} for run in r["runs"]] for r in t["rows"]
    ]  # noqa: E731
    assert strip(a) == strip(b) and a["samples"] == b["samples"]
    assert [run["seed"] for run in b["rows"][0]["runs"]] == [0, 1]


@pytest.mark.slow
def test_fashion_mnist_code_path(tmp_path):
    """--dataset fashion_mnist on the CPU with tiny settings: a learned-variance U-Net has 2 output channels."""
    table, _ = _run(
        tmp_path,
        "--dataset",
        "fashion_mnist",
        "--preset",
        "tiny",
        "--steps",
        "2",
        "--fmnist-split",
        "train-10k",
        "--rows",
        "eps-vlb-learned",
        "--batch-size",
        "4",
        "--curve-every",
        "0",
        "--reference-n",
        "40",
        "--sample-steps",
        "5",
    )
    assert table["dataset"] == "fashion_mnist" and table["train_config"]["model"] == "unet-fmnist-tiny"
    run = table["rows"][0]["runs"][0]
    assert run["steps_done"] == 2 and math.isfinite(run["bpd"]) and run["score"] is not None
    assert table["eval"]["sample_metric"] == "fcd" and table["eval"]["reference_n"] == 40
    assert len(table["samples"]["eps-vlb-learned"]["0"][0]) == 28 * 28


def test_bad_arguments_are_named(capsys):
    with pytest.raises(SystemExit):
        cli.main(["--rows", "eps-simple"])
    assert "unknown row id(s) eps-simple" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        cli.main(["--seeds", "a,b"])
    assert "--seeds must be comma-separated integers" in capsys.readouterr().err


def test_out_folder_gives_dataset_file_name():
    a = cli.parse_args(["--out", "some/folder"])
    assert a.out_path == Path("some/folder/swiss_roll_table2.json")
    assert cli.parse_args([]).out_path == ROOT / "data" / "ablations" / "swiss_roll_table2.json"


def test_spikes_and_history_summary():
    base = [1.0 + 0.01 * (i % 7) for i in range(300)]
    base[150] = 50.0
    base[250] = float("nan")
    assert abl.count_spikes(base) == 2
    assert abl.count_spikes([1.0] * 300) == 0
    s = abl.summarize_history(base, [0.5] * 290 + [2.0] * 10, grad_clip=1.0, window=100)
    assert s["loss_spikes"] == 2 and s["clipped_frac"] == pytest.approx(10 / 300, abs=1e-4)
    assert s["curve"]["step"] == [100, 200, 300] and s["curve"]["loss_max"][1] == 50.0
    assert s["curve"]["loss_mean"][2] is None  # a window with a NaN has no mean


def test_stored_table_follows_the_schema():
    path = ROOT / "data" / "ablations" / "swiss_roll_table2.json"
    if not path.is_file():
        pytest.skip("the swiss-roll table has not been made yet")
    t = json.loads(path.read_text())
    assert t["format"] == 1 and t["complete"] and t["command"].startswith("ddpm-ablations")
    assert "--resume" not in t["command"]  # a table records the command that makes it from scratch
    assert {r["id"] for r in t["rows"]} == set(abl.ROWS)
    for r in t["rows"]:
        assert len(r["runs"]) == len(t["seeds"]) and r["summary"]["n_runs"] == len(t["seeds"])
        assert all(run["w1_ratio"] is not None for run in r["runs"] if run["diverged_at"] is None)


@pytest.mark.parametrize("name", ["swiss_roll_table2", "fashion_mnist_table2"])
def test_stored_markdown_is_made_from_its_json(name):
    """Each stored .md is what to_markdown makes of its .json, rows left unmeasured and why included."""
    path = ROOT / "data" / "ablations" / f"{name}.json"
    if not path.is_file():
        pytest.skip(f"{path.name} has not been made yet")
    t = json.loads(path.read_text())
    md = abl.to_markdown(t)
    assert path.with_suffix(".md").read_text() == md
    if t.get("not_measured"):
        assert (
            f"Not measured: {', '.join(t['not_measured']['rows'])}." in md and t["not_measured"]["why"] in md
        )


@pytest.fixture
def data_copy(tmp_path, monkeypatch):
    """A copy of the shipped tables and the registry as the data folder (DDPM_DATA_DIR)."""
    root = tmp_path / "data"
    shutil.copytree(ROOT / "data" / "ablations", root / "ablations")
    shutil.copy(ROOT / "data" / "registry.json", root / "registry.json")
    monkeypatch.setenv("DDPM_DATA_DIR", str(root))
    return root


@pytest.mark.parametrize("dataset", abl.DATASETS)
def test_shipped_tables_are_registered_and_an_edited_copy_is_refused(data_copy, dataset):
    table = abl.load_table(dataset)  # verified by sha256 against data/registry.json
    assert table["dataset"] == dataset and [r["id"] for r in table["rows"]]
    path = data_copy / "ablations" / f"{dataset}_table2.json"
    path.write_text(path.read_text().replace('"n_runs": 1', '"n_runs": 2', 1))  # still valid JSON
    with pytest.raises(DataIntegrityError, match=f"sha256 mismatch for 'ablations/{dataset}_table2.json'"):
        abl.load_table(dataset)
    assert abl.load_table(dataset, verify=False)["dataset"] == dataset


def test_a_table_written_in_the_data_folder_is_registered(data_copy):
    from ddpm_lib.data import registry_entry

    out = data_copy / "ablations" / "new_table2.json"
    table, _ = _run(data_copy.parent, "--rows", "eps-simple-fixed", "--steps", "3", "--seeds", "0")
    abl.write_table(table, out)
    entry = registry_entry("ablations/new_table2.json")
    assert entry["size"] == out.stat().st_size and entry["source"] == table["command"]
    assert registry_entry("ablations/new_table2.md")["size"] == out.with_suffix(".md").stat().st_size
    assert abl.load_table(str(out))["rows"][0]["id"] == "eps-simple-fixed"


def test_load_table_names_what_is_missing_or_wrong(tmp_path):
    with pytest.raises(FileNotFoundError, match="make it with: ddpm-ablations"):
        abl.load_table(str(tmp_path / "none.json"))
    bad = tmp_path / "bad.json"
    bad.write_text('{"format": 7}')
    with pytest.raises(DataIntegrityError, match="not an ablation table of format 1"):
        abl.load_table(str(bad))


@pytest.mark.slow
def test_the_script_the_stored_tables_name_is_the_same_command():
    out = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "ablations.py"), "--rows", "nope"],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert out.returncode == 2 and "usage: python scripts/ablations.py" in out.stderr
    assert "unknown row id(s) nope" in out.stderr and "Traceback" not in out.stderr


# ---- the identities the chapter checks (DDPM Eqs. 8, 11, 12) ------------------------------------------------


def _nets():
    s = dl.NoiseSchedule.linear(T=50, beta_start=1e-4, beta_end=0.2)
    torch.manual_seed(0)
    eps_net = dl.MLP(2, hidden=32, layers=2).double()
    d_eps = dl.GaussianDiffusion(s, "eps", "fixed_large", loss="simple", decoder="gaussian")
    mean_net = lambda x, t: d_eps.mean_from_eps(x, t, eps_net(x, t))  # noqa: E731
    g = torch.Generator().manual_seed(1)
    x0 = dl.swiss_roll(64, generator=g).double()
    t = torch.randint(2, s.T + 1, (64,), generator=g)
    noise = torch.randn(64, 2, generator=g, dtype=torch.float64)
    return s, eps_net, mean_net, x0, t, noise


def test_unweighted_mean_loss_is_a_weighted_eps_loss():
    s, eps_net, mean_net, x0, t, noise = _nets()
    d_eps = dl.GaussianDiffusion(s, "eps", "fixed_large", loss="simple", decoder="gaussian")
    d_mu = dl.GaussianDiffusion(s, "mean", "fixed_large", loss="simple", decoder="gaussian")
    l_eps = d_eps.training_losses(eps_net, x0, t, noise)["loss"]
    l_mu = d_mu.training_losses(mean_net, x0, t, noise)["loss"]
    w = s.eps_coef[t] ** 2 / s.alphas[t]
    torch.testing.assert_close(l_mu, w * l_eps, rtol=1e-10, atol=0)


def test_the_bound_is_lambda_weighted_eps_loss_for_both_predictions():
    s, eps_net, mean_net, x0, t, noise = _nets()
    d_eps = dl.GaussianDiffusion(s, "eps", "fixed_large", loss="vlb", decoder="gaussian")
    d_mu = dl.GaussianDiffusion(s, "mean", "fixed_large", loss="vlb", decoder="gaussian")
    terms = d_eps.training_losses(eps_net, x0, t, noise)
    # Eq. 8's constant C: the KL between N(., beta~_t) and N(., sigma_t^2) with equal means, per dimension
    C = dl.normal_kl(torch.zeros(()), s.posterior_log_variance_clipped[t], torch.zeros(()), s.betas[t].log())
    sq = ((noise - eps_net(d_eps.q_sample(x0, t, noise), t)) ** 2).sum(1)
    expected = s.T * (d_eps.eps_mse_weight(t) * sq + 2 * C) / (2 * math.log(2.0))
    torch.testing.assert_close(terms["loss"], expected, rtol=1e-8, atol=0)
    torch.testing.assert_close(
        d_mu.training_losses(mean_net, x0, t, noise)["loss"], terms["loss"], rtol=1e-8, atol=0
    )


# ---- the exercise checkers ------------------------------------------------------------------------------------


def test_mu_mse_weight_checker():
    ok = lambda t, s: s.betas[t] ** 2 / (s.alphas[t] * (1 - s.alpha_bars[t]))  # noqa: E731
    assert checks.check("mu_mse_weight", ok, verbose=False)
    mistakes = {
        "square beta_t too": lambda t, s: s.betas[t] / (s.alphas[t] * (1 - s.alpha_bars[t])),
        "one-step alpha_t, not abar_t": lambda t, s: (
            s.betas[t] ** 2 / (s.alpha_bars[t] * (1 - s.alpha_bars[t]))
        ),
        "the bound's weight lambda_t": lambda t, s: s.betas[t] / (2 * s.alphas[t] * (1 - s.alpha_bars[t])),
        "square it": lambda t, s: s.betas[t] / (s.alphas[t] * (1 - s.alpha_bars[t])).sqrt(),
        "shifted by one": lambda t, s: ok((t - 1).clamp(min=1), s),
    }
    for hint, fn in mistakes.items():
        r = checks.check("mu_mse_weight", fn, verbose=False)
        assert not r and hint in r.message, (hint, r.message)
    r = checks.check("mu_mse_weight", lambda t, s: None, verbose=False)
    assert not r and "forget `return`" in r.message


def test_optimal_variance_checker():
    assert checks.check("optimal_variance", lambda m, v, mp: v + (m - mp) ** 2, verbose=False)
    mistakes = {
        "ignores the model's mean error": lambda m, v, mp: v,
        "own variance var_q counts too": lambda m, v, mp: (m - mp) ** 2,
        "that is a standard deviation": lambda m, v, mp: (v + (m - mp) ** 2).sqrt(),
        "add variances, not standard deviations": lambda m, v, mp: v.sqrt() + (m - mp).abs(),
        "widens the best Gaussian": lambda m, v, mp: (v - (m - mp) ** 2).abs(),
    }
    for hint, fn in mistakes.items():
        r = checks.check("optimal_variance", fn, verbose=False)
        assert not r and hint in r.message, (hint, r.message)


def test_optimal_variance_minimizes_the_library_kl():
    """The checker's closed form is the minimizer of ddpm_lib.normal_kl over the variance."""
    m_q, v_q, m_p = (
        torch.tensor(0.3, dtype=torch.float64),
        torch.tensor(0.02, dtype=torch.float64),
        torch.tensor(0.1, dtype=torch.float64),
    )
    logv = torch.linspace(-8, 1, 200001, dtype=torch.float64)
    kl = dl.normal_kl(m_q, v_q.log(), m_p, logv)
    best = logv[kl.argmin()].exp()
    assert float(best) == pytest.approx(float(v_q + (m_q - m_p) ** 2), rel=1e-3)


def test_merge_folds_rows_run_apart_into_one_table(tmp_path, capsys):
    """--merge: rows run in separate processes join the table (in ROWS order), leave not_measured, and make it
    complete; tables made differently, or unfinished, are refused with the reason."""
    base, base_path = _run(tmp_path, "--rows", "eps-simple-fixed", "--steps", "3", "--seeds", "0")
    base["not_measured"] = {"rows": ["mean-vlb-fixed"], "why": "needs time"}
    base["complete"] = False
    base_path.write_text(json.dumps(base))
    part = tmp_path / "part.json"
    assert (
        cli.main(["--rows", "mean-vlb-fixed", "--steps", "3", "--seeds", "0", *TINY, "--out", str(part)]) == 0
    )
    assert cli.main(["--merge", str(base_path), str(part)]) == 0
    merged = json.loads(base_path.read_text())
    assert [r["id"] for r in merged["rows"]] == ["mean-vlb-fixed", "eps-simple-fixed"]
    assert merged["complete"] and "not_measured" not in merged and len(merged["merged"]) == 1
    assert merged["rows"][0] == json.loads(part.read_text())["rows"][0]
    assert base_path.with_suffix(".md").read_text() == abl.to_markdown(merged)

    other = json.loads(part.read_text())
    other["steps"] = 4
    with pytest.raises(ValueError, match="steps=4"):
        abl.merge_tables(base, [other])
    other = json.loads(part.read_text())
    other["complete"] = False
    with pytest.raises(ValueError, match="not complete"):
        abl.merge_tables(base, [other])
    assert cli.main(["--merge", str(base_path), str(tmp_path / "missing.json")]) == 2
    assert "no such file" in capsys.readouterr().err


def test_resume_keeps_finished_runs_and_ema_decay_is_set(tmp_path, capsys):
    """--resume trains only the runs missing from the table at --out; a table made otherwise is refused."""
    out = tmp_path / "t.json"
    argv = [
        "--steps",
        "10",
        "--seeds",
        "0",
        "--curve-every",
        "0",
        "--ema-decay",
        "0.9",
        *TINY,
        "--out",
        str(out),
    ]
    assert cli.main(["--rows", "eps-simple-fixed", *argv]) == 0
    first = json.loads(out.read_text())
    assert first["train_config"]["ema_decay"] == 0.9 and first["rows"][0]["runs"][0]["w1_ratio"] > 0
    assert cli.main(["--rows", "eps-simple-fixed,mean-mse-fixed", *argv, "--resume"]) == 0
    assert "1 runs kept, 1 to go" in capsys.readouterr().out
    both = json.loads(out.read_text())
    assert both["complete"] and "--resume" not in both["command"]
    rows = {r["id"]: r for r in both["rows"]}
    assert rows["eps-simple-fixed"]["runs"] == first["rows"][0]["runs"] and rows["mean-mse-fixed"]["summary"]
    assert cli.main(["--rows", "eps-simple-fixed", *argv, "--resume", "--lr", "1e-4"]) == 2
    assert "--resume: the table on disk has train_config {'lr': 0.002}, this command {'lr': 0.0001}" in (
        capsys.readouterr().err
    )
    with pytest.raises(SystemExit):
        cli.main(["--ema-decay", "1.5", "--out", str(tmp_path / "x.json")])
    assert "--ema-decay must be in [0, 1)" in capsys.readouterr().err
    # a table written before TrainConfig had lr_decay was made with "none": it resumes, and another decay is refused
    old = json.loads(out.read_text())
    del old["train_config"]["lr_decay"]
    out.write_text(json.dumps(old))
    assert cli.main(["--rows", "eps-simple-fixed,mean-mse-fixed", *argv, "--resume"]) == 0
    assert "2 runs kept, 0 to go" in capsys.readouterr().out
    assert cli.main(["--rows", "eps-simple-fixed", *argv, "--resume", "--lr-decay", "cosine"]) == 2
    assert "this command {'lr_decay': 'cosine'}" in capsys.readouterr().err


def test_stop_at_trains_the_first_steps_of_a_longer_decaying_run(tmp_path, capsys):
    """--stop-at N: the first N steps of the --steps run, with its learning rate (the cosine of the whole run): the
    same losses as the long run's first N steps; the table says it stopped, and a finished table does not resume it."""
    common = [
        "--rows",
        "eps-simple-fixed",
        "--seeds",
        "0",
        "--lr-decay",
        "cosine",
        "--curve-every",
        "0",
        *TINY,
    ]
    assert cli.main([*common, "--steps", "8", "--window", "2", "--out", str(tmp_path / "long.json")]) == 0
    assert (
        cli.main(
            [*common, "--steps", "8", "--stop-at", "4", "--window", "2", "--out", str(tmp_path / "s.json")]
        )
        == 0
    )
    long, short = (json.loads((tmp_path / f).read_text()) for f in ("long.json", "s.json"))
    lr, ss = long["rows"][0]["runs"][0], short["rows"][0]["runs"][0]
    assert (
        ss["steps_done"] == 4
        and short["steps"] == 8
        and short["stopped_at"] == 4
        and long["stopped_at"] is None
    )
    assert ss["curve"]["loss_mean"] == lr["curve"]["loss_mean"][:2]  # windows of 2 steps: steps 1-4, exactly
    assert "stopped after the first 4" in (tmp_path / "s.md").read_text()
    assert cli.main([*common, "--steps", "8", "--out", str(tmp_path / "s.json"), "--resume"]) == 2
    assert "stopped_at 4" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        cli.main([*common, "--steps", "8", "--stop-at", "9"])
    assert "--stop-at must lie in 0..--steps" in capsys.readouterr().err
