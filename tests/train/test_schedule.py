"""The --time budget's clock: when validation is due and when a run must stop."""

from __future__ import annotations

import time

import pytest

from segcli.train.schedule import Clock, lr_at


def test_without_a_budget_every_epoch_validates_and_nothing_stops() -> None:
    clock = Clock(None)
    clock.val_cost, clock.save_cost = 5.0, 5.0
    assert clock.validation_due(0.0) and not clock.must_stop()


def test_validation_and_its_checkpoints_cost_about_a_tenth_of_the_training() -> None:
    clock = Clock(120.0)
    clock.val_cost, clock.save_cost = 1.0, 0.5
    assert not clock.validation_due(13.0)  # 1.5 s of validating and writing after 13 s: more than 10%
    assert clock.validation_due(13.5)
    clock.save_cost = 0.0
    assert clock.validation_due(9.0)



def test_rank_zeros_seconds_decide_when_validation_is_due() -> None:
    clock = Clock(120.0, agree=lambda seconds: 20.0)  # under torchrun: rank 0's figure, broadcast
    clock.val_cost, clock.save_cost = 1.0, 0.5
    assert clock.validation_due(0.0)  # this process trained less, but every process must validate


def test_the_run_stops_early_enough_for_its_last_validation_checkpoints_and_calibration() -> None:
    started = time.monotonic() - 100.0  # 100 s of a 120 s budget gone
    clock = Clock(120.0, started=started)
    clock.val_cost, clock.save_cost = 2.0, 1.0
    assert not clock.must_stop()  # 1.3 * (2 + 1) + 2 s: fits in the 20 s left
    clock.save_cost = 12.0
    assert clock.must_stop()
    clock.save_cost, clock.calibration = 1.0, True
    assert not clock.must_stop()  # 1.3 * (2.5 * 2 + 2 * 1) + 2 = 11.1 s
    clock.val_cost = 5.0
    assert clock.must_stop()  # 1.3 * (12.5 + 2) + 2 = 20.85 s


@pytest.mark.parametrize("progress", [0.0, 0.5, 1.0])
def test_learning_rate_stays_within_its_range(progress: float) -> None:
    assert 0.0099 <= lr_at(1.0, progress) <= 1.0
