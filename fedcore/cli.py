"""Command line: ``python -m fedcore <command>``.

Commands: analyze (photos to faces and expression estimates), train, evaluate,
and the history commands people, history and db.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path

from fedcore.constants import DEFAULT_CHECKPOINT, DEFAULT_MAX_FACES, DEFAULT_MAX_PIXELS, DEFAULT_MIN_CONFIDENCE
from fedcore.errors import FedError

logger = logging.getLogger(__name__)

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
# Folder walks pick files by these suffixes; files named on the command line are read whatever their name.
IMAGE_SUFFIXES = (
    ".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff", ".heic", ".heif",
)  # fmt: skip


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Show option defaults and keep the line breaks of command descriptions."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m fedcore",
        description="FED: detect faces and estimate their expressions (estimates, not diagnoses).",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    _add_analyze(subparsers)
    _add_module_command(subparsers, "train", "train the expression classifier")
    _add_module_command(subparsers, "evaluate", "measure a classifier on a labelled dataset split")
    from fedcore.store.cli import register

    register(subparsers)
    return parser


def _add_analyze(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "analyze", help="find faces and estimate expressions in photos",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        description="Find faces in photos and estimate each face's expression. Folders are searched recursively.",
    )  # fmt: skip
    parser.add_argument("paths", nargs="+", type=Path, metavar="PATH", help="image files or folders")
    parser.add_argument("--json", action="store_true", help="write one JSON object per input file (JSON Lines) to stdout")
    parser.add_argument("--annotate", type=Path, metavar="DIR", help="write annotated copies of the images into DIR")
    parser.add_argument("--min-confidence", type=_probability, default=DEFAULT_MIN_CONFIDENCE, help="minimum face detection confidence, 0-1")
    parser.add_argument("--max-faces", type=_positive_int, default=DEFAULT_MAX_FACES, help="keep at most this many faces per image, largest first")
    parser.add_argument("--no-detect", action="store_true", help="treat each image as one already-cropped face")
    parser.add_argument("--checkpoint", type=Path, default=DEFAULT_CHECKPOINT, help="classifier weights (.safetensors with .json beside it)")
    parser.add_argument("--max-pixels", type=_positive_int, default=DEFAULT_MAX_PIXELS, help="reject images with more pixels than this")
    parser.add_argument("--person", metavar="CODE", help="pseudonymous person code to file the results under (with --save)")
    parser.add_argument("--save", action="store_true", help="save the results to the history of --person")
    parser.add_argument(
        "--faces", type=_face_numbers, metavar="N[,N...]",
        help="with --save: numbers of the faces that belong to --person (required when a photo has several faces)",
    )  # fmt: skip
    parser.add_argument("--db", metavar="URL", help="history database URL (default: FED_DATABASE_URL or the SQLite file in the data folder)")
    parser.set_defaults(handler=run_analyze)


def _add_module_command(subparsers: argparse._SubParsersAction, name: str, help_text: str) -> None:
    """Add a command whose options and handler live in the module ``fedcore.<name>``."""
    import importlib

    module = importlib.import_module(f"fedcore.{name}")
    parser = subparsers.add_parser(
        name, help=help_text, description=module.__doc__, formatter_class=HelpFormatter,
    )  # fmt: skip
    module.get_args_parser(parser)
    parser.set_defaults(handler=module.run)


def _probability(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number between 0 and 1, got {text!r}") from None
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"expected a number between 0 and 1, got {text}")
    return value


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive whole number, got {value}")
    return value


def _face_numbers(text: str) -> tuple[int, ...]:
    try:
        numbers = tuple(sorted({int(part) for part in text.split(",") if part.strip()}))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected face numbers such as 1 or 1,3, got {text!r}") from None
    if not numbers or numbers[0] < 1:
        raise argparse.ArgumentTypeError(f"face numbers start at 1, got {text!r}")
    return numbers


def iter_inputs(paths: Sequence[Path]) -> Iterator[Path]:
    """Yield files named directly, and image files found by walking folders, in sorted order."""
    for path in paths:
        if path.is_dir():
            found = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
            if not found:
                logger.warning("no image files found in folder %s", path)
            yield from found
        else:
            yield path


def run_analyze(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from fedcore.annotate import draw_annotations
    from fedcore.errors import ImageLoadError
    from fedcore.pipeline import Pipeline
    from fedcore.results import ErrorInfo, ImageResult

    if args.save and not args.person:
        print("error: --save needs --person CODE", file=sys.stderr)
        return EXIT_USAGE
    if (args.person or args.faces) and not args.save:
        print("error: --person and --faces only take effect with --save; add --save to file the results", file=sys.stderr)
        return EXIT_USAGE
    store = None
    if args.save:
        from fedcore.store import HistoryStore

        store = HistoryStore(args.db)
        if store.get_person(args.person) is None:
            print(
                f"error: person {args.person!r} not found; create it with `python -m fedcore people add {args.person}`",
                file=sys.stderr,
            )
            return EXIT_FAILED

    pipeline = Pipeline(checkpoint=args.checkpoint, max_pixels=args.max_pixels)
    inputs = list(iter_inputs(args.paths))
    if args.annotate:
        args.annotate.mkdir(parents=True, exist_ok=True)
    failures = 0
    progress = tqdm(inputs, desc="analysing", unit="image", disable=len(inputs) <= 1, file=sys.stderr)
    for path in progress:
        data: bytes | None = None
        try:
            data = path.read_bytes()
            loaded = pipeline.load(data, name=str(path))
        except (OSError, ImageLoadError) as exc:
            kind = exc.kind if isinstance(exc, ImageLoadError) else ("not_found" if isinstance(exc, FileNotFoundError) else "unreadable")
            message = str(exc) if isinstance(exc, ImageLoadError) else f"{path}: cannot read file: {exc.strerror or exc}"
            result = ImageResult(source=str(path), width=0, height=0, error=ErrorInfo(kind=kind, message=message))
            loaded = None
        else:
            result = pipeline.analyze_loaded(
                loaded, min_confidence=args.min_confidence, max_faces=args.max_faces, detect=not args.no_detect
            )

        if result.error is not None:
            failures += 1
        if loaded is not None and args.annotate:
            target = _annotation_path(args.annotate, path)
            draw_annotations(loaded.image, result).save(target, quality=90)
        saved: str | None = None
        if store is not None and result.error is None and data is not None:
            refusal = _save_refusal(result, args.faces)
            if refusal is None:
                summary = store.save_capture(
                    args.person, result, image_sha256=hashlib.sha256(data).hexdigest(), source="cli",
                    face_numbers=args.faces,
                )  # fmt: skip
                saved = summary.describe()
            else:
                # A face of a bystander must never land in someone's history by default.
                failures += 1
                saved = f"not saved: {refusal}"
            if args.json:
                logger.info("%s: %s", path, saved)
        _write_result(result, saved=saved, as_json=args.json, progress=progress)
    progress.close()
    return EXIT_FAILED if failures else EXIT_OK


def _save_refusal(result, faces: tuple[int, ...] | None) -> str | None:
    """Return why the faces of ``result`` cannot be saved as requested, or None when they can."""
    count = len(result.faces)
    if faces is None:
        if count > 1:
            return f"{count} faces found; pass --faces with the numbers of the person's faces (see the table)"
        return None
    missing = [number for number in faces if number > count]
    if missing:
        return f"face numbers {missing} do not exist; this image has {count} face(s)"
    return None


def _annotation_path(folder: Path, source: Path) -> Path:
    target = folder / f"{source.stem}.annotated.jpg"
    counter = 2
    while target.exists():
        target = folder / f"{source.stem}.annotated-{counter}.jpg"
        counter += 1
    return target


def _write_result(result, *, saved: str | None, as_json: bool, progress) -> None:
    if as_json:
        line = json.dumps(result.to_json(), ensure_ascii=False)
    else:
        line = format_result(result, saved=saved)
    # tqdm.write keeps the progress bar on stderr intact while results go to stdout.
    progress.write(line, file=sys.stdout)


def format_result(result, *, saved: str | None = None) -> str:
    """Render one image result, and what saving it did, as a short readable block."""
    if result.error is not None:
        return f"{result.source}: ERROR ({result.error.kind}) {result.error.message}"
    lines = [f"{result.source}: {result.width}x{result.height}, {len(result.faces)} face(s)"]
    for face in result.faces:
        x, y, w, h = face.box
        if face.probabilities is None:
            estimate = "unclassified"
        else:
            estimate = f"{face.label:<9} {face.top_probability:6.1%}" + ("  uncertain" if face.uncertain else "")
        lines.append(f"  #{face.number:<3} box {x},{y} {w}x{h}  detection {face.confidence:.3f}  {estimate}")
    lines += [f"  note: {note}" for note in result.notes]
    if saved is not None:
        lines.append(f"  {saved}")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    try:
        return int(args.handler(args))
    except FedError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
