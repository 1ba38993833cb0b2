"""Tests for fedcore.evaluate on the model of a tiny real training run."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from fedcore.checkpoint import load_checkpoint
from fedcore.constants import CLASSES
from fedcore.datasets import load_split
from fedcore.errors import CheckpointError
from fedcore.evaluate import evaluate, format_report, get_args_parser, most_confused_pairs, run, write_figures
from fedcore.tensors import predict_logits
from tests.fixtures_data import TINY_SPLIT_SIZES, tiny_run

FIGURES = ("confusion_matrix.png", "reliability.png")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return tiny_run(tmp_path_factory)


@pytest.fixture(scope="module")
def report(tiny: tuple[Path, Path]) -> dict:
    data, run_dir = tiny
    return evaluate(run_dir / "model.safetensors", data, split="test")


@pytest.mark.slow
def test_report_has_metrics(report: dict) -> None:
    for key in ("accuracy", "macro_f1", "ece", "ece_uncalibrated", "per_class", "confusion_matrix", "temperature"):
        assert key in report, key
    assert 0 <= report["accuracy"] <= 1
    assert 0 <= report["macro_f1"] <= 1
    assert 0 <= report["ece"] <= 1
    assert list(report["per_class"]) == list(CLASSES)


@pytest.mark.slow
def test_report_counts_every_image(report: dict, tiny: tuple[Path, Path]) -> None:
    data, _ = tiny
    labels = load_split(data, "test", protocol="majority").labels
    matrix = np.asarray(report["confusion_matrix"])
    assert matrix.shape == (8, 8)
    assert matrix.sum() == TINY_SPLIT_SIZES["test"]
    assert matrix.sum(axis=1).tolist() == np.bincount(labels, minlength=8).tolist()
    assert report["images"] == TINY_SPLIT_SIZES["test"]


@pytest.mark.slow
def test_report_uses_checkpoint_temperature(report: dict, tiny: tuple[Path, Path]) -> None:
    _, run_dir = tiny
    meta = json.loads((run_dir / "model.json").read_text(encoding="utf-8"))
    assert report["temperature"] == meta["temperature"]
    assert report["model"]["name"] == meta["name"]
    assert report["dataset"]["protocol"] == "majority"
    assert report["flip_average"] is meta["flip_average"] is True


@pytest.mark.slow
def test_report_scores_mirror_average(report: dict, tiny: tuple[Path, Path]) -> None:
    data, run_dir = tiny
    model, info = load_checkpoint(run_dir / "model.safetensors")
    test_set = load_split(data, "test", protocol="majority")
    logits = predict_logits(
        model, test_set.images, mean=info.mean, std=info.std, mixed_precision=False, flip_average=True
    )
    assert report["accuracy"] == float((logits.argmax(axis=1) == test_set.labels).mean())


@pytest.mark.slow
def test_report_limit_counts(tiny: tuple[Path, Path]) -> None:
    data, run_dir = tiny
    limited = evaluate(run_dir / "model.safetensors", data, split="valid", limit=5)
    assert np.asarray(limited["confusion_matrix"]).sum() == 5


@pytest.mark.slow
def test_format_report_lists_classes(report: dict) -> None:
    text = format_report(report)
    for name in CLASSES:
        assert f"\n{name:<10} " in text, name
    assert "most confused" in text


@pytest.mark.slow
def test_most_confused_sorted(report: dict) -> None:
    pairs = most_confused_pairs(report, top=3)
    shares = [share for _, _, share in pairs]
    assert len(pairs) == 3
    assert shares == sorted(shares, reverse=True)
    assert all(true != predicted for true, predicted, _ in pairs)


@pytest.mark.slow
def test_write_figures_valid_pngs(report: dict, tmp_path: Path) -> None:
    write_figures(report, tmp_path / "figures")
    for name in FIGURES:
        with Image.open(tmp_path / "figures" / name) as image:
            image.verify()
            assert image.format == "PNG"


@pytest.mark.slow
def test_run_writes_report_and_figures(tiny: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data, run_dir = tiny
    out = tmp_path / "eval"
    args = get_args_parser().parse_args(
        ["--data", str(data), "--split", "valid", "--checkpoint", str(run_dir / "model.safetensors"), "--out", str(out)]
    )
    assert run(args) == 0
    written = json.loads((out / "valid-report.json").read_text(encoding="utf-8"))
    assert np.asarray(written["confusion_matrix"]).sum() == TINY_SPLIT_SIZES["valid"]
    for name in FIGURES:
        with Image.open(out / name) as image:
            assert image.format == "PNG"
            assert image.size[0] > 100
    assert "accuracy" in capsys.readouterr().out


def test_run_missing_checkpoint_fails(tmp_path: Path) -> None:
    args = get_args_parser().parse_args(["--data", str(tmp_path), "--checkpoint", str(tmp_path / "absent.safetensors")])
    assert run(args) == 1


def test_evaluate_missing_checkpoint_raises(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="model weights not found"):
        evaluate(tmp_path / "absent.safetensors", tmp_path)
