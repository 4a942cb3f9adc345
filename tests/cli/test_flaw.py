"""`--gan flaw` through the CLI: what --help says, what info names, the seed's recipe still trains,
predicts and resumes, and the options that need another discriminator say so."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from segcli.checkpoint import Checkpoint
from tests.conftest import TINY, run_cli


def test_train_help_says_what_each_gan_trains() -> None:
    r = run_cli(["train", "--help"])
    text = " ".join(r.out.split())
    assert r.code == 0
    for needle in ("flaw: D predicts where G's mask is wrong", "lsgan | vanilla | hinge: the seed's real/fake D",
                   "none: no D and no term for G"):
        assert needle in text, needle


def test_info_names_the_flaw_discriminator_for_pt_and_onnx(fitted_binary: Path, tmp_path: Path) -> None:
    best = next(fitted_binary.glob("runs/train/*/weights/best.pt"))
    ckpt = Checkpoint.load(best)
    assert ckpt.train.gan == "flaw" and ckpt.discriminator is None and ckpt.estimator_config["role"] == "discriminator"
    assert run_cli(["export", "--model", best, "-o", tmp_path / "m.onnx"]).code == 0
    facts = []
    for model in (best, tmp_path / "m.onnx"):
        r = run_cli(["info", model, "--json"])
        assert r.code == 0, r.err
        facts.append(json.loads(r.out)["judges"])
        text = " ".join(run_cli(["info", model]).out.split())
        assert "discriminator flaw: where the generator's mask is wrong" in text
        assert "the discriminator (a flaw detector)" in text
    assert facts[0] == facts[1] and facts[0]["gan"] == "flaw"


def test_the_seeds_real_fake_recipe_trains_predicts_and_resumes(binary_data: Path, tmp_path: Path) -> None:
    """`--gan lsgan` writes the checkpoints segcli wrote before the flaw D (a real/fake D plus a judge
    beside it); they predict with --quality, and their last.pt resumes."""
    r = run_cli(["train", binary_data, "--epochs", "2", "--gan", "lsgan", "--name", "seed", *TINY], cwd=tmp_path)
    assert r.code == 0, r.err
    last = Checkpoint.load(tmp_path / "runs/train/seed/weights/last.pt")
    assert last.discriminator is not None and last.estimator is not None and last.opt_e is not None
    assert "role" not in last.estimator_config and last.train.d_every == 2 and last.train.adv_weight == 0.01
    text = " ".join(run_cli(["info", tmp_path / "runs/train/seed/weights/best.pt"]).out.split())
    assert "discriminator patch: real vs generated masks" in text and "an error estimator trained beside" in text
    img = next((binary_data / "images").iterdir())
    r = run_cli(["predict", img, "--model", tmp_path / "runs/train/seed", "--quality", "--json",
                 "-o", tmp_path / "m.png"])
    assert r.code == 0 and json.loads(r.out.splitlines()[0])["quality"] is not None, r.err
    # an unfinished last.pt of the seed's recipe continues with its own D and judge
    torch.save({**torch.load(tmp_path / "runs/train/seed/weights/last.pt", weights_only=False), "finished": False,
                "epoch": 1, "history": last.history[:1]}, tmp_path / "runs/train/seed/weights/last.pt")
    r = run_cli(["train", tmp_path / "runs/train/seed", "--resume"], cwd=tmp_path)
    assert r.code == 0, r.err
    resumed = Checkpoint.load(tmp_path / "runs/train/seed/weights/last.pt")
    assert resumed.epoch == 2 and resumed.train.gan == "lsgan" and resumed.discriminator is not None


@pytest.mark.parametrize("args, needle", [
    (["--semi", "adversarial"], "under --gan flaw use --semi flaw"),
    (["--gan", "hinge", "--semi", "flaw"], "--semi flaw needs --gan flaw"),
])
def test_semi_methods_that_need_another_discriminator_exit_2(binary_data: Path, tmp_path: Path, args: list,
                                                             needle: str) -> None:
    r = run_cli(["train", binary_data, "--unlabeled", binary_data / "images", *args, *TINY], cwd=tmp_path)
    assert r.code == 2 and r.err.count("\n") == 1 and needle in r.err, r.err
    assert not (tmp_path / "runs").exists()


def test_semi_flaw_trains_with_the_flaw_correction_on_unlabeled_images(binary_data: Path, tmp_path: Path) -> None:
    r = run_cli(["train", binary_data, "--epochs", "1", "--unlabeled", binary_data / "images", "--semi", "flaw",
                 "--d-every", "1", "--semi-every", "1", *TINY], cwd=tmp_path)
    assert r.code == 0, r.err
    ckpt = Checkpoint.load(next(tmp_path.glob("runs/train/*/weights/last.pt")))
    assert ckpt.train.semi == "flaw" and ckpt.train.semi_adv_weight == 0.1 and ckpt.estimator is not None
