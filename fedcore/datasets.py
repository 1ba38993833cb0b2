"""Readers for face-expression datasets, loaded into memory as uint8 arrays.

Three layouts are supported:

- ``ferplus``: split folders ``FER2013Train``, ``FER2013Valid``, ``FER2013Test``,
  each with PNG crops and a headerless ``label.csv`` of 10 vote counts per image
  (neutral, happiness, surprise, sadness, anger, disgust, fear, contempt,
  unknown, not-a-face).
- ``affectnet``: a CSV per split (``train.csv``, ``val.csv``, ``test.csv``, or
  AffectNet's own ``training.csv`` and ``validation.csv``) with an image path
  column and an ``expression`` code 0-7 in our class order; other codes
  (none, uncertain, no face) are skipped.
- ``folder``: ``<split>/<class name>/<image>``, one folder per class.
"""

from __future__ import annotations

import csv
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from fedcore.constants import CLASSES
from fedcore.errors import DatasetError

logger = logging.getLogger(__name__)

FORMATS = ("ferplus", "affectnet", "folder")
PROTOCOLS = ("majority", "probability")
SPLIT_ALIASES = {
    "train": "train",
    "training": "train",
    "valid": "valid",
    "val": "valid",
    "validation": "valid",
    "test": "test",
}
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff")

FERPLUS_SPLIT_FOLDERS = {"train": "FER2013Train", "valid": "FER2013Valid", "test": "FER2013Test"}
# Column positions of our 8 classes among FER+'s vote columns
# (neutral, happiness, surprise, sadness, anger, disgust, fear, contempt, unknown, NF).
FERPLUS_COLUMNS = (0, 1, 3, 2, 6, 5, 4, 7)
FERPLUS_UNKNOWN, FERPLUS_NOT_FACE = 8, 9

AFFECTNET_CSV_NAMES = {
    "train": ("train.csv", "training.csv"),
    "valid": ("val.csv", "valid.csv", "validation.csv"),
    "test": ("test.csv",),
}
AFFECTNET_PATH_COLUMNS = ("subDirectory_filePath", "path", "image", "file", "filename", "pth")
AFFECTNET_LABEL_COLUMNS = ("expression", "label", "emotion")

# Folder and CSV class names accepted for each of our classes.
CLASS_ALIASES: dict[str, str] = {name: name for name in CLASSES}
CLASS_ALIASES.update(
    {
        "happiness": "happy",
        "joy": "happy",
        "sadness": "sad",
        "surprised": "surprise",
        "fearful": "fear",
        "afraid": "fear",
        "disgusted": "disgust",
        "angry": "anger",
        "contemptuous": "contempt",
        "calm": "neutral",
    }
)


@dataclass
class FaceArrays:
    """A dataset split held in memory.

    ``images`` is uint8 with shape (N, H, W) for grayscale or (N, H, W, 3) for RGB.
    ``targets`` is float32 (N, 8): the label distribution each image is trained on.
    ``labels`` is int64 (N,): the majority class, or -1 where there is none.
    """

    images: np.ndarray
    targets: np.ndarray
    labels: np.ndarray
    names: list[str]
    description: str

    def __len__(self) -> int:
        return len(self.names)

    def class_counts(self) -> np.ndarray:
        valid = self.labels[self.labels >= 0]
        return np.bincount(valid, minlength=len(CLASSES))


def normalize_split(split: str) -> str:
    try:
        return SPLIT_ALIASES[split.lower()]
    except KeyError:
        raise DatasetError(f"unknown split {split!r}; use one of train, valid, test") from None


def class_index(name: str) -> int:
    """Map a class name (or a common alias such as 'happiness') to its index in CLASSES."""
    key = name.strip().lower()
    if key not in CLASS_ALIASES:
        raise DatasetError(
            f"unknown class name {name!r}; expected one of {list(CLASSES)} "
            f"or an alias such as {sorted(set(CLASS_ALIASES) - set(CLASSES))}"
        )
    return CLASSES.index(CLASS_ALIASES[key])


def load_split(
    root: str | Path,
    split: str,
    *,
    data_format: str = "ferplus",
    protocol: str = "majority",
    image_size: int = 48,
    color_mode: str = "L",
    limit: int | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> FaceArrays:
    """Read one split of a dataset in any supported layout."""
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(f"dataset folder not found: {root}")
    if data_format not in FORMATS:
        raise DatasetError(f"unknown dataset format {data_format!r}; use one of {FORMATS}")
    if protocol not in PROTOCOLS:
        raise DatasetError(f"unknown label protocol {protocol!r}; use one of {PROTOCOLS}")
    split = normalize_split(split)

    if data_format == "ferplus":
        entries = _ferplus_entries(root, split, protocol)
    elif data_format == "affectnet":
        entries = _affectnet_entries(root, split)
    else:
        entries = _folder_entries(root, split)
    if limit is not None:
        entries = entries[:limit]
    if not entries:
        raise DatasetError(f"split {split!r} of {root} ({data_format}) contains no usable images")

    images = _read_images([path for path, _ in entries], image_size, color_mode, progress)
    targets = np.stack([target for _, target in entries]).astype(np.float32)
    labels = majority_labels(targets)
    description = f"{data_format}:{root.name}/{split} ({protocol}, {len(entries)} images)"
    names = [path.name for path, _ in entries]
    return FaceArrays(images=images, targets=targets, labels=labels, names=names, description=description)


def majority_labels(targets: np.ndarray) -> np.ndarray:
    """Return each row's top class where it strictly exceeds every other class, else -1."""
    top = targets.argmax(axis=1)
    ranked = np.sort(targets, axis=1)
    unique_top = ranked[:, -1] > ranked[:, -2]
    return np.where(unique_top, top, -1).astype(np.int64)


def _ferplus_entries(root: Path, split: str, protocol: str) -> list[tuple[Path, np.ndarray]]:
    folder = root / FERPLUS_SPLIT_FOLDERS[split]
    label_file = folder / "label.csv"
    if not label_file.is_file():
        raise DatasetError(f"FER+ label file not found: {label_file}")

    entries: list[tuple[Path, np.ndarray]] = []
    skipped_rows = skipped_labels = missing_files = 0
    with label_file.open(newline="", encoding="utf-8") as handle:
        for line_number, row in enumerate(csv.reader(handle), start=1):
            try:
                votes = np.array([float(v) for v in row[2:12]], dtype=np.float32)
                if len(votes) != 10 or not np.isfinite(votes).all() or (votes < 0).any():
                    raise ValueError("expected 10 finite, non-negative vote counts")
            except (ValueError, IndexError) as exc:
                skipped_rows += 1
                logger.warning("%s line %d skipped: %s", label_file, line_number, exc)
                continue
            ranked = np.sort(votes)[::-1]
            top = int(votes.argmax())
            # Both protocols drop faces whose votes lean to unknown or not-a-face.
            if ranked[0] <= 0 or top in (FERPLUS_UNKNOWN, FERPLUS_NOT_FACE):
                skipped_labels += 1
                continue
            if protocol == "majority":
                # The majority protocol keeps a face when one class has strictly
                # more votes than every other; ties are dropped.
                if ranked[0] == ranked[1]:
                    skipped_labels += 1
                    continue
                target = np.zeros(len(CLASSES), dtype=np.float32)
                target[FERPLUS_COLUMNS.index(top)] = 1.0
            else:
                class_votes = votes[list(FERPLUS_COLUMNS)]
                # A single vote for a class is treated as annotator noise, as in
                # the FER+ authors' reference code, unless nothing else remains.
                denoised = np.where(class_votes > 1, class_votes, 0)
                if denoised.sum() > 0:
                    class_votes = denoised
                target = class_votes / class_votes.sum()
            path = folder / row[0].strip()
            if not path.is_file():
                missing_files += 1
                continue
            entries.append((path, target))
    if skipped_rows or missing_files:
        logger.warning(
            "%s: %d malformed rows and %d missing image files skipped", label_file, skipped_rows, missing_files
        )
    logger.info("%s: %d images kept, %d dropped by the %s protocol", folder, len(entries), skipped_labels, protocol)
    return entries


def _affectnet_entries(root: Path, split: str) -> list[tuple[Path, np.ndarray]]:
    csv_file = next((root / name for name in AFFECTNET_CSV_NAMES[split] if (root / name).is_file()), None)
    if csv_file is None:
        raise DatasetError(
            f"AffectNet label file for split {split!r} not found in {root}; "
            f"expected one of {list(AFFECTNET_CSV_NAMES[split])}"
        )
    with csv_file.open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        fields = reader.fieldnames or []
        path_column = _pick_column(fields, AFFECTNET_PATH_COLUMNS, csv_file, "image path")
        label_column = _pick_column(fields, AFFECTNET_LABEL_COLUMNS, csv_file, "expression")
        entries: list[tuple[Path, np.ndarray]] = []
        bad_rows = ignored = missing = 0
        for line_number, row in enumerate(reader, start=2):
            try:
                code = int(str(row[label_column]).strip())
            except (TypeError, ValueError):
                bad_rows += 1
                logger.warning("%s line %d skipped: expression %r is not an integer", csv_file, line_number, row.get(label_column))
                continue
            if not 0 <= code < len(CLASSES):
                ignored += 1
                continue
            relative = str(row[path_column] or "").strip()
            path = _resolve_image(root, relative)
            if path is None:
                missing += 1
                continue
            target = np.zeros(len(CLASSES), dtype=np.float32)
            target[code] = 1.0
            entries.append((path, target))
    logger.info(
        "%s: %d images kept, %d with codes outside 0-7 ignored, %d malformed rows, %d missing files",
        csv_file, len(entries), ignored, bad_rows, missing,
    )
    return entries


def _pick_column(fields: Sequence[str], candidates: Sequence[str], source: Path, what: str) -> str:
    lowered = {field.strip().lower(): field for field in fields}
    for candidate in candidates:
        if candidate.lower() in lowered:
            return lowered[candidate.lower()]
    raise DatasetError(f"{source}: no {what} column found; expected one of {list(candidates)}, got {list(fields)}")


def _resolve_image(root: Path, relative: str) -> Path | None:
    if not relative:
        return None
    for base in (root, root / "images", root / "Manually_Annotated_Images"):
        candidate = base / relative
        if candidate.is_file():
            return candidate
    return None


def _folder_entries(root: Path, split: str) -> list[tuple[Path, np.ndarray]]:
    split_dir = next(
        (root / name for name, canonical in SPLIT_ALIASES.items() if canonical == split and (root / name).is_dir()),
        None,
    )
    if split_dir is None:
        raise DatasetError(f"split folder for {split!r} not found in {root}; expected e.g. {root / split}")
    entries: list[tuple[Path, np.ndarray]] = []
    for class_dir in sorted(p for p in split_dir.iterdir() if p.is_dir()):
        index = class_index(class_dir.name)
        target = np.zeros(len(CLASSES), dtype=np.float32)
        target[index] = 1.0
        for path in sorted(class_dir.iterdir()):
            if path.suffix.lower() in IMAGE_SUFFIXES and path.is_file():
                entries.append((path, target))
    return entries


def _read_images(
    paths: Sequence[Path], size: int, color_mode: str, progress: Callable[[int, int], None] | None
) -> np.ndarray:
    shape = (len(paths), size, size) if color_mode == "L" else (len(paths), size, size, 3)
    images = np.empty(shape, dtype=np.uint8)
    for i, path in enumerate(paths):
        try:
            with Image.open(path) as image:
                image = image.convert(color_mode)
                if image.size != (size, size):
                    image = image.resize((size, size), Image.Resampling.BILINEAR)
                images[i] = np.asarray(image)
        except (OSError, UnidentifiedImageError) as exc:
            raise DatasetError(f"cannot read dataset image {path}: {exc}") from exc
        if progress is not None and ((i + 1) % 100 == 0 or i + 1 == len(paths)):
            progress(i + 1, len(paths))
    return images
