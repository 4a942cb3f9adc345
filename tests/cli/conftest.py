"""Models trained long enough to draw real masks (1-epoch fixtures predict one class everywhere),
so that tiling, thresholds and metrics are tested on non-trivial output. About 10 s each."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import FIT, run_cli


def _fit(data: Path, work: Path) -> Path:
    r = run_cli(["train", data, *FIT], cwd=work)
    assert r.code == 0, r.err
    return work


@pytest.fixture(scope="session")
def fitted_binary(binary_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Working folder whose runs/ holds a binary model with validation mIoU around 0.9."""
    return _fit(binary_data, tmp_path_factory.mktemp("fitted_binary"))


@pytest.fixture(scope="session")
def fitted_multi(multiclass_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _fit(multiclass_data, tmp_path_factory.mktemp("fitted_multi"))
