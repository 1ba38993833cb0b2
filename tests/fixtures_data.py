"""Builders of small datasets in the FER+, AffectNet and folder layouts, and a cached tiny training run."""

from __future__ import annotations

import csv
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from fedcore.datasets import FERPLUS_SPLIT_FOLDERS

FERPLUS_BOX = "(0, 0, 48, 48)"
# Images per split of the generated FER+ dataset that the tiny training run uses.
TINY_SPLIT_SIZES = {"train": 48, "valid": 24, "test": 16}
TINY_RUN_ARGS = ("--epochs", "2", "--batch-size", "16", "--threads", "1", "--seed", "0")


def write_gray_png(path: Path, value: int, *, size: int = 48) -> None:
    """Write a uniform grayscale PNG whose pixel value identifies it after loading."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((size, size), value, dtype=np.uint8), mode="L").save(path)


def write_noise_png(path: Path, rng: np.random.Generator, *, size: int = 48) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(rng.integers(0, 256, (size, size), dtype=np.uint8), mode="L").save(path)


def ferplus_row(name: str, **votes: int) -> list[str]:
    """Return a FER+ label.csv row with ``votes`` keyed by FER+'s own column names."""
    columns = ("neutral", "happiness", "surprise", "sadness", "anger", "disgust", "fear", "contempt", "unknown", "NF")
    unknown = set(votes) - set(columns)
    if unknown:
        raise ValueError(f"unknown FER+ vote columns {sorted(unknown)}, expected names from {columns}")
    return [name, FERPLUS_BOX, *(str(votes.get(column, 0)) for column in columns)]


def write_label_csv(folder: Path, rows: Sequence[Sequence[str]]) -> Path:
    """Write a headerless FER+ label.csv, where rows may be malformed on purpose."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "label.csv"
    with path.open("w", newline="", encoding="utf-8") as handle:
        csv.writer(handle).writerows(rows)
    return path


def make_tiny_ferplus(root: Path, *, sizes: dict[str, int] = TINY_SPLIT_SIZES, seed: int = 0) -> Path:
    """Write a FER+-layout dataset of noise images whose majority classes cycle through all 8 classes.

    Every image has a strict majority (7 votes) and 3 votes spread over two
    other classes, so both protocols keep every image.
    """
    rng = np.random.default_rng(seed)
    fer_columns = ("neutral", "happiness", "sadness", "surprise", "fear", "disgust", "anger", "contempt")
    for split, count in sizes.items():
        folder = root / FERPLUS_SPLIT_FOLDERS[split]
        rows = []
        for i in range(count):
            name = f"{split}{i:04d}.png"
            write_noise_png(folder / name, rng)
            top = i % 8
            votes = {fer_columns[top]: 7, fer_columns[(top + 1) % 8]: 2, fer_columns[(top + 3) % 8]: 1}
            rows.append(ferplus_row(name, **votes))
        write_label_csv(folder, rows)
    return root


def tiny_train_args(data: Path, out: Path, *extra: str) -> list[str]:
    return ["--data", str(data), "--out", str(out), *TINY_RUN_ARGS, *extra]


_TINY_RUNS: dict[str, Path] = {}


def run_training(argv: list[str]) -> int:
    """Run ``fedcore.train.run`` and restore the process's thread count that ``--threads`` changes."""
    from fedcore import train

    threads = torch.get_num_threads()
    try:
        return train.run(train.get_args_parser().parse_args(argv))
    finally:
        torch.set_num_threads(threads)


def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """Return (dataset root, run folder) of a 2-epoch run, trained once per test session."""
    if "run" not in _TINY_RUNS:
        base = tmp_path_factory.mktemp("tiny-run")
        data = make_tiny_ferplus(base / "ferplus")
        out = base / "run"
        code = run_training(tiny_train_args(data, out))
        if code != 0:
            raise RuntimeError(f"the tiny training run failed with exit code {code}; see the log above")
        _TINY_RUNS["data"], _TINY_RUNS["run"] = data, out
    return _TINY_RUNS["data"], _TINY_RUNS["run"]

