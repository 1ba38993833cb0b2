"""Measure the dashboard in a real browser: cold start, and upload-to-result time with the model warm.

Run from the project root: ``python benchmarks/bench_dashboard.py [--repeats N] [--megapixels M]``.
Needs Debian's Chromium at /usr/bin/chromium (``.ci/chromium.sh`` installs it)
and the playwright Python package. It prints the figures and writes nothing
outside a temporary folder.

Cold start counts from launching ``streamlit run app.py`` to the health
endpoint responding, to the Analyze title in the browser, and to the uploader,
which appears once the detector and the expression model are loaded.
Upload to result counts from handing the photo to the uploader's file input
to the annotated image being visible; the upload is a localhost transfer, so
nearly all of it is analysis, drawing and page update.
"""

from __future__ import annotations

import argparse
import io
import statistics
import sys
import tempfile
import time
from pathlib import Path

PROJECT_DIR = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PROJECT_DIR))

from PIL import Image  # noqa: E402

from tests.helpers import SHARED_DATA, astronaut  # noqa: E402
from tests.test_e2e_browser import (  # noqa: E402
    CHROMIUM,
    CHROMIUM_ARGS,
    start_streamlit,
    stop_streamlit,
    wait_until_healthy,
)

BENCH_PHOTO = SHARED_DATA / "photos" / "facenet_pytorch__paul_rudd.jpg"
# Side of the generated square photo when the shared one is absent: about 2 megapixels.
GENERATED_SIDE = 1414
DEFAULT_REPEATS = 5
DEFAULT_MEGAPIXELS = 2.0
TIMEOUT_MS = 300_000


def benchmark_photo(megapixels: float) -> tuple[Image.Image, str]:
    """Return the benchmark portrait scaled to ``megapixels`` (0: as stored), and its label."""
    if not BENCH_PHOTO.is_file():
        return astronaut().resize((GENERATED_SIDE, GENERATED_SIDE), Image.Resampling.LANCZOS), "generated astronaut"
    image = Image.open(BENCH_PHOTO).convert("RGB")
    if megapixels > 0:
        scale = (megapixels * 1e6 / (image.width * image.height)) ** 0.5
        image = image.resize((round(image.width * scale), round(image.height * scale)), Image.Resampling.LANCZOS)
    return image, BENCH_PHOTO.name


def variant_jpeg(image: Image.Image, index: int) -> bytes:
    """Encode ``image`` with one pixel changed, so each upload has new bytes and misses the result cache."""
    copy = image.copy()
    copy.putpixel((0, 0), (index % 256, (index * 7) % 256, (index * 13) % 256))
    buffer = io.BytesIO()
    copy.save(buffer, format="JPEG", quality=92)
    return buffer.getvalue()


def run(repeats: int, megapixels: float) -> None:
    from playwright.sync_api import expect, sync_playwright

    image, label = benchmark_photo(megapixels)
    print(f"photo: {label}, {image.width}x{image.height} ({image.width * image.height / 1e6:.1f} megapixels)")

    with tempfile.TemporaryDirectory() as folder_name:
        folder = Path(folder_name)
        started = time.perf_counter()
        process, url, log = start_streamlit(folder)
        try:
            wait_until_healthy(url, process, log)
            healthy = time.perf_counter()
            with sync_playwright() as playwright:
                browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
                page = browser.new_page(viewport={"width": 1400, "height": 1000})
                expect.set_options(timeout=TIMEOUT_MS)
                page.goto(url)
                expect(page.get_by_role("heading", name="Analyze")).to_be_visible()
                titled = time.perf_counter()
                uploader = page.locator('[data-testid="stFileUploader"] input[type="file"]')
                expect(uploader).to_be_attached()
                ready = time.perf_counter()
                print(f"cold start: health endpoint {healthy - started:.2f} s, Analyze title {titled - started:.2f} s, "
                      f"uploader with model loaded {ready - started:.2f} s")  # fmt: skip

                # One unmeasured upload runs the networks once, so the timings below are warm.
                timings = []
                for index in range(repeats + 1):
                    if index:
                        page.goto(url)
                    photo = folder / f"bench-{index}.jpg"
                    photo.write_bytes(variant_jpeg(image, index))
                    uploader = page.locator('[data-testid="stFileUploader"] input[type="file"]')
                    expect(uploader).to_be_attached()
                    begin = time.perf_counter()
                    uploader.set_input_files(photo)
                    expect(page.get_by_text(f"{photo.name}: faces numbered from left to right")).to_be_visible()
                    expect(page.locator('[data-testid="stPlotlyChart"]').first).to_be_visible()
                    elapsed = time.perf_counter() - begin
                    if index:
                        timings.append(elapsed)
                    else:
                        print(f"first upload (unmeasured warm-up): {elapsed:.2f} s")
                browser.close()
        finally:
            stop_streamlit(process)

    print(
        f"upload to result, warm, {repeats} runs: median {statistics.median(timings):.2f} s, "
        f"min {min(timings):.2f} s, max {max(timings):.2f} s"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=DEFAULT_REPEATS, help="measured uploads (default %(default)s)")
    parser.add_argument(
        "--megapixels", type=float, default=DEFAULT_MEGAPIXELS,
        help="scale the portrait to this size before uploading; 0 keeps its stored 3.4 megapixels (default %(default)s)",
    )  # fmt: skip
    args = parser.parse_args()
    if args.megapixels < 0:
        parser.error(f"--megapixels must be 0 or more, got {args.megapixels}")
    if args.repeats < 1:
        parser.error(f"--repeats must be at least 1, got {args.repeats}")
    if not CHROMIUM.exists():
        sys.exit(f"{CHROMIUM} not found; install Debian's chromium package, for example with `. .ci/chromium.sh`")
    run(args.repeats, args.megapixels)


if __name__ == "__main__":
    main()
