"""Classification metrics and temperature calibration, on NumPy arrays."""

from __future__ import annotations

import math

import numpy as np

from fedcore.constants import CLASSES

DEFAULT_ECE_BINS = 15


def softmax(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    scaled = logits.astype(np.float64) / temperature
    scaled -= scaled.max(axis=1, keepdims=True)
    exp = np.exp(scaled)
    return exp / exp.sum(axis=1, keepdims=True)


def confusion_matrix(labels: np.ndarray, predictions: np.ndarray, num_classes: int = len(CLASSES)) -> np.ndarray:
    """Return counts with true classes as rows and predicted classes as columns."""
    matrix = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(matrix, (labels, predictions), 1)
    return matrix


def per_class_scores(matrix: np.ndarray) -> dict[str, np.ndarray]:
    """Return precision, recall, F1 and support per class; 0 where undefined."""
    true_positive = np.diag(matrix).astype(np.float64)
    predicted = matrix.sum(axis=0).astype(np.float64)
    support = matrix.sum(axis=1).astype(np.float64)
    precision = np.divide(true_positive, predicted, out=np.zeros_like(true_positive), where=predicted > 0)
    recall = np.divide(true_positive, support, out=np.zeros_like(true_positive), where=support > 0)
    denominator = precision + recall
    f1 = np.divide(2 * precision * recall, denominator, out=np.zeros_like(true_positive), where=denominator > 0)
    return {"precision": precision, "recall": recall, "f1": f1, "support": support.astype(np.int64)}


def macro_f1(labels: np.ndarray, predictions: np.ndarray, num_classes: int = len(CLASSES)) -> float:
    """Mean F1 over the classes present in ``labels``."""
    matrix = confusion_matrix(labels, predictions, num_classes)
    scores = per_class_scores(matrix)
    present = scores["support"] > 0
    return float(scores["f1"][present].mean()) if present.any() else 0.0


def expected_calibration_error(
    probabilities: np.ndarray, labels: np.ndarray, *, bins: int = DEFAULT_ECE_BINS
) -> float:
    """Top-label ECE: the support-weighted gap between confidence and accuracy over equal-width bins."""
    confidence = probabilities.max(axis=1)
    correct = probabilities.argmax(axis=1) == labels
    edges = np.linspace(0.0, 1.0, bins + 1)
    error = 0.0
    for low, high in zip(edges[:-1], edges[1:]):
        in_bin = (confidence > low) & (confidence <= high)
        if in_bin.any():
            error += in_bin.mean() * abs(confidence[in_bin].mean() - correct[in_bin].mean())
    return float(error)


def reliability_bins(
    probabilities: np.ndarray, labels: np.ndarray, *, bins: int = DEFAULT_ECE_BINS
) -> list[dict[str, float]]:
    """Per-bin mean confidence, accuracy and count, for reliability diagrams."""
    confidence = probabilities.max(axis=1)
    correct = probabilities.argmax(axis=1) == labels
    edges = np.linspace(0.0, 1.0, bins + 1)
    rows = []
    for low, high in zip(edges[:-1], edges[1:]):
        in_bin = (confidence > low) & (confidence <= high)
        count = int(in_bin.sum())
        rows.append(
            {
                "low": float(low),
                "high": float(high),
                "count": count,
                "confidence": float(confidence[in_bin].mean()) if count else math.nan,
                "accuracy": float(correct[in_bin].mean()) if count else math.nan,
            }
        )
    return rows


def negative_log_likelihood(logits: np.ndarray, labels: np.ndarray, temperature: float) -> float:
    probabilities = softmax(logits, temperature)
    return float(-np.log(np.clip(probabilities[np.arange(len(labels)), labels], 1e-12, None)).mean())


def fit_temperature(logits: np.ndarray, labels: np.ndarray) -> float:
    """Find the temperature in [0.05, 20] that minimises the negative log-likelihood.

    NLL is unimodal in log-temperature for softmax scaling, so a golden-section
    search over log T converges without gradients or a learning rate.
    """
    if len(labels) == 0:
        raise ValueError("cannot fit a temperature on an empty set")
    low, high = math.log(0.05), math.log(20.0)
    ratio = (math.sqrt(5) - 1) / 2
    a = high - ratio * (high - low)
    b = low + ratio * (high - low)
    loss_a = negative_log_likelihood(logits, labels, math.exp(a))
    loss_b = negative_log_likelihood(logits, labels, math.exp(b))
    for _ in range(60):
        if loss_a < loss_b:
            high, b, loss_b = b, a, loss_a
            a = high - ratio * (high - low)
            loss_a = negative_log_likelihood(logits, labels, math.exp(a))
        else:
            low, a, loss_a = a, b, loss_b
            b = low + ratio * (high - low)
            loss_b = negative_log_likelihood(logits, labels, math.exp(b))
    return float(math.exp((low + high) / 2))


def classification_report(
    probabilities: np.ndarray, labels: np.ndarray, *, classes: tuple[str, ...] = CLASSES
) -> dict:
    """Accuracy, macro-F1, per-class scores, confusion matrices and ECE as plain JSON types."""
    predictions = probabilities.argmax(axis=1)
    matrix = confusion_matrix(labels, predictions, len(classes))
    scores = per_class_scores(matrix)
    row_sums = matrix.sum(axis=1, keepdims=True)
    normalized = np.divide(matrix, row_sums, out=np.zeros(matrix.shape), where=row_sums > 0)
    present = scores["support"] > 0
    return {
        "images": int(len(labels)),
        "accuracy": float((predictions == labels).mean()) if len(labels) else 0.0,
        "macro_f1": float(scores["f1"][present].mean()) if present.any() else 0.0,
        "ece": expected_calibration_error(probabilities, labels),
        "per_class": {
            name: {
                "precision": float(scores["precision"][i]),
                "recall": float(scores["recall"][i]),
                "f1": float(scores["f1"][i]),
                "support": int(scores["support"][i]),
            }
            for i, name in enumerate(classes)
        },
        "confusion_matrix": matrix.tolist(),
        "confusion_matrix_normalized": np.round(normalized, 4).tolist(),
        "reliability": reliability_bins(probabilities, labels),
    }
