"""MTCNN's three-stage cascade, run with facenet-pytorch's networks and weights.

facenet-pytorch's own driver resamples the image pyramid and every candidate
crop with one ``interpolate`` call each, in float32, which dominates detection
time on a CPU. This driver keeps the same networks, thresholds and box
arithmetic but builds the pyramid with Pillow's area filter on uint8 pixels and
cuts all candidate crops of a stage in one ``roi_align`` call. Boxes that fall
wholly outside the image are dropped together with their scores, so scores
and boxes never drift apart.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image
from torchvision.ops import nms, roi_align

# The cascade's published settings, the same as facenet-pytorch's defaults.
STAGE_THRESHOLDS = (0.6, 0.7, 0.7)
PYRAMID_FACTOR = 0.709
# The first stage scans 12x12 windows, so no face smaller than this can be searched for.
WINDOW = 12
STRIDE = 2


@dataclass(frozen=True)
class CascadeOutput:
    """Final boxes (x1, y1, x2, y2), scores and five (x, y) keypoints per face, float64 arrays."""

    boxes: np.ndarray
    scores: np.ndarray
    keypoints: np.ndarray

    @classmethod
    def empty(cls) -> CascadeOutput:
        return cls(np.zeros((0, 4)), np.zeros(0), np.zeros((0, 5, 2)))


def pyramid_scales(width: int, height: int, min_face_size: int) -> list[float]:
    """Scales at which a 12-pixel window matches faces from ``min_face_size`` up to the image size."""
    scale = WINDOW / min_face_size
    shorter = min(width, height) * scale
    scales = []
    while shorter >= WINDOW:
        scales.append(scale)
        scale *= PYRAMID_FACTOR
        shorter *= PYRAMID_FACTOR
    return scales


def _normalise(pixels: torch.Tensor) -> torch.Tensor:
    # channels_last: max-pooling in NCHW is several times slower on the CPU.
    return ((pixels - 127.5) * 0.0078125).contiguous(memory_format=torch.channels_last)


def _square(boxes: torch.Tensor) -> torch.Tensor:
    """Grow each (x1, y1, x2, y2) box to a square around its centre."""
    width = boxes[:, 2] - boxes[:, 0]
    height = boxes[:, 3] - boxes[:, 1]
    side = torch.maximum(width, height)
    x1 = boxes[:, 0] + (width - side) / 2
    y1 = boxes[:, 1] + (height - side) / 2
    return torch.stack([x1, y1, x1 + side, y1 + side], dim=1)


def _refine(boxes: torch.Tensor, offsets: torch.Tensor) -> torch.Tensor:
    """Apply a stage's box regression; offsets are in units of the inclusive box size."""
    width = boxes[:, 2] - boxes[:, 0] + 1
    height = boxes[:, 3] - boxes[:, 1] + 1
    size = torch.stack([width, height, width, height], dim=1)
    return boxes + offsets * size


def _crop_windows(
    image: torch.Tensor, boxes: torch.Tensor, side: int, samples: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Cut each box (clipped to the image, in whole pixels) and resample it to ``side`` x ``side``.

    Each output pixel averages ``samples`` x ``samples`` bilinear samples of its
    bin (-1: enough to cover the bin, an area resample). Returns the normalised
    crops and the indices of the boxes that overlap the image.
    """
    height, width = image.shape[-2:]
    whole = boxes.trunc()
    # Whole-pixel spans [x1 - 1, x2) as in the reference implementation, clipped to the image.
    x1 = whole[:, 0].clamp(min=1) - 1
    y1 = whole[:, 1].clamp(min=1) - 1
    x2 = whole[:, 2].clamp(max=width)
    y2 = whole[:, 3].clamp(max=height)
    keep = torch.nonzero((x2 > x1) & (y2 > y1)).flatten()
    if len(keep) == 0:
        return torch.zeros((0, 3, side, side)), keep
    rois = torch.stack(
        [torch.zeros(len(keep)), x1[keep], y1[keep], x2[keep], y2[keep]], dim=1
    ).to(image)
    # aligned=True treats pixel i as the unit square [i, i + 1).
    crops = roi_align(image, rois, output_size=(side, side), spatial_scale=1.0, sampling_ratio=samples, aligned=True)
    return _normalise(crops), keep


def _min_overlap_nms(boxes: np.ndarray, scores: np.ndarray, threshold: float) -> np.ndarray:
    """Greedy suppression where overlap is the intersection over the smaller box (keeps nested faces apart)."""
    x1, y1, x2, y2 = boxes[:, 0], boxes[:, 1], boxes[:, 2], boxes[:, 3]
    areas = (x2 - x1 + 1) * (y2 - y1 + 1)
    order = np.argsort(scores, kind="stable")[::-1]
    selected = []
    while len(order):
        best, rest = order[0], order[1:]
        selected.append(best)
        inter_w = np.maximum(0.0, np.minimum(x2[best], x2[rest]) - np.maximum(x1[best], x1[rest]) + 1)
        inter_h = np.maximum(0.0, np.minimum(y2[best], y2[rest]) - np.maximum(y1[best], y1[rest]) + 1)
        overlap = inter_w * inter_h / np.minimum(areas[best], areas[rest])
        order = rest[overlap <= threshold]
    return np.asarray(selected, dtype=np.int64)


class Cascade:
    """Proposal (P), refinement (R) and output (O) networks with facenet-pytorch's shipped weights."""

    def __init__(self, device: str = "cpu") -> None:
        from facenet_pytorch.models.mtcnn import ONet, PNet, RNet

        self.device = torch.device(device)
        self.pnet, self.rnet, self.onet = (
            net.to(self.device, memory_format=torch.channels_last).eval() for net in (PNet(), RNet(), ONet())
        )

    @torch.inference_mode()
    def __call__(self, image: Image.Image, min_face_size: int) -> CascadeOutput:
        """Detect faces of at least ``min_face_size`` pixels in an RGB image."""
        width, height = image.size
        scales = pyramid_scales(width, height, min_face_size)
        if not scales:
            return CascadeOutput.empty()

        boxes = self._propose(image, scales)
        if len(boxes) == 0:
            return CascadeOutput.empty()
        pixels = torch.from_numpy(np.array(image)).to(self.device).permute(2, 0, 1)[None].float()

        boxes = self._refine_stage(pixels, boxes)
        if len(boxes) == 0:
            return CascadeOutput.empty()
        return self._output_stage(pixels, boxes)

    def _propose(self, image: Image.Image, scales: list[float]) -> torch.Tensor:
        """Run the proposal network over the pyramid; return squared candidate boxes (N, 5) with scores."""
        width, height = image.size
        candidates = []
        level = image
        for scale in scales:
            # Each level is resampled from the previous, larger one; none is larger than the image.
            size = (min(width, int(width * scale + 1)), min(height, int(height * scale + 1)))
            if level.size != size:
                level = level.resize(size, Image.Resampling.BOX)
            tensor = _normalise(torch.from_numpy(np.array(level)).to(self.device).permute(2, 0, 1)[None].float())
            offsets, probs = self.pnet(tensor)
            score_map = probs[0, 1]
            rows, cols = torch.nonzero(score_map >= STAGE_THRESHOLDS[0], as_tuple=True)
            if len(rows) == 0:
                continue
            cells = torch.stack([cols, rows], dim=1).to(score_map.dtype)
            top_left = ((STRIDE * cells + 1) / scale).floor()
            bottom_right = ((STRIDE * cells + WINDOW) / scale).floor()
            scores = score_map[rows, cols]
            found = torch.cat([top_left, bottom_right, scores[:, None], offsets[0, :, rows, cols].T], dim=1)
            candidates.append(found[nms(found[:, :4], scores, 0.5)])
        if not candidates:
            return torch.zeros((0, 5))
        found = torch.cat(candidates)
        found = found[nms(found[:, :4], found[:, 4], 0.7)]
        # The proposal regression is in units of the exclusive box size.
        size = (found[:, 2:4] - found[:, 0:2]).repeat(1, 2)
        boxes = _square(found[:, :4] + found[:, 5:9] * size)
        return torch.cat([boxes, found[:, 4:5]], dim=1)

    def _refine_stage(self, pixels: torch.Tensor, boxes: torch.Tensor) -> torch.Tensor:
        # Two samples per bin and axis: the many coarse candidates need speed more than exact area sums.
        crops, keep = _crop_windows(pixels, boxes[:, :4], 24, samples=2)
        if len(keep) == 0:
            return torch.zeros((0, 5))
        offsets, probs = self.rnet(crops)
        scores = probs[:, 1]
        passed = scores > STAGE_THRESHOLDS[1]
        boxes, offsets, scores = boxes[keep][passed, :4], offsets[passed], scores[passed]
        picked = nms(boxes, scores, 0.7)
        refined = _square(_refine(boxes[picked], offsets[picked]))
        return torch.cat([refined, scores[picked, None]], dim=1)

    def _output_stage(self, pixels: torch.Tensor, boxes: torch.Tensor) -> CascadeOutput:
        # Four samples per bin and axis: a large face's bins span many pixels, and
        # covering each of them fully costs more than the network itself.
        crops, keep = _crop_windows(pixels, boxes[:, :4], 48, samples=4)
        if len(keep) == 0:
            return CascadeOutput.empty()
        offsets, landmarks, probs = self.onet(crops)
        scores = probs[:, 1]
        passed = scores > STAGE_THRESHOLDS[2]
        boxes, offsets, landmarks, scores = boxes[keep][passed, :4], offsets[passed], landmarks[passed], scores[passed]
        if len(boxes) == 0:
            return CascadeOutput.empty()
        # Landmarks are fractions of the (inclusive) box before its final regression.
        width = (boxes[:, 2] - boxes[:, 0] + 1)[:, None]
        height = (boxes[:, 3] - boxes[:, 1] + 1)[:, None]
        xs = width * landmarks[:, :5] + boxes[:, 0:1] - 1
        ys = height * landmarks[:, 5:] + boxes[:, 1:2] - 1
        keypoints = torch.stack([xs, ys], dim=2)
        boxes = _refine(boxes, offsets)

        boxes_np = boxes.cpu().double().numpy()
        scores_np = scores.cpu().double().numpy()
        picked = _min_overlap_nms(boxes_np, scores_np, 0.7)
        return CascadeOutput(
            boxes=boxes_np[picked], scores=scores_np[picked], keypoints=keypoints.cpu().double().numpy()[picked]
        )
