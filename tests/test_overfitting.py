"""The overfitting detector on hand-written curves."""

from __future__ import annotations

from app.jobs.overfitting import detect


def series(train: list[float], val: list[float], steps_per_epoch: int = 4) -> dict:
    t_epochs = [(i + 1) / steps_per_epoch for i in range(len(train) * steps_per_epoch)]
    t_values = [v for v in train for _ in range(steps_per_epoch)]
    return {
        "train_loss": {"epoch": t_epochs, "value": t_values},
        "val_loss": {"epoch": [float(e + 1) for e in range(len(val))], "value": val},
    }


def test_healthy_curves_give_no_warning() -> None:
    assert detect(series([1.0, 0.7, 0.5, 0.4], [1.0, 0.8, 0.65, 0.6])) is None
    assert detect({}) is None


def test_rising_validation_loss_while_training_falls() -> None:
    warning = detect(series([1.0, 0.6, 0.4, 0.3, 0.2], [0.9, 0.5, 0.55, 0.6, 0.7]))
    assert warning is not None and warning.epoch == 2
    assert "since epoch 2" in warning.message


def test_large_gap_between_train_and_validation() -> None:
    warning = detect(series([0.5, 0.1, 0.05], [0.6, 0.5, 0.45]))
    assert warning is not None and warning.epoch == 2
    assert "5.0×" in warning.message


def test_noisy_but_flat_validation_is_not_flagged() -> None:
    assert detect(series([0.5, 0.45, 0.44, 0.43], [0.52, 0.5, 0.51, 0.5])) is None


def test_a_frozen_heads_l2_path_is_not_training_time() -> None:
    # Weaker L2 (points 1..5, strong to weak) lowers training loss and raises validation loss:
    # the curve the choice on validation loss exists for, not overfitting during training.
    path = series([0.9, 0.6, 0.4, 0.2, 0.05], [0.8, 0.55, 0.6, 0.7, 0.9], steps_per_epoch=1)
    assert detect(path) is not None  # read as epochs, it would be flagged
    l2 = [10.0 ** (-k / 2) for k in range(5)]
    path["head_l2"] = {"epoch": [1.0, 2.0, 3.0, 4.0, 5.0], "value": l2}
    assert detect(path) is None


def test_lp_ft_probe_at_epoch_zero_is_not_counted_as_training() -> None:
    # The fitted probe's training loss (epoch 0) is far below fine-tuning's first epoch;
    # averaged into epoch 1 it would make a train/validation gap that is not there.
    curves = series([0.5, 0.4, 0.35], [0.78, 0.68, 0.6], steps_per_epoch=1)
    assert detect(curves) is None
    curves["train_loss"]["epoch"].insert(0, 0.0)
    curves["train_loss"]["value"].insert(0, 0.001)
    curves["val_loss"]["epoch"].insert(0, 0.0)
    curves["val_loss"]["value"].insert(0, 0.78)
    assert detect(curves) is None
