"""One shared tester runs every registered generator and discriminator through the same checks."""

from __future__ import annotations

import pytest
import torch

from segcli.config import DataInfo, ModelConfig
from segcli.errors import UserError
from segcli.models import DISCRIMINATORS, ENCODERS, build_discriminator, build_generator, mask_channels

INFOS = {
    "binary_gray": DataInfo(num_classes=2, in_channels=1, binary=True),
    "multi_rgb": DataInfo(num_classes=5, in_channels=3, binary=False),
}


class GeneratorTester:
    encoder: str

    def build(self, info: DataInfo) -> torch.nn.Module:
        return build_generator(ModelConfig(encoder=self.encoder, base_channels=4, depth=3), info)

    @pytest.mark.parametrize("info_name", list(INFOS))
    @pytest.mark.parametrize("size", [(32, 32), (37, 50), (8, 8)])
    def test_any_size_logits_out(self, info_name: str, size: tuple[int, int]) -> None:
        info = INFOS[info_name]
        g = self.build(info).eval()
        x = torch.randn(2, info.in_channels, *size)
        with torch.no_grad():
            y = g(x)
        assert y.shape == (2, info.out_channels, *size)
        assert torch.isfinite(y).all()

    def test_skip_connections_carry_fine_detail(self) -> None:
        # a U-Net's output depends on fine features: perturb one pixel, the logits around
        # it change more than far away (ResNet encoders' finest skip is at stride 2)
        torch.manual_seed(0)  # random init: the result must not depend on what ran before
        g = self.build(INFOS["binary_gray"]).eval()
        x = torch.zeros(1, 1, 32, 32)
        with torch.no_grad():
            base = g(x)
            x[0, 0, 16, 16] = 5.0
            diff = (g(x) - base).abs()[0, 0]
        assert diff[14:19, 14:19].mean() > 0
        assert diff[14:19, 14:19].mean() >= diff[:5, :5].mean()

    def test_gradients_reach_every_parameter(self) -> None:
        g = self.build(INFOS["multi_rgb"])
        g(torch.randn(2, 3, 32, 32)).mean().backward()
        assert all(p.grad is not None for p in g.parameters())


@pytest.mark.parametrize("encoder", sorted(ENCODERS))
class TestGenerators(GeneratorTester):
    @pytest.fixture(autouse=True)
    def _set(self, encoder: str) -> None:
        self.encoder = encoder


@pytest.mark.parametrize("name", sorted(DISCRIMINATORS))
@pytest.mark.parametrize("info_name", list(INFOS))
def test_discriminators_score_image_mask_pairs(name: str, info_name: str) -> None:
    info = INFOS[info_name]
    d = build_discriminator(ModelConfig(discriminator=name, disc_channels=8), info)
    x = torch.randn(2, info.in_channels + mask_channels(info), 64, 64)
    out = d(x)
    assert out.shape[0] == 2 and torch.isfinite(out).all()
    out.mean().backward()
    assert all(p.grad is not None for p in d.parameters() if p.requires_grad)


def test_pixel_discriminator_map_at_input_resolution() -> None:
    info = INFOS["multi_rgb"]
    d = build_discriminator(ModelConfig(discriminator="pixel", disc_channels=8), info)
    assert d(torch.randn(1, 8, 48, 40)).shape == (1, 1, 48, 40)


def test_registry_error_lists_valid_names() -> None:
    with pytest.raises(UserError, match="choose one of .*unet"):
        build_generator(ModelConfig(encoder="nope"), INFOS["multi_rgb"])


@pytest.mark.parametrize("encoder, multiple", [("unet", 8), ("resnet18", 32), ("resnet34", 32)])
def test_the_model_owns_its_output_meaning(encoder: str, multiple: int) -> None:
    from segcli.models import size_multiple

    cfg = ModelConfig(encoder=encoder, base_channels=4, depth=3)
    for name, info in INFOS.items():
        g = build_generator(cfg, info).eval()
        out = g.output
        assert out.size_multiple == multiple == size_multiple(cfg)  # what `segcli info` reports, without a model
        assert out.binary == info.binary and out.channels == info.out_channels
        assert out.activation == ("sigmoid" if info.binary else "softmax")
        logits = torch.randn(2, out.channels, 8, 8)
        probs, labels = out.probabilities(logits), out.labels(logits)
        assert labels.shape == (2, 8, 8)
        want = (logits[:, 0] > 0).long() if info.binary else logits.argmax(1)
        assert torch.equal(labels, want)
        assert torch.equal(torch.from_numpy(out.labels_from_probs(probs[0].numpy())).long(), want[0])
        assert out.padding(33, 64) == ((-33) % multiple, 0)
