"""Tests for fedcore.metrics on hand-built cases with values worked out on paper."""

from __future__ import annotations

import math

import numpy as np
import pytest

from fedcore.constants import CLASSES
from fedcore.metrics import (
    classification_report,
    confusion_matrix,
    expected_calibration_error,
    fit_temperature,
    macro_f1,
    negative_log_likelihood,
    per_class_scores,
    reliability_bins,
    softmax,
)

# Three classes, seven images: rows are true classes, columns predictions.
LABELS = np.array([0, 0, 1, 1, 2, 2, 2])
PREDICTIONS = np.array([0, 1, 1, 1, 2, 0, 2])

# Two classes, four images with confidences 0.9, 0.9, 0.7, 0.7: the 0.9 pair is half right,
# the 0.7 pair all right, so ECE = 0.5 * |0.9 - 0.5| + 0.5 * |0.7 - 1.0| = 0.35.
ECE_PROBABILITIES = np.array([[0.9, 0.1], [0.9, 0.1], [0.3, 0.7], [0.7, 0.3]])
ECE_LABELS = np.array([0, 1, 1, 0])


def test_confusion_matrix_hand_built() -> None:
    matrix = confusion_matrix(LABELS, PREDICTIONS, num_classes=3)
    assert matrix.tolist() == [[1, 1, 0], [0, 2, 0], [1, 0, 2]]


def test_confusion_matrix_default_eight_classes() -> None:
    matrix = confusion_matrix(np.array([7, 7, 0]), np.array([7, 5, 0]))
    assert matrix.shape == (8, 8)
    assert matrix[7, 7] == 1
    assert matrix[7, 5] == 1
    assert matrix.sum() == 3


def test_per_class_precision_hand_built() -> None:
    scores = per_class_scores(confusion_matrix(LABELS, PREDICTIONS, num_classes=3))
    np.testing.assert_allclose(scores["precision"], [1 / 2, 2 / 3, 1.0])


def test_per_class_recall_hand_built() -> None:
    scores = per_class_scores(confusion_matrix(LABELS, PREDICTIONS, num_classes=3))
    np.testing.assert_allclose(scores["recall"], [1 / 2, 1.0, 2 / 3])


def test_per_class_f1_hand_built() -> None:
    scores = per_class_scores(confusion_matrix(LABELS, PREDICTIONS, num_classes=3))
    np.testing.assert_allclose(scores["f1"], [0.5, 0.8, 0.8])
    assert scores["support"].tolist() == [2, 2, 3]


def test_per_class_undefined_scores_zero() -> None:
    matrix = np.array([[2, 0], [0, 0]])
    scores = per_class_scores(matrix)
    assert scores["precision"].tolist() == [1.0, 0.0]
    assert scores["recall"].tolist() == [1.0, 0.0]
    assert scores["f1"].tolist() == [1.0, 0.0]


def test_macro_f1_ignores_absent_classes() -> None:
    # Class 3 is predicted once but never annotated: its F1 of 0 must not count.
    predictions = np.array([0, 3, 1, 1, 2, 0, 2])
    expected = (0.5 + 1.0 + 0.8) / 3
    assert macro_f1(LABELS, predictions, num_classes=4) == pytest.approx(expected, abs=1e-12)


def test_macro_f1_empty_is_zero() -> None:
    assert macro_f1(np.array([], dtype=int), np.array([], dtype=int)) == 0.0


def test_ece_hand_built() -> None:
    assert expected_calibration_error(ECE_PROBABILITIES, ECE_LABELS, bins=5) == pytest.approx(0.35, abs=1e-12)


def test_ece_perfect_confidence_zero() -> None:
    probabilities = np.eye(4)[[0, 1, 2, 3]]
    assert expected_calibration_error(probabilities, np.array([0, 1, 2, 3])) == 0.0


def test_reliability_bins_hand_built() -> None:
    rows = reliability_bins(ECE_PROBABILITIES, ECE_LABELS, bins=5)
    assert [row["count"] for row in rows] == [0, 0, 0, 2, 2]
    assert rows[3]["confidence"] == pytest.approx(0.7)
    assert rows[3]["accuracy"] == 1.0
    assert rows[4]["confidence"] == pytest.approx(0.9)
    assert rows[4]["accuracy"] == 0.5


def test_reliability_empty_bins_nan() -> None:
    rows = reliability_bins(ECE_PROBABILITIES, ECE_LABELS, bins=5)
    assert math.isnan(rows[0]["confidence"])
    assert math.isnan(rows[0]["accuracy"])
    assert (rows[0]["low"], rows[-1]["high"]) == (0.0, 1.0)


def test_softmax_temperature_hand_built() -> None:
    probabilities = softmax(np.array([[math.log(3.0), 0.0]]), temperature=1.0)
    np.testing.assert_allclose(probabilities, [[0.75, 0.25]])
    flattened = softmax(np.array([[2 * math.log(3.0), 0.0]]), temperature=2.0)
    np.testing.assert_allclose(flattened, [[0.75, 0.25]])


def test_softmax_large_logits_finite() -> None:
    probabilities = softmax(np.array([[1000.0, 0.0, -1000.0]]))
    np.testing.assert_allclose(probabilities, [[1.0, 0.0, 0.0]])


def test_nll_hand_built() -> None:
    logits = np.array([[math.log(3.0), 0.0], [math.log(3.0), 0.0]])
    expected = -(math.log(0.75) + math.log(0.25)) / 2
    assert negative_log_likelihood(logits, np.array([0, 1]), 1.0) == pytest.approx(expected)


def test_fit_temperature_recovers_three() -> None:
    rng = np.random.default_rng(0)
    true_logits = rng.normal(0.0, 2.0, size=(20000, len(CLASSES)))
    true_probabilities = softmax(true_logits)
    cumulative = true_probabilities.cumsum(axis=1)
    labels = (rng.random((len(true_logits), 1)) > cumulative).sum(axis=1)
    temperature = fit_temperature(true_logits * 3.0, labels)
    assert temperature == pytest.approx(3.0, rel=0.1)


def test_fit_temperature_calibrated_near_one() -> None:
    rng = np.random.default_rng(1)
    logits = rng.normal(0.0, 2.0, size=(20000, 4))
    cumulative = softmax(logits).cumsum(axis=1)
    labels = (rng.random((len(logits), 1)) > cumulative).sum(axis=1)
    assert fit_temperature(logits, labels) == pytest.approx(1.0, rel=0.1)


def test_fit_temperature_empty_rejected() -> None:
    with pytest.raises(ValueError, match="empty"):
        fit_temperature(np.zeros((0, 8)), np.zeros(0, dtype=int))


@pytest.fixture
def report() -> dict:
    rng = np.random.default_rng(2)
    logits = rng.normal(size=(50, len(CLASSES)))
    labels = np.arange(50) % 7  # contempt is absent on purpose
    return classification_report(softmax(logits), labels)


def test_report_keys(report: dict) -> None:
    assert set(report) == {
        "images", "accuracy", "macro_f1", "ece", "per_class",
        "confusion_matrix", "confusion_matrix_normalized", "reliability",
    }  # fmt: skip
    assert list(report["per_class"]) == list(CLASSES)
    assert set(report["per_class"]["happy"]) == {"precision", "recall", "f1", "support"}


def test_report_counts_sum_to_images(report: dict) -> None:
    assert report["images"] == 50
    assert np.asarray(report["confusion_matrix"]).sum() == 50
    assert sum(scores["support"] for scores in report["per_class"].values()) == 50
    assert sum(row["count"] for row in report["reliability"]) == 50


def test_report_consistent_with_matrix(report: dict) -> None:
    matrix = np.asarray(report["confusion_matrix"])
    assert report["accuracy"] == pytest.approx(np.trace(matrix) / 50)
    present = [scores["f1"] for scores in report["per_class"].values() if scores["support"] > 0]
    assert len(present) == 7
    assert report["macro_f1"] == pytest.approx(sum(present) / 7)


def test_report_normalized_rows(report: dict) -> None:
    normalized = np.asarray(report["confusion_matrix_normalized"])
    np.testing.assert_allclose(normalized[:7].sum(axis=1), np.ones(7), atol=1e-3)
    assert normalized[7].tolist() == [0.0] * 8


def test_report_hand_built_values() -> None:
    probabilities = np.zeros((len(LABELS), len(CLASSES)))
    probabilities[np.arange(len(LABELS)), PREDICTIONS] = 0.6
    probabilities += 0.05
    result = classification_report(probabilities, LABELS)
    assert result["accuracy"] == pytest.approx(5 / 7)
    assert result["macro_f1"] == pytest.approx(0.7)
    assert result["per_class"]["neutral"]["precision"] == pytest.approx(0.5)
    assert result["per_class"]["sad"]["recall"] == pytest.approx(2 / 3)
    assert result["ece"] == pytest.approx(abs(0.65 - 5 / 7))
