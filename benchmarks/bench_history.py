"""Time HistoryStore.history() on a SQLite file against a naive ORM version of the same query.

Seeds one person with CAPTURES x FACES observations (10,000 by default) in a
temporary SQLite file. Then prints the median and 95th percentile time of
``history()`` and of a reference that loads ORM objects and builds the
DataFrame row by row. The last line is the ratio of their medians.

    python benchmarks/bench_history.py [--captures 500] [--faces 20] [--runs 20]
"""

from __future__ import annotations

import argparse
import hashlib
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pandas as pd
from sqlalchemy import select
from sqlalchemy.orm import Session, joinedload

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from fedcore.constants import CLASSES  # noqa: E402
from fedcore.results import KEYPOINT_NAMES, DetectedFace, FaceResult, ImageResult  # noqa: E402
from fedcore.store import HistoryStore  # noqa: E402
from fedcore.store.models import Capture, FaceObservation, Person  # noqa: E402

DEFAULT_CAPTURES = 500
DEFAULT_FACES = 20
DEFAULT_RUNS = 20
PERSON_CODE = "BENCH-1"


def build_result(faces: int) -> ImageResult:
    face_results = []
    for number in range(1, faces + 1):
        top = CLASSES[number % len(CLASSES)]
        probabilities = tuple(0.65 if name == top else 0.05 for name in CLASSES)
        box = (30 * number, 20, 28, 32)
        keypoints = tuple((box[0] + 4.0 * index, 30.0) for index in range(len(KEYPOINT_NAMES)))
        detection = DetectedFace(box=box, confidence=0.98, keypoints=keypoints)
        face_results.append(FaceResult(number=number, detection=detection, probabilities=probabilities))
    return ImageResult(
        source="bench.jpg", width=1920, height=1080, faces=tuple(face_results), model_name="bench", model_version="1"
    )


def seed(store: HistoryStore, *, captures: int, faces: int) -> None:
    store.create_person(PERSON_CODE)
    result = build_result(faces)
    start = datetime(2024, 1, 1, tzinfo=timezone.utc)
    for index in range(captures):
        store.save_capture(
            PERSON_CODE,
            result,
            image_sha256=hashlib.sha256(f"bench-{index}".encode()).hexdigest(),
            source="cli",
            captured_at=start + timedelta(hours=index),
        )


def naive_history(store: HistoryStore) -> pd.DataFrame:
    """Load ORM objects and build the DataFrame one dict per row, the way to avoid."""
    with Session(store._engine) as session:
        observations = session.scalars(
            select(FaceObservation)
            .join(Capture)
            .join(Person)
            .where(Person.code == PERSON_CODE)
            .options(joinedload(FaceObservation.capture))
            .order_by(Capture.captured_at, Capture.id, FaceObservation.face_number)
        )
        rows = []
        for observation in observations:
            capture = observation.capture
            probabilities = {name: getattr(observation, name) for name in CLASSES}
            rows.append(
                {
                    "captured_at": capture.captured_at,
                    "capture_id": capture.id,
                    "source": capture.source,
                    "image_sha256": capture.image_sha256,
                    "face_number": observation.face_number,
                    "top_expression": observation.top_expression,
                    "top_probability": max(probabilities.values()),
                    "uncertain": observation.uncertain,
                    **probabilities,
                    "confidence": observation.confidence,
                    "box_x": observation.box_x,
                    "box_y": observation.box_y,
                    "box_w": observation.box_w,
                    "box_h": observation.box_h,
                    "model_name": capture.model_name,
                    "model_version": capture.model_version,
                }
            )
    frame = pd.DataFrame(rows)
    frame["captured_at"] = pd.to_datetime(frame["captured_at"], utc=True)
    return frame


def time_runs(function: Callable[[], pd.DataFrame], runs: int) -> tuple[list[float], int]:
    durations = []
    rows = 0
    for _ in range(runs):
        started = time.perf_counter()
        rows = len(function())
        durations.append(time.perf_counter() - started)
    return durations, rows


def summarize(label: str, durations: list[float], rows: int) -> float:
    median = statistics.median(durations)
    p95 = statistics.quantiles(durations, n=20, method="inclusive")[-1]
    print(f"{label:<28} rows={rows:>6}  median={median * 1000:8.1f} ms  p95={p95 * 1000:8.1f} ms")
    return median


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--captures", type=int, default=DEFAULT_CAPTURES, help="captures to seed (default %(default)s)")
    parser.add_argument("--faces", type=int, default=DEFAULT_FACES, help="faces per capture (default %(default)s)")
    parser.add_argument("--runs", type=int, default=DEFAULT_RUNS, help="timed runs of each query (default %(default)s)")
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="fed-bench-") as folder:
        store = HistoryStore(f"sqlite:///{Path(folder) / 'bench.sqlite3'}")
        started = time.perf_counter()
        seed(store, captures=args.captures, faces=args.faces)
        print(
            f"seeded {args.captures} captures x {args.faces} faces = {args.captures * args.faces} observations "
            f"in {time.perf_counter() - started:.1f} s"
        )
        # One warm-up call each, so that the timings exclude first-use costs.
        store.history(PERSON_CODE)
        naive_history(store)
        history_runs = time_runs(lambda: store.history(PERSON_CODE), args.runs)
        history_median = summarize("history() (Core, columnar)", *history_runs)
        naive_runs = time_runs(lambda: naive_history(store), args.runs)
        naive_median = summarize("naive ORM, row by row", *naive_runs)
        print(f"naive / history() median ratio: {naive_median / history_median:.1f}x")
        store.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
