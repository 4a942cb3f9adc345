"""Device and precision selection: CUDA, then MPS, then CPU; autocast where it pays."""

from __future__ import annotations

from contextlib import nullcontext
from dataclasses import dataclass
from functools import partial
from typing import Callable, ContextManager, Optional

import torch

from segcli.errors import UserError


def select_device(spec: str = "auto") -> torch.device:
    spec = (spec or "auto").lower()
    if spec == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        dev = torch.device(spec)
    except RuntimeError:
        raise UserError(f"--device '{spec}': expected auto, cpu, cuda, cuda:N or mps") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise UserError(f"--device {spec}: CUDA is not available on this machine; use --device cpu")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise UserError(f"--device {spec}: only {torch.cuda.device_count()} CUDA device(s) here")
    if dev.type == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise UserError(f"--device {spec}: MPS is not available on this machine; use --device cpu")
    if dev.type not in ("cpu", "cuda", "mps"):
        raise UserError(f"--device '{spec}': expected auto, cpu, cuda, cuda:N or mps")
    return dev


def cpu_has_fast_bf16() -> bool:
    """AMX or AVX512-BF16: bf16 matmuls/convs run several times faster than fp32."""
    try:
        flags = open("/proc/cpuinfo").read()
    except OSError:
        return False
    return " amx_bf16" in flags or " avx512_bf16" in flags


@dataclass
class Precision:
    name: str  # "32", "bf16" or "16"
    dtype: Optional[torch.dtype]
    device_type: str

    @property
    def autocast(self) -> Callable[[], ContextManager]:
        if self.dtype is None:
            return nullcontext
        return partial(torch.autocast, self.device_type, dtype=self.dtype)

    def scaler(self) -> Optional[torch.amp.GradScaler]:
        """fp16 needs loss scaling; bf16 and fp32 do not."""
        if self.name == "16" and self.device_type == "cuda":
            return torch.amp.GradScaler("cuda")
        return None


def select_precision(spec: str, device: torch.device) -> Precision:
    spec = str(spec or "auto").lower()
    if spec not in ("auto", "32", "bf16", "16"):
        raise UserError(f"--precision '{spec}': expected auto, 32, bf16 or 16")
    if spec == "auto":
        if device.type == "cuda":
            spec = "bf16" if torch.cuda.is_bf16_supported() else "16"
        elif device.type == "cpu" and cpu_has_fast_bf16():
            spec = "bf16"
        else:
            spec = "32"
    if spec == "16" and device.type == "cpu":
        raise UserError("--precision 16: fp16 is not supported on the CPU; use bf16 or 32")
    dtype = {"32": None, "bf16": torch.bfloat16, "16": torch.float16}[spec]
    return Precision(spec, dtype, device.type)


def describe(device: torch.device) -> str:
    if device.type == "cuda":
        return f"{device} ({torch.cuda.get_device_name(device)})"
    return str(device)
