"""Tests for fedcore.datasets: FER+, AffectNet and folder layouts, label protocols, class aliases."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

from fedcore.constants import CLASSES
from fedcore.datasets import class_index, load_split, majority_labels
from fedcore.errors import DatasetError
from tests.fixtures_data import ferplus_row, write_gray_png, write_label_csv
from tests.helpers import FERPLUS_DIR

# Rows of the FER+ edge-case fixture: (file name, pixel value or None for no image file, label.csv row).
FERPLUS_CASES: list[tuple[str, int | None, list[str]]] = [
    ("clear.png", 10, ferplus_row("clear.png", neutral=6, happiness=3, surprise=1)),
    ("tie.png", 20, ferplus_row("tie.png", neutral=2, happiness=4, sadness=4)),
    ("unknown.png", 30, ferplus_row("unknown.png", neutral=4, unknown=6)),
    ("notface.png", 40, ferplus_row("notface.png", happiness=3, NF=7)),
    ("short.png", 50, ["short.png", "(0, 0, 48, 48)", "1", "2"]),
    ("text.png", 60, ["text.png", "(0, 0, 48, 48)", "1", "x", "0", "0", "0", "0", "0", "0", "0", "0"]),
    ("missing.png", None, ferplus_row("missing.png", anger=8, disgust=2)),
    ("anger.png", 70, ferplus_row("anger.png", anger=5, disgust=2, contempt=1, unknown=2)),
    ("single.png", 80, ferplus_row("single.png", sadness=1, surprise=1, fear=1)),
    ("lone.png", 90, ferplus_row("lone.png", contempt=1)),
    ("blank.png", 100, ferplus_row("blank.png")),
    ("nan.png", 110, ["nan.png", "(0, 0, 48, 48)", "nan", "9", "0", "0", "0", "0", "0", "0", "0", "0"]),
    ("inf.png", 120, ["inf.png", "(0, 0, 48, 48)", "0", "inf", "0", "0", "0", "0", "0", "0", "0", "0"]),
]


def one_hot(name: str) -> list[float]:
    target = [0.0] * len(CLASSES)
    target[CLASSES.index(name)] = 1.0
    return target


@pytest.fixture
def ferplus_root(tmp_path: Path) -> Path:
    folder = tmp_path / "ferplus" / "FER2013Train"
    for name, value, _ in FERPLUS_CASES:
        if value is not None:
            write_gray_png(folder / name, value)
    write_label_csv(folder, [row for _, _, row in FERPLUS_CASES])
    return tmp_path / "ferplus"


@pytest.fixture
def affectnet_root(tmp_path: Path) -> Path:
    root = tmp_path / "affectnet"
    rows = [
        ("1/a.png", "0", 11),
        ("1/b.png", "7", 12),
        ("1/c.png", "8", 13),
        ("1/d.png", "9", 14),
        ("1/e.png", "10", 15),
        ("1/f.png", "happy", 16),
        ("1/gone.png", "3", None),
        ("2/g.png", " 3 ", 17),
        ("1/h.png", "-1", 18),
    ]
    for relative, _, value in rows:
        if value is None:
            continue
        # One image sits under images/, the other base folder the reader searches.
        base = root / "images" if relative.startswith("2/") else root
        write_gray_png(base / relative, value, size=64)
    with (root / "training.csv").open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["subDirectory_filePath", "face_x", "expression"])
        writer.writerows([relative, "0", code] for relative, code, _ in rows)
    return root


# FER+ layout


def test_ferplus_majority_kept_names(ferplus_root: Path) -> None:
    split = load_split(ferplus_root, "train", protocol="majority")
    assert split.names == ["clear.png", "anger.png", "lone.png"]


def test_ferplus_majority_exact_targets(ferplus_root: Path) -> None:
    split = load_split(ferplus_root, "train", protocol="majority")
    expected = [one_hot("neutral"), one_hot("anger"), one_hot("contempt")]
    np.testing.assert_array_equal(split.targets, np.array(expected, dtype=np.float32))
    assert split.labels.tolist() == [0, 6, 7]


def test_ferplus_majority_images_match_names(ferplus_root: Path) -> None:
    split = load_split(ferplus_root, "train", protocol="majority")
    assert split.images.shape == (3, 48, 48)
    assert split.images.dtype == np.uint8
    assert split.images[:, 0, 0].tolist() == [10, 70, 90]


def test_ferplus_probability_kept_names(ferplus_root: Path) -> None:
    split = load_split(ferplus_root, "train", protocol="probability")
    assert split.names == ["clear.png", "tie.png", "anger.png", "single.png", "lone.png"]


def test_ferplus_probability_exact_targets(ferplus_root: Path) -> None:
    split = load_split(ferplus_root, "train", protocol="probability")
    # The single surprise vote of clear.png counts as noise, but single.png has only single votes, so they all stay.
    expected = np.zeros((5, 8), dtype=np.float32)
    expected[0, [0, 1]] = [6 / 9, 3 / 9]
    expected[1, [0, 1, 2]] = [0.2, 0.4, 0.4]
    expected[2, [5, 6]] = [2 / 7, 5 / 7]
    expected[3, [2, 3, 4]] = [1 / 3, 1 / 3, 1 / 3]
    expected[4, 7] = 1.0
    np.testing.assert_allclose(split.targets, expected, rtol=0, atol=1e-6)


def test_ferplus_probability_labels_mark_ties(ferplus_root: Path) -> None:
    split = load_split(ferplus_root, "train", protocol="probability")
    assert split.labels.tolist() == [0, -1, 6, -1, 7]
    assert split.class_counts().tolist() == [1, 0, 0, 0, 0, 0, 1, 1]


def test_ferplus_limit_keeps_first_rows(ferplus_root: Path) -> None:
    split = load_split(ferplus_root, "train", protocol="probability", limit=2)
    assert split.names == ["clear.png", "tie.png"]


def test_ferplus_rgb_mode_resizes(ferplus_root: Path) -> None:
    split = load_split(ferplus_root, "train", image_size=64, color_mode="RGB")
    assert split.images.shape == (3, 64, 64, 3)
    assert split.images[1, 10, 10].tolist() == [70, 70, 70]


def test_ferplus_split_aliases(ferplus_root: Path) -> None:
    split = load_split(ferplus_root, "Training")
    assert split.names == ["clear.png", "anger.png", "lone.png"]
    assert "ferplus/train" in split.description


def test_ferplus_missing_label_file(ferplus_root: Path) -> None:
    with pytest.raises(DatasetError, match=r"FER\+ label file not found: .*FER2013Valid.label\.csv"):
        load_split(ferplus_root, "valid")


def test_ferplus_empty_split_rejected(tmp_path: Path) -> None:
    folder = tmp_path / "FER2013Test"
    write_gray_png(folder / "tie.png", 1)
    write_label_csv(folder, [ferplus_row("tie.png", neutral=5, happiness=5)])
    with pytest.raises(DatasetError, match="'test' .* contains no usable images"):
        load_split(tmp_path, "test", protocol="majority")


def test_ferplus_unreadable_image_named(tmp_path: Path) -> None:
    folder = tmp_path / "FER2013Train"
    folder.mkdir()
    (folder / "broken.png").write_bytes(b"not a png")
    write_label_csv(folder, [ferplus_row("broken.png", neutral=9)])
    with pytest.raises(DatasetError, match="cannot read dataset image .*broken.png"):
        load_split(tmp_path, "train")


# AffectNet layout


def test_affectnet_kept_names_and_labels(affectnet_root: Path) -> None:
    split = load_split(affectnet_root, "train", data_format="affectnet")
    assert split.names == ["a.png", "b.png", "g.png"]
    assert split.labels.tolist() == [0, 7, 3]


def test_affectnet_targets_one_hot(affectnet_root: Path) -> None:
    split = load_split(affectnet_root, "train", data_format="affectnet")
    expected = np.array([one_hot("neutral"), one_hot("contempt"), one_hot("surprise")], dtype=np.float32)
    np.testing.assert_array_equal(split.targets, expected)


def test_affectnet_images_resized(affectnet_root: Path) -> None:
    split = load_split(affectnet_root, "train", data_format="affectnet", image_size=48)
    assert split.images.shape == (3, 48, 48)
    assert split.images[:, 5, 5].tolist() == [11, 12, 17]


def test_affectnet_missing_csv(affectnet_root: Path) -> None:
    with pytest.raises(DatasetError, match=r"split 'valid' not found .*val\.csv"):
        load_split(affectnet_root, "val", data_format="affectnet")


def test_affectnet_missing_label_column(tmp_path: Path) -> None:
    (tmp_path / "test.csv").write_text("path,valence\nx.png,0.5\n", encoding="utf-8")
    with pytest.raises(DatasetError, match="no expression column found"):
        load_split(tmp_path, "test", data_format="affectnet")


# Folder layout


def test_folder_aliases_map_to_indices(tmp_path: Path) -> None:
    write_gray_png(tmp_path / "train" / "happiness" / "h1.png", 1)
    write_gray_png(tmp_path / "train" / "happiness" / "h2.jpg", 2)
    write_gray_png(tmp_path / "train" / "angry" / "a1.png", 3)
    write_gray_png(tmp_path / "train" / "neutral" / "n1.png", 4)
    (tmp_path / "train" / "neutral" / "notes.txt").write_text("not an image", encoding="utf-8")
    split = load_split(tmp_path, "train", data_format="folder")
    assert split.names == ["a1.png", "h1.png", "h2.jpg", "n1.png"]
    assert split.labels.tolist() == [6, 1, 1, 0]


def test_folder_validation_alias(tmp_path: Path) -> None:
    write_gray_png(tmp_path / "val" / "sad" / "s.png", 5)
    split = load_split(tmp_path, "valid", data_format="folder")
    assert split.labels.tolist() == [2]


def test_folder_unknown_class_named(tmp_path: Path) -> None:
    write_gray_png(tmp_path / "train" / "happy" / "h.png", 1)
    write_gray_png(tmp_path / "train" / "bored" / "b.png", 2)
    with pytest.raises(DatasetError, match="unknown class name 'bored'"):
        load_split(tmp_path, "train", data_format="folder")


def test_folder_missing_split(tmp_path: Path) -> None:
    write_gray_png(tmp_path / "train" / "happy" / "h.png", 1)
    with pytest.raises(DatasetError, match="split folder for 'test' not found"):
        load_split(tmp_path, "test", data_format="folder")


def test_progress_every_hundred_images(tmp_path: Path) -> None:
    for i in range(250):
        write_gray_png(tmp_path / "train" / "happy" / f"h{i:03d}.png", i, size=8)
    calls: list[tuple[int, int]] = []
    split = load_split(tmp_path, "train", data_format="folder", image_size=8, progress=lambda *call: calls.append(call))
    assert len(split.names) == 250
    assert calls == [(100, 250), (200, 250), (250, 250)]


def test_folder_empty_split(tmp_path: Path) -> None:
    (tmp_path / "train" / "happy").mkdir(parents=True)
    with pytest.raises(DatasetError, match="contains no usable images"):
        load_split(tmp_path, "train", data_format="folder")


# Argument checks and helpers


def test_load_split_missing_root(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="dataset folder not found: .*absent"):
        load_split(tmp_path / "absent", "train")


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"data_format": "imagenet"}, "unknown dataset format 'imagenet'"),
        ({"protocol": "vote"}, "unknown label protocol 'vote'"),
    ],
)
def test_load_split_rejects_options(tmp_path: Path, options: dict[str, str], message: str) -> None:
    with pytest.raises(DatasetError, match=message):
        load_split(tmp_path, "train", **options)


def test_load_split_unknown_split(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="unknown split 'holdout'; use one of train, valid, test"):
        load_split(tmp_path, "holdout")


@pytest.mark.parametrize(
    ("name", "index"),
    [("neutral", 0), ("happiness", 1), ("Sadness", 2), ("surprised", 3), ("afraid", 4),
     ("disgusted", 5), ("angry", 6), (" contempt ", 7)],
)  # fmt: skip
def test_class_index_aliases(name: str, index: int) -> None:
    assert class_index(name) == index


def test_class_index_unknown_name() -> None:
    with pytest.raises(DatasetError, match="unknown class name 'bored'; expected one of"):
        class_index("bored")


def test_majority_labels_ties_are_negative() -> None:
    targets = np.array([[0.5, 0.5, 0, 0, 0, 0, 0, 0], [0.1, 0.2, 0.7, 0, 0, 0, 0, 0]], dtype=np.float32)
    assert majority_labels(targets).tolist() == [-1, 2]


# Real FER+ data

FERPLUS_MAJORITY_COUNTS = {
    # Per split, in our class order: neutral, happy, sad, surprise, fear, disgust, anger, contempt.
    "train": [9360, 7408, 3418, 3368, 651, 175, 2395, 165],
    "valid": [1241, 877, 396, 441, 70, 31, 314, 26],
    "test": [1160, 908, 424, 424, 96, 20, 312, 27],
}


@pytest.mark.slow
@pytest.mark.parametrize("split_name", ["train", "valid", "test"])
def test_ferplus_real_majority_counts(split_name: str) -> None:
    if not (FERPLUS_DIR / "FER2013Train" / "label.csv").is_file():
        pytest.skip(f"FER+ data not found at {FERPLUS_DIR}")
    split = load_split(FERPLUS_DIR, split_name, protocol="majority")
    assert split.class_counts().tolist() == FERPLUS_MAJORITY_COUNTS[split_name]
    assert len(split) == sum(FERPLUS_MAJORITY_COUNTS[split_name])
