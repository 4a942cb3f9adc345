"""Helpers shared by commands: config files merged under command-line options."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import typer

from segcli.cli._compat import ParameterSource

from segcli.errors import UserError


def read_config_file(path: str) -> dict[str, Any]:
    """A YAML or TOML mapping of option names (dashes or underscores) to values.

    A run's saved config.yaml ({train: ..., model: ...}) is accepted too.
    """
    p = Path(path)
    if not p.is_file():
        raise UserError(f"{p}: config file not found")
    text = p.read_text(encoding="utf-8")
    try:
        if p.suffix.lower() == ".toml":
            import tomllib

            values = tomllib.loads(text)
        else:
            import yaml

            values = yaml.safe_load(text) or {}
    except Exception as e:
        raise UserError(f"{p}: cannot parse config file ({str(e).splitlines()[0]})") from None
    if not isinstance(values, dict):
        raise UserError(f"{p}: config file must hold a mapping of option names to values")
    flat: dict[str, Any] = {}
    for key, value in values.items():
        if isinstance(value, dict) and key in ("train", "model", "predict", "evaluate", "export"):
            flat.update(value)
        else:
            flat[key] = value
    return {k.replace("-", "_"): v for k, v in flat.items()}


def merge_config(
    ctx: typer.Context, params: dict[str, Any], config: Optional[str]
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Options from --config FILE fill in whatever the command line left at its default.

    Returns the merged options and the file's entries that match no option (the caller may
    know them as config fields, e.g. from a run's saved config.yaml).
    """
    if not config:
        return params, {}
    values = read_config_file(config)
    merged = dict(params)
    rest: dict[str, Any] = {}
    for name, value in values.items():
        if name not in params:
            rest[name] = value
        elif ctx.get_parameter_source(name) in (ParameterSource.DEFAULT, None):
            merged[name] = value
    return merged, rest


def warn_unknown(config: Optional[str], names: list[str]) -> None:
    if names:
        from segcli.console import info

        info(f"[yellow]warning[/]: {config}: ignoring unknown option(s) {', '.join(sorted(names))}")
