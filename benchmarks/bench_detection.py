"""Face detection quality and speed on WIDER FACE validation images with official boxes.

Prints average precision at IoU 0.5 (all-point interpolation) and precision
and recall at the pipeline's default confidence of 0.9, for all annotated
faces and for faces at least 20 pixels high (the detector's default minimum
face size), plus the median detection time per image. Faces marked invalid in
the annotations are ignored: a detection on one is neither a hit nor a false
alarm. Usage:

    python benchmarks/bench_detection.py [--wider DIR] [--limit N]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

PROJECT_DIR = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PROJECT_DIR))

from fedcore.detect import FaceDetector  # noqa: E402
from fedcore.imageio import load_image  # noqa: E402

DEFAULT_WIDER = PROJECT_DIR.parent / "shared" / "data" / "wider-face-val"
IOU_THRESHOLD = 0.5


def read_annotations(path: Path) -> dict[str, np.ndarray]:
    """Parse the WIDER FACE box file into {relative image path: rows of x, y, w, h, invalid}."""
    lines = path.read_text().splitlines()
    boxes: dict[str, np.ndarray] = {}
    i = 0
    while i < len(lines):
        name = lines[i].strip()
        count = int(lines[i + 1])
        rows = []
        for line in lines[i + 2 : i + 2 + max(count, 1)]:
            values = [int(v) for v in line.split()]
            if count > 0:
                rows.append([values[0], values[1], values[2], values[3], values[7]])
        boxes[name] = np.asarray(rows, dtype=np.int64).reshape(-1, 5)
        i += 2 + max(count, 1)
    return boxes


def iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of every (x, y, w, h) box in ``a`` against every box in ``b``."""
    ax2, ay2 = a[:, 0] + a[:, 2], a[:, 1] + a[:, 3]
    bx2, by2 = b[:, 0] + b[:, 2], b[:, 1] + b[:, 3]
    width = np.clip(np.minimum(ax2[:, None], bx2[None]) - np.maximum(a[:, None, 0], b[None, :, 0]), 0, None)
    height = np.clip(np.minimum(ay2[:, None], by2[None]) - np.maximum(a[:, None, 1], b[None, :, 1]), 0, None)
    intersection = width * height
    union = (a[:, 2] * a[:, 3])[:, None] + (b[:, 2] * b[:, 3])[None] - intersection
    return intersection / np.maximum(union, 1e-9)


def match(detections: np.ndarray, scores: np.ndarray, truth: np.ndarray, counted: np.ndarray) -> np.ndarray:
    """Label each detection 1 (hit), 0 (false alarm) or -1 (ignored), greedily by score."""
    labels = np.zeros(len(detections), dtype=np.int64)
    if len(truth) == 0 or len(detections) == 0:
        return labels
    overlaps = iou_matrix(detections, truth)
    matched = np.zeros(len(truth), dtype=bool)
    for d in np.argsort(-scores):
        candidates = np.where(overlaps[d] >= IOU_THRESHOLD)[0]
        if len(candidates) == 0:
            continue
        best = candidates[np.argmax(overlaps[d, candidates])]
        if not counted[best]:
            labels[d] = -1
        elif not matched[best]:
            matched[best] = True
            labels[d] = 1
    return labels


def average_precision(scores: np.ndarray, labels: np.ndarray, positives: int) -> float:
    keep = labels >= 0
    order = np.argsort(-scores[keep])
    hits = labels[keep][order]
    true_positive = np.cumsum(hits)
    precision = true_positive / np.arange(1, len(hits) + 1)
    recall = true_positive / max(positives, 1)
    # All-point interpolation: precision made non-increasing, integrated over recall steps.
    precision = np.maximum.accumulate(precision[::-1])[::-1]
    previous = np.concatenate([[0.0], recall[:-1]])
    return float(np.sum((recall - previous) * precision))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--wider", type=Path, default=DEFAULT_WIDER, help="folder with images/ and wider_face_val_bbx_gt.txt")
    parser.add_argument("--limit", type=int, default=None, help="use the first N images only")
    args = parser.parse_args()

    annotations = read_annotations(args.wider / "wider_face_val_bbx_gt.txt")
    names = sorted(annotations)[: args.limit]
    detector = FaceDetector()
    results = {"all faces": ([], [], 0), "faces >= 20 px high": ([], [], 0)}
    seconds = []
    for name in names:
        image = load_image(args.wider / "images" / name).image
        started = time.perf_counter()
        faces = detector.detect(image, min_confidence=0.5, max_faces=None).faces
        seconds.append(time.perf_counter() - started)
        detections = np.asarray([face.box for face in faces], dtype=np.float64).reshape(-1, 4)
        scores = np.asarray([face.confidence for face in faces])
        truth = annotations[name]
        valid = truth[:, 4] == 0
        for label, counted in (("all faces", valid), ("faces >= 20 px high", valid & (truth[:, 3] >= 20))):
            all_scores, all_labels, positives = results[label]
            all_scores.append(scores)
            all_labels.append(match(detections, scores, truth[:, :4].astype(np.float64), counted))
            results[label] = (all_scores, all_labels, positives + int(counted.sum()))

    print(f"{len(names)} images, detection median {statistics.median(seconds) * 1000:.0f} ms per image")
    for label, (all_scores, all_labels, positives) in results.items():
        scores = np.concatenate(all_scores)
        labels = np.concatenate(all_labels)
        confident = scores >= 0.9
        hits = int((labels[confident] == 1).sum())
        alarms = int((labels[confident] == 0).sum())
        print(
            f"{label}: {positives} faces, AP@0.5 {average_precision(scores, labels, positives):.3f}; "
            f"at confidence 0.9 precision {hits / max(hits + alarms, 1):.3f}, recall {hits / max(positives, 1):.3f}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
