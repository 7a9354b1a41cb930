"""The Fashion-MNIST classifier: the shipped one loads offline and is accurate; training runs."""

import json

import pytest
import torch

from ddpm_lib import classifier as K
from ddpm_lib.checkpoints import MODEL_REGISTRY, build_model, load_checkpoint
from ddpm_lib.cli.classifier import main
from ddpm_lib.data import REPO_DATA_DIR, fashion_mnist
from ddpm_lib.pretrained import list_pretrained, load_pretrained

torch.set_num_threads(1)


def test_shipped_classifier_is_registered_small_and_documented():
    e = list_pretrained()[K.DEFAULT_CLASSIFIER]
    path = REPO_DATA_DIR / e["path"]
    assert e["path"] == "checkpoints/fashion_mnist_classifier.safetensors"
    assert path.stat().st_size == e["size"] < 2 * 1024 * 1024
    assert e["command"].startswith(
        "python -m ddpm_lib.classifier train --out data/checkpoints/fashion_mnist_classifier"
    )
    assert e["model_class"] == "FashionClassifier" and e["metrics"]["test_accuracy"] >= 0.9
    assert e["metrics"]["test_examples"] == 10000
    cfg = load_checkpoint(path).config
    assert cfg["command"] == e["command"] and cfg["metrics"] == e["metrics"]
    assert cfg["data"]["train_split"] == "train" and cfg["data"]["train_examples"] == 60000


def test_shipped_classifier_accuracy_and_features():
    p = load_pretrained(K.DEFAULT_CLASSIFIER)  # verified by sha256, no network, no pickle
    assert p.diffusion is None and isinstance(p.model, K.FashionClassifier)
    model = K.load_classifier()
    x, y = fashion_mnist("test", download=False)
    x, y = x[:2000], y[:2000]
    acc = K.accuracy(model, x, y)
    assert acc >= 0.9, acc
    with torch.no_grad():
        f = model.features(x[:16])
        logits = model(x[:16])
    assert f.shape == (16, 128) and (f >= 0).all()  # after the ReLU
    assert torch.allclose(logits, model.head(f), atol=1e-5)  # the head is linear in the features (eval mode)
    with pytest.raises(ValueError, match="shape"):
        model.features(torch.zeros(2, 3, 32, 32))


def test_eval_cli(capsys):
    assert main(["eval", "--n", "500"]) == 0
    assert capsys.readouterr().out.startswith("test accuracy on 500 images: 0.9")
    assert main(["eval", "swiss-roll-mlp"]) == 2  # another model: a usage error, one line
    assert capsys.readouterr().err == "error: swiss-roll-mlp holds a MLP, not a FashionClassifier\n"


def test_model_registry_and_round_trip(tmp_path):
    assert MODEL_REGISTRY["FashionClassifier"] is K.FashionClassifier
    from ddpm_lib.checkpoints import save_checkpoint

    torch.manual_seed(0)
    m = K.FashionClassifier(channels=(4, 8), feature_dim=16).eval()
    path = save_checkpoint(tmp_path / "c.safetensors", m, config={"task": "classification"})
    m2 = build_model(path)
    x = torch.rand(3, 1, 28, 28) * 2 - 1
    with torch.no_grad():
        assert torch.equal(m(x), m2(x))
    assert m2.config == m.config and K.load_classifier(path).config == m.config


def test_augment():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(64, 1, 28, 28) * 2 - 1
    flipped = K._augment(x, g, pad=0)
    for a, b in zip(x, flipped):
        assert torch.equal(a, b) or torch.equal(a.flip(2), b)
    shifted = K._augment(x, g, pad=2)
    assert shifted.shape == x.shape and shifted.min() >= -1 and shifted.max() <= 1
    # every shifted image is a flipped-or-not crop of the padded original
    pad = torch.nn.functional.pad(x, (2, 2, 2, 2), value=-1.0)
    for i in range(8):
        ok = any(
            torch.equal(shifted[i], c[..., dy : dy + 28, dx : dx + 28])
            for c in (pad[i], pad[i].flip(2))
            for dy in range(5)
            for dx in range(5)
        )
        assert ok


@pytest.mark.slow
def test_train_cli_quick(tmp_path, capsys):
    try:  # the command reads the full training split: Debian's dataset-fashion-mnist or a download
        fashion_mnist("train", download=False)
    except FileNotFoundError as e:
        pytest.skip(f"the full Fashion-MNIST training split is not available offline: {e}")
    out = tmp_path / "clf.safetensors"
    rc = main(
        [
            "train",
            "--out",
            str(out),
            "--epochs",
            "1",
            "--train-limit",
            "512",
            "--batch-size",
            "64",
            "--seed",
            "1",
        ]
    )
    assert rc == 0
    cfg = json.loads(out.with_suffix(".json").read_text())
    assert cfg["command"] == (
        f"python -m ddpm_lib.classifier train --out {out} --epochs 1 --train-limit 512 "
        "--batch-size 64 --seed 1"
    )
    assert cfg["data"]["train_examples"] == 512 and cfg["train"]["augment"] == "flip"
    acc = cfg["metrics"]["test_accuracy"]
    assert 0.3 < acc <= 1.0  # 8 steps on 512 images already beat chance (0.1) by far
    assert f"test accuracy {acc:.4f}" in capsys.readouterr().out
    model = K.load_classifier(out)
    assert isinstance(model, K.FashionClassifier) and not model.training
