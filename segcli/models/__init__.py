"""Model registry: generators are encoder + decoder + head, looked up by name.

The registries map names to builders that import torch only when called, so the names
(for option checks and error messages) are known without torch.
"""

from __future__ import annotations

from typing import Any, Callable

from segcli.config import DataInfo, ModelConfig
from segcli.errors import UserError
from segcli.models.output import OutputSpec, class_probabilities


def _unet(cin: int, cfg: ModelConfig) -> Any:
    from segcli.models.unet import UNetEncoder

    return UNetEncoder(cin, cfg.base_channels, cfg.depth)


def _resnet(name: str) -> Callable[[int, ModelConfig], Any]:
    def build(cin: int, cfg: ModelConfig) -> Any:
        from segcli.models.resnet import ResNetEncoder

        return ResNetEncoder(name, cin)

    return build


def _disc(kind: str) -> Callable[[int, ModelConfig], Any]:
    def build(cin: int, cfg: ModelConfig) -> Any:
        from segcli.models import discriminator

        return getattr(discriminator, kind)(cin, cfg.disc_channels)

    return build


ENCODERS: dict[str, Callable[[int, ModelConfig], Any]] = {
    "unet": _unet, "resnet18": _resnet("resnet18"), "resnet34": _resnet("resnet34"), "resnet50": _resnet("resnet50"),
}

DISCRIMINATORS: dict[str, Callable[[int, ModelConfig], Any]] = {
    "patch": _disc("PatchDiscriminator"), "global": _disc("GlobalDiscriminator"), "pixel": _disc("PixelDiscriminator"),
}


# What each discriminator kind is trained to predict (segcli info, the export card)
DISCRIMINATOR_TARGETS = {
    "flaw": "where the generator's mask is wrong, per pixel",
    "patch": "real vs generated masks, per 70x70 patch",
    "global": "real vs generated masks, per image",
    "pixel": "real vs generated masks, per pixel",
}


def describe_judges(gan: str, discriminator: str, has_estimator: bool) -> dict[str, str]:
    """What a model's judges are: the discriminator's kind, what it learned to predict, and where the
    label-free quality estimate comes from. Plain strings, the same for a checkpoint and an export."""
    if gan == "none":
        kind, target = "none", "no discriminator (plain U-Net training)"
    else:
        kind = "flaw" if gan == "flaw" else discriminator
        target = DISCRIMINATOR_TARGETS.get(kind, "?")
    if not has_estimator:
        quality = "none"
    elif gan == "flaw":
        quality = "the discriminator (a flaw detector)"
    else:
        quality = "an error estimator trained beside the generator" + ("" if gan == "none" else " and the discriminator")
    return {"gan": gan, "discriminator": kind, "discriminator_predicts": target, "quality_estimate": quality}


def lookup(registry: dict[str, Callable], name: str, what: str) -> Callable:
    try:
        return registry[name]
    except KeyError:
        valid = ", ".join(sorted(registry))
        raise UserError(f"unknown {what} '{name}': choose one of {valid}") from None


def resolve_encoder(cfg: ModelConfig) -> str:
    """'auto': a ResNet-18 encoder (smp's default Unet; 2.5x fewer FLOPs than the full-resolution
    U-Net encoder at equal quality on ISBI, so more steps per budget and faster inference), or the
    U-Net encoder when its options (--base-channels, --depth) were changed. Both train from scratch."""
    if cfg.encoder != "auto":
        return cfg.encoder
    unet_options = (cfg.base_channels, cfg.depth) != (ModelConfig.base_channels, ModelConfig.depth)
    return "unet" if unet_options else "resnet18"


def size_multiple(cfg: ModelConfig) -> int:
    """The input size multiple of the generator `cfg` builds (its encoder's largest stride)."""
    return 2**cfg.depth if resolve_encoder(cfg) == "unet" else 32


def build_generator(cfg: ModelConfig, info: DataInfo) -> Any:
    """The generator (a segcli.models.unet.Generator): logits out, `.output` says what they mean."""
    from segcli.models.unet import Generator

    encoder = lookup(ENCODERS, resolve_encoder(cfg), "encoder")(info.in_channels, cfg)
    blocks = len(encoder.strides) - 1 + (encoder.strides[0] > 1)  # up to stride 1
    if cfg.decoder_channels and len(cfg.decoder_channels) != blocks:
        raise UserError(f"--decoder-channels {','.join(map(str, cfg.decoder_channels))}: the {resolve_encoder(cfg)} "
                        f"decoder has {blocks} blocks; give {blocks} widths, deepest first")
    return Generator(encoder, info.out_channels, cfg.decoder_channels)


def mask_channels(info: DataInfo) -> int:
    """Channels of the mask D sees: class probabilities, 2 for binary (background, foreground)."""
    return 2 if info.binary else info.num_classes


def build_discriminator(cfg: ModelConfig, info: DataInfo) -> Any:
    build = lookup(DISCRIMINATORS, cfg.discriminator, "discriminator")
    return build(info.in_channels + mask_channels(info), cfg)


__all__ = ["ENCODERS", "DISCRIMINATORS", "DISCRIMINATOR_TARGETS", "OutputSpec", "describe_judges", "build_discriminator", "build_generator",
           "class_probabilities", "lookup", "mask_channels", "resolve_encoder", "size_multiple"]
