"""Evaluate a classifier checkpoint on a labelled split of face crops.

Reports accuracy, macro-F1, per-class precision/recall/F1, the confusion matrix
(counts and row-normalised) and expected calibration error before and after the
checkpoint's temperature, and can write a JSON report, a confusion-matrix PNG
and a reliability diagram PNG.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from fedcore.checkpoint import load_checkpoint
from fedcore.constants import CLASSES, DEFAULT_CHECKPOINT
from fedcore.datasets import FORMATS, load_split
from fedcore.errors import FedError
from fedcore.metrics import classification_report, expected_calibration_error, softmax
from fedcore.tensors import predict_logits

logger = logging.getLogger(__name__)


def get_args_parser(parser: argparse.ArgumentParser | None = None) -> argparse.ArgumentParser:
    if parser is None:
        parser = argparse.ArgumentParser(
            prog="python -m fedcore evaluate", description=__doc__.split("\n")[0],
            formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        )  # fmt: skip
    parser.add_argument("--data", type=Path, required=True, help="dataset root folder")
    parser.add_argument("--format", dest="data_format", choices=FORMATS, default="ferplus", help="dataset layout")
    parser.add_argument("--split", default="test", help="split to evaluate: train, valid or test")
    parser.add_argument("--checkpoint", type=Path, default=DEFAULT_CHECKPOINT, help="classifier weights (.safetensors)")
    parser.add_argument("--limit", type=int, default=None, help="evaluate at most this many images")
    parser.add_argument("--json", action="store_true", help="print the full report as JSON")
    parser.add_argument(
        "--out", type=Path, default=None,
        help="write <split>-report.json, confusion_matrix.png and reliability.png into this folder",
    )  # fmt: skip
    return parser


def evaluate(
    checkpoint: Path, data: Path, *, split: str = "test", data_format: str = "ferplus", limit: int | None = None
) -> dict[str, Any]:
    """Return the evaluation report of ``checkpoint`` on the majority labels of ``split``."""
    model, info = load_checkpoint(checkpoint)
    dataset = load_split(
        data, split, data_format=data_format, protocol="majority",
        image_size=info.input_size, color_mode=info.color_mode, limit=limit,
    )  # fmt: skip
    labelled = dataset.labels >= 0
    started = time.perf_counter()
    logits = predict_logits(
        model, dataset.images[labelled], mean=info.mean, std=info.std, mixed_precision=False,
        flip_average=info.flip_average,
    )  # fmt: skip
    seconds = time.perf_counter() - started
    labels = dataset.labels[labelled]

    report = classification_report(softmax(logits, info.temperature), labels)
    report["ece_uncalibrated"] = expected_calibration_error(softmax(logits), labels)
    report["temperature"] = info.temperature
    report["flip_average"] = info.flip_average
    report["model"] = {"name": info.name, "version": info.version, "checkpoint": str(checkpoint)}
    report["dataset"] = {"description": dataset.description, "split": split, "protocol": "majority"}
    report["classes"] = list(CLASSES)
    report["images_per_second"] = round(len(labels) / max(seconds, 1e-9), 1)
    return report


def most_confused_pairs(report: dict[str, Any], top: int = 5) -> list[tuple[str, str, float]]:
    """Return the largest off-diagonal shares of the row-normalised confusion matrix."""
    matrix = np.asarray(report["confusion_matrix_normalized"], dtype=float)
    pairs = [
        (CLASSES[i], CLASSES[j], float(matrix[i, j]))
        for i in range(len(CLASSES)) for j in range(len(CLASSES)) if i != j
    ]  # fmt: skip
    return sorted(pairs, key=lambda pair: pair[2], reverse=True)[:top]


def write_figures(report: dict[str, Any], out: Path) -> None:
    """Write confusion_matrix.png and reliability.png for ``report`` into ``out``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out.mkdir(parents=True, exist_ok=True)
    matrix = np.asarray(report["confusion_matrix_normalized"], dtype=float)
    counts = np.asarray(report["confusion_matrix"], dtype=int)
    figure, axis = plt.subplots(figsize=(7.5, 6.5), dpi=120)
    image = axis.imshow(matrix, cmap="Blues", vmin=0, vmax=1)
    axis.set_xticks(range(len(CLASSES)), CLASSES, rotation=45, ha="right")
    axis.set_yticks(range(len(CLASSES)), CLASSES)
    axis.set_xlabel("predicted expression")
    axis.set_ylabel("annotated expression (majority vote)")
    axis.set_title(f"Confusion matrix, row-normalised (accuracy {report['accuracy']:.1%})")
    for i in range(len(CLASSES)):
        for j in range(len(CLASSES)):
            color = "white" if matrix[i, j] > 0.5 else "black"
            axis.text(j, i, f"{matrix[i, j]:.2f}\n({counts[i, j]})", ha="center", va="center", fontsize=7, color=color)
    figure.colorbar(image, ax=axis, fraction=0.046)
    figure.tight_layout()
    figure.savefig(out / "confusion_matrix.png")
    plt.close(figure)

    bins = [b for b in report["reliability"] if b["count"] > 0]
    figure, axis = plt.subplots(figsize=(5.5, 5), dpi=120)
    axis.plot([0, 1], [0, 1], "--", color="gray", label="perfect calibration")
    axis.bar(
        [(b["low"] + b["high"]) / 2 for b in bins], [b["accuracy"] for b in bins],
        width=[b["high"] - b["low"] for b in bins], edgecolor="black", alpha=0.7, label="accuracy per bin",
    )  # fmt: skip
    axis.plot([b["confidence"] for b in bins], [b["accuracy"] for b in bins], "o-", color="#d62728", label="mean confidence")
    axis.set_xlim(0, 1)
    axis.set_ylim(0, 1)
    axis.set_xlabel("confidence (top probability)")
    axis.set_ylabel("accuracy")
    axis.set_title(f"Reliability (ECE {report['ece']:.3f}, T = {report['temperature']:.2f})")
    axis.legend(loc="upper left")
    figure.tight_layout()
    figure.savefig(out / "reliability.png")
    plt.close(figure)


def format_report(report: dict[str, Any]) -> str:
    lines = [
        f"{report['model']['name']} {report['model']['version']} on {report['dataset']['description']}",
        f"accuracy {report['accuracy']:.4f}   macro-F1 {report['macro_f1']:.4f}   "
        f"ECE {report['ece']:.4f} (uncalibrated {report['ece_uncalibrated']:.4f}, T = {report['temperature']:.3f})",
        "",
        f"{'class':<10} {'precision':>9} {'recall':>7} {'F1':>7} {'support':>8}",
    ]
    for name, scores in report["per_class"].items():
        lines.append(
            f"{name:<10} {scores['precision']:>9.3f} {scores['recall']:>7.3f} {scores['f1']:>7.3f} {scores['support']:>8d}"
        )
    lines.append("")
    lines.append("most confused (annotated -> predicted, share of the annotated class):")
    lines += [f"  {true} -> {predicted}: {share:.1%}" for true, predicted, share in most_confused_pairs(report)]
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    try:
        report = evaluate(args.checkpoint, args.data, split=args.split, data_format=args.data_format, limit=args.limit)
    except FedError as exc:
        logger.error("%s", exc)
        return 1
    if args.out is not None:
        args.out.mkdir(parents=True, exist_ok=True)
        report_path = args.out / f"{args.split}-report.json"
        report_path.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
        write_figures(report, args.out)
        logger.info("wrote %s, confusion_matrix.png and reliability.png to %s", report_path.name, args.out)
    print(json.dumps(report, indent=2) if args.json else format_report(report))
    return 0


def main(argv: list[str] | None = None) -> int:
    return run(get_args_parser().parse_args(argv))


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    sys.exit(main())
