"""Tests for fedcore.train: the run folder of a tiny real run, exact resume, and the training helpers."""

from __future__ import annotations

import argparse
import csv
import json
import math
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file

from fedcore import train as train_module
from fedcore.checkpoint import load_checkpoint, read_metadata, save_checkpoint
from fedcore.constants import CLASSES
from fedcore.datasets import FaceArrays, load_split
from fedcore.errors import FedError
from fedcore.metrics import fit_temperature
from fedcore.tensors import predict_logits
from fedcore.train import (
    LOG_FIELDS,
    WeightAverage,
    augment_batch,
    calibrate_run,
    class_weights,
    evaluate_split,
    get_args_parser,
    learning_rate,
    soft_cross_entropy,
    train,
)
from tests.fixtures_data import run_training, tiny_run, tiny_train_args

RUN_FILES = (
    "settings.json", "log.csv", "last.pt",
    "best.safetensors", "best.json", "model.safetensors", "model.json",
)  # fmt: skip
# Columns that measure speed, which two identical runs do not share.
TIMING_FIELDS = ("images_per_second", "epoch_seconds")


class Interrupted(Exception):
    """Stands in for a kill between two epochs."""


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return tiny_run(tmp_path_factory)


def read_log(run: Path) -> list[dict[str, str]]:
    with (run / "log.csv").open(newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def parse(argv: list[str]) -> argparse.Namespace:
    return get_args_parser().parse_args(argv)


def assert_same_tensors(actual: dict[str, torch.Tensor], expected: dict[str, torch.Tensor]) -> None:
    for key, tensor in expected.items():
        assert torch.equal(actual[key], tensor), key


# The tiny run's folder


@pytest.mark.slow
def test_run_folder_has_every_file(tiny: tuple[Path, Path]) -> None:
    _, run = tiny
    for name in RUN_FILES:
        assert (run / name).is_file(), name


@pytest.mark.slow
def test_run_log_two_epochs(tiny: tuple[Path, Path]) -> None:
    _, run = tiny
    with (run / "log.csv").open(newline="", encoding="utf-8") as handle:
        header = next(csv.reader(handle))
    rows = read_log(run)
    assert header == list(LOG_FIELDS)
    assert [row["epoch"] for row in rows] == ["1", "2"]
    for row in rows:
        assert all(math.isfinite(float(row[field])) for field in LOG_FIELDS), row
        assert 0 <= float(row["val_accuracy"]) <= 1
        assert float(row["learning_rate"]) > 0


@pytest.mark.slow
def test_run_settings_resolved(tiny: tuple[Path, Path]) -> None:
    data, run = tiny
    settings = json.loads((run / "settings.json").read_text(encoding="utf-8"))
    assert settings["epochs"] == 2
    assert settings["batch_size"] == 16
    assert settings["threads"] == 1
    assert settings["data"] == str(data)
    assert settings["protocol"] == "probability"


@pytest.mark.slow
def test_run_metadata_calibrated(tiny: tuple[Path, Path]) -> None:
    _, run = tiny
    info = read_metadata(run / "model.safetensors")
    calibration = info.metrics["calibration"]
    assert info.temperature > 0
    assert calibration["temperature"] == info.temperature
    assert calibration["split"] == "validation"
    assert 0 <= calibration["ece_before"] <= 1
    assert 0 <= calibration["ece_after"] <= 1


@pytest.mark.slow
def test_no_flip_average_recorded(tiny: tuple[Path, Path], tmp_path: Path) -> None:
    data, _ = tiny
    out = tmp_path / "single"
    assert run_training(tiny_train_args(data, out, "--epochs", "1", "--no-flip-average")) == 0
    assert read_metadata(out / "best.safetensors").flip_average is False
    assert read_metadata(out / "model.safetensors").flip_average is False
    assert json.loads((out / "settings.json").read_text(encoding="utf-8"))["no_flip_average"] is True


@pytest.mark.slow
@pytest.mark.parametrize("flip_average", [True, False])
def test_validation_scores_like_pipeline(tiny: tuple[Path, Path], flip_average: bool) -> None:
    data, run = tiny
    model, info = load_checkpoint(run / "best.safetensors")
    info = replace(info, flip_average=flip_average)
    val_set = load_split(data, "valid", protocol="majority")
    logits, scores = evaluate_split(model, val_set, info, torch.device("cpu"), False)
    expected = predict_logits(
        model, val_set.images, mean=info.mean, std=info.std, mixed_precision=False, flip_average=flip_average
    )
    np.testing.assert_array_equal(logits, expected)
    assert scores["accuracy"] == float((expected.argmax(axis=1) == val_set.labels).mean())


@pytest.mark.slow
@pytest.mark.parametrize("flip_average", [True, False])
def test_calibration_fits_scored_logits(tiny: tuple[Path, Path], tmp_path: Path, flip_average: bool) -> None:
    # The temperature is fitted to the logits the pipeline will produce, mirrored or not.
    data, run = tiny
    model, info = load_checkpoint(run / "best.safetensors")
    assert info.flip_average is True
    source = save_checkpoint(model, replace(info, flip_average=flip_average), tmp_path / "source.safetensors")
    val_set = load_split(data, "valid", protocol="majority")
    path = calibrate_run(tmp_path, val_set, device=torch.device("cpu"), mixed_precision=False, source=source)
    logits = predict_logits(
        model, val_set.images, mean=info.mean, std=info.std, mixed_precision=False, flip_average=flip_average
    )
    calibrated = read_metadata(path)
    assert calibrated.flip_average is flip_average
    assert calibrated.temperature == round(fit_temperature(logits, val_set.labels), 4)


@pytest.mark.slow
def test_run_best_metadata_epoch(tiny: tuple[Path, Path]) -> None:
    _, run = tiny
    best = read_metadata(run / "best.safetensors")
    macro_f1 = {int(row["epoch"]): float(row["val_macro_f1"]) for row in read_log(run)}
    # The first epoch always beats the initial best of -1, and the second counts only when strictly better.
    expected_epoch = 2 if macro_f1[2] > macro_f1[1] else 1
    assert best.metrics["validation"]["epoch"] == expected_epoch
    assert best.temperature == 1.0
    assert "calibration" not in best.metrics


@pytest.mark.slow
def test_run_normalisation_from_train(tiny: tuple[Path, Path]) -> None:
    data, run = tiny
    images = load_split(data, "train").images / 255.0
    info = read_metadata(run / "model.safetensors")
    assert info.mean == (round(float(images.mean()), 4),)
    assert info.std == (round(float(images.std()), 4),)


@pytest.mark.slow
def test_run_last_state_epoch(tiny: tuple[Path, Path]) -> None:
    _, run = tiny
    saved = torch.load(run / "last.pt", map_location="cpu", weights_only=False)
    assert saved["state"]["epoch"] == 2
    assert set(saved["rng"]) == {"torch", "numpy", "python"}


# Resume


@pytest.mark.slow
def test_resume_matches_straight_run(
    tiny: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data, straight = tiny
    resumed = tmp_path / "resumed"
    original_progress_bar = train_module._progress_bar

    def interrupt_at_epoch_two(total: int, description: str, **options):
        if description.startswith("epoch 2/"):
            raise Interrupted(description)
        return original_progress_bar(total, description, **options)

    with monkeypatch.context() as patch:
        patch.setattr(train_module, "_progress_bar", interrupt_at_epoch_two)
        with pytest.raises(Interrupted):
            run_training(tiny_train_args(data, resumed))
    assert len(read_log(resumed)) == 1
    assert not (resumed / "model.safetensors").exists()

    assert run_training(tiny_train_args(data, resumed, "--resume")) == 0

    expected = torch.load(straight / "last.pt", map_location="cpu", weights_only=False)
    actual = torch.load(resumed / "last.pt", map_location="cpu", weights_only=False)
    assert_same_tensors(actual["model"], expected["model"])
    assert actual["state"] == expected["state"]
    assert actual["average"]["updates"] == expected["average"]["updates"] > 0
    assert_same_tensors(actual["average"]["model"], expected["average"]["model"])
    assert_same_tensors(load_file(str(resumed / "model.safetensors")), load_file(str(straight / "model.safetensors")))
    for straight_row, resumed_row in zip(read_log(straight), read_log(resumed), strict=True):
        for field in set(LOG_FIELDS) - set(TIMING_FIELDS):
            assert resumed_row[field] == straight_row[field], field


@pytest.mark.slow
def test_resume_finished_run_recalibrates(tiny: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    data, straight = tiny
    resumed = tmp_path / "resumed"
    shutil.copytree(straight, resumed)
    # Resuming a finished run trains nothing more and calibrates the same best weights again.
    (resumed / "model.safetensors").unlink()
    assert run_training(tiny_train_args(data, resumed, "--resume")) == 0
    assert_same_tensors(load_file(str(resumed / "model.safetensors")), load_file(str(straight / "model.safetensors")))
    assert read_metadata(resumed / "model.safetensors").temperature == read_metadata(straight / "model.safetensors").temperature
    assert len(read_log(resumed)) == 2


@pytest.mark.slow
def test_keep_last_exports_raw_weights(tiny: tuple[Path, Path], tmp_path: Path) -> None:
    # The average never feeds back into training, so a run without one ends on the same raw weights.
    data, averaged = tiny
    plain = tmp_path / "plain"
    assert run_training(tiny_train_args(data, plain, "--ema", "0", "--keep", "last")) == 0
    raw = torch.load(averaged / "last.pt", map_location="cpu", weights_only=False)["model"]
    assert_same_tensors(load_file(str(plain / "model.safetensors")), raw)
    info = read_metadata(plain / "model.safetensors")
    last_row = read_log(plain)[-1]
    assert info.metrics["validation"]["epoch"] == 2
    assert info.metrics["validation"]["accuracy"] == float(last_row["val_accuracy"])
    assert info.metrics["validation"]["macro_f1"] == float(last_row["val_macro_f1"])
    assert info.metrics["calibration"]["temperature"] == info.temperature
    assert read_metadata(plain / "last.safetensors").temperature == 1.0


@pytest.mark.slow
def test_keep_last_exports_final_average(tiny: tuple[Path, Path], tmp_path: Path) -> None:
    data, straight = tiny
    resumed = tmp_path / "resumed"
    shutil.copytree(straight, resumed)
    # Resuming the finished run with --keep last calibrates the final average instead of the best epoch.
    (resumed / "model.safetensors").unlink()
    assert run_training(tiny_train_args(data, resumed, "--resume", "--keep", "last")) == 0
    average = torch.load(straight / "last.pt", map_location="cpu", weights_only=False)["average"]["model"]
    assert_same_tensors(load_file(str(resumed / "model.safetensors")), average)
    validation = read_metadata(resumed / "model.safetensors").metrics["validation"]
    assert validation["epoch"] == 2
    assert validation["macro_f1"] == float(read_log(straight)[-1]["val_macro_f1"])
    assert not (straight / "last.safetensors").exists()


def test_start_into_existing_run_rejected(tmp_path: Path) -> None:
    out = tmp_path / "run"
    out.mkdir()
    (out / "last.pt").write_bytes(b"")
    with pytest.raises(FedError, match=r"already contains a run; pass --resume to continue it or choose another --out"):
        train(parse(["--data", str(tmp_path / "data"), "--out", str(out)]))


def test_resume_without_state_rejected(tmp_path: Path) -> None:
    out = tmp_path / "run"
    with pytest.raises(FedError, match=r"--resume given but .*last\.pt does not exist"):
        train(parse(["--data", str(tmp_path / "data"), "--out", str(out), "--resume"]))
    assert not out.exists()


def test_resume_plain_run_with_average_rejected(tiny: tuple[Path, Path], tmp_path: Path) -> None:
    data, straight = tiny
    resumed = tmp_path / "resumed"
    shutil.copytree(straight, resumed)
    state = torch.load(resumed / "last.pt", map_location="cpu", weights_only=False)
    del state["average"]
    torch.save(state, resumed / "last.pt")
    threads = torch.get_num_threads()
    try:
        with pytest.raises(FedError, match=r"was trained without a weight average; resume it with --ema 0"):
            train(parse(tiny_train_args(data, resumed, "--resume")))
    finally:
        torch.set_num_threads(threads)


def test_run_reports_failure_code(tmp_path: Path) -> None:
    args = parse(["--data", str(tmp_path / "absent"), "--out", str(tmp_path / "run"), "--threads", "1"])
    threads = torch.get_num_threads()
    try:
        assert train_module.run(args) == 1
    finally:
        torch.set_num_threads(threads)


# Command line


def test_parser_defaults() -> None:
    args = parse(["--data", "x"])
    assert args.data == Path("x")
    assert args.data_format == "ferplus"
    assert args.protocol == "probability"
    assert args.epochs == 30
    assert args.batch_size == 64
    assert args.resume is False
    assert args.out == Path("runs/ferplus-vgg16")
    assert args.no_flip_average is False


def test_parser_requires_data(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        parse([])
    assert "--data" in capsys.readouterr().err


def test_parser_extends_given_parser() -> None:
    parser = argparse.ArgumentParser(prog="fed")
    assert get_args_parser(parser) is parser
    assert parser.parse_args(["--data", "d", "--half"]).half is True


# Augmentation


def test_augment_keeps_shape_and_range() -> None:
    batch = torch.rand(8, 1, 48, 48, generator=torch.Generator().manual_seed(0))
    augmented = augment_batch(batch.clone(), torch.Generator().manual_seed(1))
    assert augmented.shape == batch.shape
    assert augmented.min() >= 0
    assert augmented.max() <= 1
    assert not torch.equal(augmented, batch)


def test_augment_keeps_rgb_shape() -> None:
    batch = torch.rand(4, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    augmented = augment_batch(batch, torch.Generator().manual_seed(1))
    assert augmented.shape == (4, 3, 64, 64)


def test_augment_deterministic_per_seed() -> None:
    batch = torch.rand(8, 1, 48, 48, generator=torch.Generator().manual_seed(0))
    first = augment_batch(batch.clone(), torch.Generator().manual_seed(7))
    second = augment_batch(batch.clone(), torch.Generator().manual_seed(7))
    other = augment_batch(batch.clone(), torch.Generator().manual_seed(8))
    assert torch.equal(first, second)
    assert not torch.equal(first, other)


def test_augment_ignores_global_rng() -> None:
    batch = torch.rand(4, 1, 48, 48, generator=torch.Generator().manual_seed(0))
    torch.manual_seed(1)
    first = augment_batch(batch.clone(), torch.Generator().manual_seed(7))
    torch.manual_seed(2)
    second = augment_batch(batch.clone(), torch.Generator().manual_seed(7))
    assert torch.equal(first, second)


# Schedule, weights and loss


def test_learning_rate_warmup_exact() -> None:
    assert learning_rate(0, total_steps=110, warmup_steps=10, peak=0.1) == pytest.approx(0.01, abs=1e-15)
    assert learning_rate(4, total_steps=110, warmup_steps=10, peak=0.1) == pytest.approx(0.05, abs=1e-15)
    assert learning_rate(9, total_steps=110, warmup_steps=10, peak=0.1) == pytest.approx(0.1, abs=1e-15)


def test_learning_rate_cosine_endpoints() -> None:
    assert learning_rate(10, total_steps=110, warmup_steps=10, peak=0.1) == pytest.approx(0.1, abs=1e-15)
    assert learning_rate(60, total_steps=110, warmup_steps=10, peak=0.1) == pytest.approx(0.0505, abs=1e-15)
    assert learning_rate(110, total_steps=110, warmup_steps=10, peak=0.1) == pytest.approx(0.001, abs=1e-15)
    assert learning_rate(500, total_steps=110, warmup_steps=10, peak=0.1) == pytest.approx(0.001, abs=1e-15)


def make_arrays(targets: np.ndarray) -> FaceArrays:
    count = len(targets)
    return FaceArrays(
        images=np.zeros((count, 48, 48), dtype=np.uint8),
        targets=targets.astype(np.float32),
        labels=targets.argmax(axis=1),
        names=[f"{i}.png" for i in range(count)],
        description="test",
    )


def test_class_weights_average_one() -> None:
    rng = np.random.default_rng(0)
    labels = np.concatenate([np.zeros(60, dtype=int), np.ones(25, dtype=int), np.full(5, 5), rng.integers(0, 8, 10)])
    targets = np.eye(len(CLASSES))[labels]
    targets[:10] = rng.dirichlet(np.ones(len(CLASSES)), size=10)
    weights = class_weights(make_arrays(targets), 0.5).numpy().astype(np.float64)
    per_image = targets @ weights
    assert per_image.mean() == pytest.approx(1.0, abs=1e-6)


def test_class_weights_inverse_power() -> None:
    targets = np.eye(len(CLASSES))[[0] * 99 + [1] * 24 + [2] * 3]
    weights = class_weights(make_arrays(targets), 0.5).numpy()
    # Counts 99, 24 and 3 plus one each: weights scale with 100^-0.5, 25^-0.5, 4^-0.5.
    assert weights[1] / weights[0] == pytest.approx(2.0, rel=1e-6)
    assert weights[2] / weights[0] == pytest.approx(5.0, rel=1e-6)
    assert np.isfinite(weights).all()


def test_class_weights_power_zero_ones() -> None:
    targets = np.eye(len(CLASSES))[[0, 0, 0, 3, 7]]
    weights = class_weights(make_arrays(targets), 0.0)
    torch.testing.assert_close(weights, torch.ones(len(CLASSES)))


def _set_weights(model: torch.nn.Module, value: float) -> None:
    with torch.no_grad():
        for tensor in model.state_dict().values():
            tensor.fill_(value)


def test_weight_average_mean_then_exponential() -> None:
    model = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.BatchNorm1d(2))
    _set_weights(model, 8.0)
    average = WeightAverage(model, decay=0.75)
    # Until it covers 1 / (1 - 0.75) = 4 updates the average is the plain mean
    # of the weights after each update. The starting 8 drops out at once.
    for value in (4.0, 0.0, 5.0):
        _set_weights(model, value)
        average.update(model)
    averaged = average.model.state_dict()
    torch.testing.assert_close(averaged["0.weight"], torch.full((2, 2), 3.0), rtol=0, atol=1e-6)
    # From then on each update keeps 0.75 of the average: 0.75 * 3 + 0.25 * 7 = 4.
    assert average.current_decay() == 0.75
    _set_weights(model, 7.0)
    average.update(model)
    torch.testing.assert_close(average.model.state_dict()["1.running_mean"], torch.full((2,), 4.0), rtol=0, atol=1e-6)
    # The batch norm step counter is copied from the model, not averaged.
    assert int(average.model.state_dict()["1.num_batches_tracked"]) == 7
    assert average.updates == 4


def test_weight_average_leaves_model_alone() -> None:
    model = torch.nn.Linear(3, 1)
    _set_weights(model, 2.0)
    average = WeightAverage(model, decay=0.5)
    _set_weights(model, 0.0)
    average.update(model)
    average.update(model)
    assert torch.equal(model.weight, torch.zeros(1, 3))
    assert not average.model.weight.requires_grad
    assert not average.model.training


@pytest.mark.parametrize("decay", [1.0, -0.1])
def test_weight_average_decay_out_of_range(decay: float) -> None:
    with pytest.raises(FedError, match=rf"invalid --ema {decay}: expected a decay between 0 and 1 \(exclusive\), or 0 for no average"):
        WeightAverage(torch.nn.Linear(1, 1), decay)


def test_run_negative_ema_rejected(tiny: tuple[Path, Path], tmp_path: Path) -> None:
    data, _ = tiny
    threads = torch.get_num_threads()
    try:
        with pytest.raises(FedError, match=r"invalid --ema -0\.5: expected a decay between 0 and 1"):
            train(parse(tiny_train_args(data, tmp_path / "run", "--ema", "-0.5")))
    finally:
        torch.set_num_threads(threads)


def test_soft_cross_entropy_one_hot_matches_torch() -> None:
    generator = torch.Generator().manual_seed(0)
    logits = torch.randn(6, 8, generator=generator)
    labels = torch.tensor([0, 1, 1, 5, 7, 7])
    weights = torch.rand(8, generator=generator) + 0.5
    expected = F.cross_entropy(logits, labels, weight=weights)
    actual = soft_cross_entropy(logits, F.one_hot(labels, 8).float(), weights)
    torch.testing.assert_close(actual, expected)


def test_soft_cross_entropy_distribution_hand_built() -> None:
    logits = torch.log(torch.tensor([[0.5, 0.25, 0.25]]))
    targets = torch.tensor([[0.5, 0.5, 0.0]])
    expected = -(0.5 * math.log(0.5) + 0.5 * math.log(0.25))
    actual = soft_cross_entropy(logits, targets, torch.ones(3))
    assert actual.item() == pytest.approx(expected, rel=1e-6)


@pytest.mark.slow
def test_torchrun_two_processes_gloo(tiny: tuple[Path, Path], tmp_path: Path) -> None:
    import os
    import subprocess
    import sys

    from tests.fixtures_data import tiny_train_args
    from tests.helpers import PROJECT_DIR

    data, _ = tiny
    out = tmp_path / "ddp"
    command = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
        "-m", "fedcore", "train", *tiny_train_args(data, out, "--epochs", "1"), "--device", "cpu",
    ]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(PROJECT_DIR)}
    completed = subprocess.run(command, cwd=PROJECT_DIR, env=env, capture_output=True, text=True, timeout=600)
    assert completed.returncode == 0, completed.stderr[-3000:]
    with (out / "log.csv").open(newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    assert [row["epoch"] for row in rows] == ["1"]
    assert (out / "model.safetensors").is_file()
    assert read_metadata(out / "model.safetensors").temperature > 0


@pytest.mark.slow
def test_init_from_fed_checkpoint(tiny: tuple[Path, Path], tmp_path: Path) -> None:
    from fedcore.checkpoint import load_checkpoint
    from fedcore.model import build_vgg16

    _, run = tiny
    source, _ = load_checkpoint(run / "model.safetensors")
    model = build_vgg16()
    train_module.initialise_weights(model, run / "model.safetensors")
    assert_same_tensors(model.state_dict(), source.state_dict())

    wrong = build_vgg16(hidden=64)
    with pytest.raises(FedError, match="--hidden"):
        train_module.initialise_weights(wrong, run / "model.safetensors")
