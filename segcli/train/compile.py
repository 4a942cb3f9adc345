"""`--compile auto|on|off`: the training step's modules through torch.compile (Inductor).

- `decide`: whether a run compiles; `auto` compiles only where compiling pays back within the run
  (the rule and the numbers behind it: docs/benchmarks.md, "Training speed on an AVX2 CPU").
- `maybe_compile`: wraps a module for the step. Compilation is lazy, so its cost lands inside the
  first steps and therefore inside `--time`. Inductor's caches go to ~/.cache/segcli/inductor
  (unless TORCHINDUCTOR_CACHE_DIR is set), so a second run in the same environment starts fast.
- Any error while compiling switches every wrapped module of the run back to eager: one reason,
  handed to the caller's `notify` once; nothing is printed here.

The wrapper is not an nn.Module holding the original as a child: checkpoints keep saving the bare
modules (run.gen, run.disc, estimator.net), so no `_orig_mod.` key ever reaches a state_dict.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any, Callable, Optional

import torch
from torch import nn

MODES = ("auto", "on", "off")
CACHE_DIR = Path.home() / ".cache" / "segcli" / "inductor"
# auto, measured (docs/benchmarks.md): on the CPU compiling never paid back in a budget; on a GPU
# it must be given at least this many seconds of training (a guess: not yet measured on a GPU).
MIN_BUDGET_S = {"cuda": 600.0}


def check_mode(mode: Any) -> str:
    """The mode as given ('auto', 'on', 'off'); raises ValueError otherwise."""
    m = str(mode).lower()
    if m not in MODES:
        raise ValueError(f"--compile '{mode}': expected auto, on or off")
    return m


def decide(mode: str, device_type: str, budget_s: Optional[float]) -> bool:
    """Whether the run's step compiles. `on`/`off` as said; `auto`: only on a device where the
    compiled step was measured faster, and only when the --time budget (None: no budget) is long
    enough for the compile time to pay back."""
    m = check_mode(mode)
    if m != "auto":
        return m == "on"
    need = MIN_BUDGET_S.get(device_type)
    if need is None:
        return False
    return budget_s is None or budget_s >= need


def use_cache_dir(path: Path = CACHE_DIR) -> None:
    """Inductor's on-disk caches under `path`, unless the user chose a folder; FX graph cache on."""
    if not os.environ.get("TORCHINDUCTOR_CACHE_DIR"):
        path.mkdir(parents=True, exist_ok=True)
        os.environ["TORCHINDUCTOR_CACHE_DIR"] = str(path)
    import torch._inductor.config as inductor_config

    inductor_config.fx_graph_cache = True


class Fallback:
    """Shared by a run's compiled modules: the first compile error turns them all eager, once."""

    def __init__(self, notify: Optional[Callable[[str], None]] = None) -> None:
        self.reason: Optional[str] = None
        self.notify = notify
        self.compile_seconds = 0.0  # wall time of the calls that compiled (first calls, recompiles)

    def listen(self, notify: Callable[[str], None]) -> None:
        """Where the note goes (a failure before this call is told now)."""
        self.notify = notify
        if self.reason is not None:
            notify(self.reason)

    def fail(self, error: BaseException) -> None:
        if self.reason is not None:
            return
        first = str(error).strip().splitlines()[0] if str(error).strip() else ""
        self.reason = f"--compile: compilation failed ({type(error).__name__}: {first[:200]}); training eagerly"
        if self.notify is not None:
            self.notify(self.reason)


class Compiled:
    """Calls the compiled module until compilation fails, then the eager one. Everything else
    (parameters(), attributes, `.module` under DDP) is the eager module's."""

    def __init__(self, module: nn.Module, compiled: Callable[..., Any], fallback: Fallback) -> None:
        self.__dict__.update(_eager=module, _compiled=compiled, _fallback=fallback, _calls=0)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        fb = self._fallback
        if fb.reason is None:
            import torch._functorch.config as functorch_config

            t = time.monotonic()
            try:
                # the backward graph compiled now too, so that its errors surface here, not in backward()
                with functorch_config.patch(force_non_lazy_backward_lowering=True):
                    out = self._compiled(*args, **kwargs)
            except Exception as e:  # noqa: BLE001 - any compiler error: eager from here on
                fb.fail(e)
            else:
                if self.__dict__["_calls"] == 0:
                    fb.compile_seconds += time.monotonic() - t
                self.__dict__["_calls"] += 1
                return out
        return self._eager(*args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.__dict__["_eager"], name)

    def __setattr__(self, name: str, value: Any) -> None:
        setattr(self._eager, name, value)


def maybe_compile(module: Optional[nn.Module], enabled: bool, fallback: Fallback,
                  compiler: Optional[Callable[..., Any]] = None) -> Any:
    """`module` wrapped to run compiled (`enabled`), or `module` itself. None stays None.
    `compiler` defaults to torch.compile (tests pass one that fails)."""
    if module is None or not enabled:
        return module
    use_cache_dir()
    try:
        compiled = (compiler or torch.compile)(module, dynamic=False)
    except Exception as e:  # noqa: BLE001 - torch.compile itself refused (e.g. an unsupported Python)
        fallback.fail(e)
        return module
    return Compiled(module, compiled, fallback)


def bare(module: Any) -> Any:
    """The eager module behind a `Compiled` wrapper (anything else as it is)."""
    return module.__dict__.get("_eager", module) if isinstance(module, Compiled) else module


def apply(run: Any, budget_s: Optional[float]) -> Optional[Fallback]:
    """Wrap a set-up run's step modules (G and the networks its parts train) per its --compile;
    None when eager."""
    if not decide(run.cfg.compile, run.device.type, budget_s):
        return None
    fb = Fallback()
    run.gen_t = maybe_compile(run.gen_t, True, fb)
    for part in run.parts:
        part.wrap_step(lambda module: maybe_compile(module, True, fb))
    return fb
