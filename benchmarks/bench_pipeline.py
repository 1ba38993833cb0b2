"""Pipeline speed and memory against a naive reference, measured in the same run.

The pipeline: MTCNN on a copy downscaled to 1024 px, aligned 48x48 crops,
all faces of an image in one VGG-16 batch. The naive reference: MTCNN at full
resolution, then a torchvision VGG-16 (random weights, 8 outputs) at 224x224,
one face at a time, the way the predecessor project ran.

Prints median and p95 latency per image, faces per second, model load time,
the median for a 2-megapixel portrait, and resident memory over N consecutive
images. Usage:

    python benchmarks/bench_pipeline.py [--photos DIR] [--repeat 3] [--memory-images 200]
"""

from __future__ import annotations

import argparse
import io
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

PROJECT_DIR = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PROJECT_DIR))

from fedcore.imageio import load_image  # noqa: E402
from fedcore.pipeline import Pipeline  # noqa: E402

DEFAULT_PHOTOS = PROJECT_DIR.parent / "shared" / "data" / "photos"
PHOTO_SUFFIXES = (".jpg", ".jpeg", ".png")


def rss_mb() -> float:
    """Current resident set size of this process in MB, from /proc (Linux)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def percentile(values: list[float], share: float) -> float:
    return float(np.percentile(np.asarray(values), share * 100))


class NaiveReference:
    """Full-resolution MTCNN, then a 224x224 torchvision VGG-16 per face."""

    def __init__(self) -> None:
        from facenet_pytorch import MTCNN
        from torchvision.models import vgg16

        self.mtcnn = MTCNN(keep_all=True, post_process=False)
        self.model = vgg16(weights=None, num_classes=8).eval()
        self.mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
        self.std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)

    @torch.inference_mode()
    def analyze(self, data: bytes) -> int:
        image = Image.open(io.BytesIO(data)).convert("RGB")
        boxes, probs = self.mtcnn.detect(image)
        if boxes is None:
            return 0
        count = 0
        for box, prob in zip(boxes, probs):
            if prob < 0.9:
                continue
            crop = image.crop(tuple(int(v) for v in box)).resize((224, 224))
            tensor = torch.from_numpy(np.asarray(crop)).permute(2, 0, 1)[None].float() / 255
            self.model((tensor - self.mean) / self.std).softmax(1)
            count += 1
        return count


def time_images(analyze, images: list[bytes], repeat: int) -> tuple[list[float], int]:
    """Return per-image seconds over ``repeat`` passes and the number of faces in one pass."""
    seconds: list[float] = []
    faces = 0
    for run in range(repeat):
        for data in images:
            started = time.perf_counter()
            found = analyze(data)
            seconds.append(time.perf_counter() - started)
            if run == 0:
                faces += found
    return seconds, faces


def two_megapixel_portrait(photos: Path) -> bytes:
    source = photos / "facenet_pytorch__paul_rudd.jpg"
    image = load_image(source).image if source.is_file() else Image.new("RGB", (1638, 2048), "gray")
    image = image.resize((1224, 1632), Image.Resampling.LANCZOS)
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--photos", type=Path, default=DEFAULT_PHOTOS, help="folder of test photos")
    parser.add_argument("--repeat", type=int, default=3, help="passes over the photos for latency figures")
    parser.add_argument("--memory-images", type=int, default=200, help="consecutive images for the memory check")
    parser.add_argument("--skip-reference", action="store_true", help="measure only the pipeline")
    args = parser.parse_args()

    files = sorted(p for p in args.photos.glob("*") if p.suffix.lower() in PHOTO_SUFFIXES)
    if not files:
        print(f"no photos found in {args.photos}", file=sys.stderr)
        return 1
    images = [p.read_bytes() for p in files]
    print(f"machine: {torch.get_num_threads()} torch threads; {len(files)} photos from {args.photos}")

    started = time.perf_counter()
    pipeline = Pipeline()
    load_seconds = time.perf_counter() - started
    analyze = lambda data: len(pipeline.analyze(data).faces)  # noqa: E731
    analyze(images[0])  # warm-up

    pipe_seconds, pipe_faces = time_images(analyze, images, args.repeat)
    portrait = two_megapixel_portrait(args.photos)
    portrait_seconds, _ = time_images(analyze, [portrait], 10)

    print(f"\nmodel load: {load_seconds:.2f} s")
    print("pipeline over the photos:")
    print(f"  median {statistics.median(pipe_seconds) * 1000:.0f} ms, p95 {percentile(pipe_seconds, 0.95) * 1000:.0f} ms per image")
    print(f"  {pipe_faces / (sum(pipe_seconds) / args.repeat):.1f} faces/s ({pipe_faces} faces per pass)")
    print(f"  2-megapixel portrait (1224x1632 JPEG): median {statistics.median(portrait_seconds) * 1000:.0f} ms")

    if not args.skip_reference:
        reference = NaiveReference()
        reference.analyze(images[0])
        ref_seconds, ref_faces = time_images(reference.analyze, images, 1)
        ref_total = sum(ref_seconds)
        pipe_total = sum(pipe_seconds) / args.repeat
        print("naive reference (full-resolution MTCNN, VGG-16 at 224 px per face):")
        print(f"  median {statistics.median(ref_seconds) * 1000:.0f} ms, p95 {percentile(ref_seconds, 0.95) * 1000:.0f} ms per image")
        print(f"  {ref_faces / ref_total:.1f} faces/s ({ref_faces} faces per pass)")
        print(f"speed-up over the photos (total time): {ref_total / pipe_total:.1f}x")

    # Memory: the resident size after warm-up against after N more images.
    baseline = rss_mb()
    peak = baseline
    for i in range(args.memory_images):
        analyze(images[i % len(images)])
        peak = max(peak, rss_mb())
    final = rss_mb()
    print(f"memory over {args.memory_images} images: {baseline:.0f} MB -> {final:.0f} MB "
          f"(change {final - baseline:+.0f} MB, peak {peak:.0f} MB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
