"""The MTCNN cascade driver: its arithmetic, and agreement with facenet-pytorch's own driver."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from fedcore.mtcnn import Cascade, _crop_windows, _min_overlap_nms, _square, pyramid_scales
from tests.helpers import astronaut, photo_index, require_photos


@pytest.fixture(scope="module")
def cascade():
    return Cascade()


@pytest.fixture(scope="module")
def reference():
    from facenet_pytorch import MTCNN

    return MTCNN(keep_all=True, post_process=False, min_face_size=20)


def test_pyramid_scales_stop_below_window():
    scales = pyramid_scales(100, 100, 20)
    # Shorter side after scaling: 60, 42.5, 30.2, 21.4, 15.2; the next (10.8) is below 12.
    assert len(scales) == 5
    assert scales[0] == pytest.approx(0.6)
    assert scales[-1] == pytest.approx(0.6 * 0.709**4)


def test_pyramid_scales_empty_for_tiny_image():
    assert pyramid_scales(300, 15, 20) == []


def test_square_grows_shorter_side():
    squared = _square(torch.tensor([[0.0, 0.0, 10.0, 20.0]]))
    assert squared.tolist() == [[-5.0, 0.0, 15.0, 20.0]]


def test_min_overlap_nms_drops_nested_box():
    boxes = np.array([[0, 0, 99, 99], [10, 10, 39, 39], [200, 200, 249, 249]], dtype=float)
    scores = np.array([0.99, 0.95, 0.9])
    assert _min_overlap_nms(boxes, scores, 0.7).tolist() == [0, 2]


def test_min_overlap_nms_orders_by_score():
    boxes = np.array([[0, 0, 49, 49], [100, 0, 149, 49]], dtype=float)
    assert _min_overlap_nms(boxes, np.array([0.8, 0.9]), 0.7).tolist() == [1, 0]


def test_crop_windows_skips_outside_boxes():
    image = torch.arange(3 * 20 * 30, dtype=torch.float32).view(1, 3, 20, 30)
    boxes = torch.tensor([[2.0, 2.0, 12.0, 12.0], [40.0, 40.0, 60.0, 60.0], [-8.0, -8.0, 5.0, 5.0]])
    crops, keep = _crop_windows(image, boxes, 24, samples=-1)
    assert keep.tolist() == [0, 2]
    assert crops.shape == (2, 3, 24, 24)
    assert torch.isfinite(crops).all()


def test_crop_windows_flat_region_stays_flat():
    image = torch.full((1, 3, 40, 40), 200.0)
    crops, _ = _crop_windows(image, torch.tensor([[5.0, 5.0, 30.0, 30.0]]), 48, samples=-1)
    assert torch.allclose(crops, torch.full_like(crops, (200 - 127.5) * 0.0078125))


def test_blank_image_gives_empty_arrays(cascade):
    found = cascade(Image.new("RGB", (320, 240), "white"), 20)
    assert found.boxes.shape == (0, 4)
    assert found.scores.shape == (0,)
    assert found.keypoints.shape == (0, 5, 2)


def _agree(cascade, reference, image: Image.Image) -> None:
    ours = cascade(image, 20)
    ours_boxes, ours_points = ours.boxes[ours.scores >= 0.9], ours.keypoints[ours.scores >= 0.9]
    boxes, probs, points = reference.detect(image, landmarks=True)
    if boxes is None:
        assert len(ours_boxes) == 0
        return
    confident = np.asarray(probs, dtype=float) >= 0.9
    assert len(ours_boxes) == confident.sum()
    # Compare the boxes as the pipeline uses them, clamped to the image.
    limits = [image.width, image.height] * 2
    ours_boxes = np.clip(ours_boxes, 0, limits)
    for box, landmarks in zip(np.clip(boxes[confident].astype(float), 0, limits), points[confident]):
        size = max(box[2] - box[0], box[3] - box[1])
        match = np.abs(ours_boxes - box).max(axis=1).argmin()
        # The drivers resample differently. On the shared photos, clamped corners differ
        # by at most 5.5% of the face size, keypoints by 10.2% (a face cut off at the edge).
        assert np.abs(ours_boxes[match] - box).max() < 0.15 * size
        assert np.abs(ours_points[match] - landmarks).max() < 0.15 * size


def test_agrees_with_facenet_on_astronaut(cascade, reference):
    _agree(cascade, reference, astronaut())


def test_agrees_with_facenet_on_photos(cascade, reference):
    from fedcore.imageio import load_image

    folder = require_photos()
    for row in photo_index():
        image = load_image(folder / row["file"]).image
        if max(image.size) > 1024:
            image = image.resize((image.width // 2, image.height // 2), Image.Resampling.BOX)
        _agree(cascade, reference, image)
