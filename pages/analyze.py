"""Analyze page: find the faces in photos, estimate each face's expression and save results to a person."""

from __future__ import annotations

import hashlib
import io
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import streamlit as st
from PIL import Image

from fedcore.annotate import draw_annotations, face_thumbnail
from fedcore.constants import DEFAULT_MAX_FACES, DEFAULT_MIN_CONFIDENCE
from fedcore.dashboard import (
    database_url,
    describe_error,
    describe_status,
    format_percent,
    person_label,
    get_pipeline,
    get_store,
    probability_figure,
)
from fedcore.errors import CheckpointError, FedError, ImageLoadError
from fedcore.results import ErrorInfo, FaceResult, ImageResult
from fedcore.store import HistoryStore, Person

if TYPE_CHECKING:
    # PyTorch loads inside get_pipeline(), after the page has drawn its title.
    from fedcore.pipeline import Pipeline

logger = logging.getLogger(__name__)

# Extensions the uploader offers. Streamlit 1.67 compares them with the lower-cased
# file name in the browser and on the server, so PHOTO.JPG is accepted too.
IMAGE_TYPES: tuple[str, ...] = ("jpg", "jpeg", "png", "webp", "bmp", "tiff", "tif", "heic", "heif")
ANALYSES_KEY = "analyze_cache"
SAVE_MESSAGES_KEY = "analyze_save_messages"
# Each cached analysis keeps a display copy of the photo, so the cache is bounded.
MAX_CACHED_ANALYSES = 64
# Longer side of the annotated copy kept for display, in pixels.
DISPLAY_MAX_SIDE = 1600
JPEG_QUALITY = 90
NEW_PERSON = "Create a new person…"
PERSON_KEY = "save_person"
NEW_CODE_KEY = "save_new_code"
NEW_NAME_KEY = "save_new_name"
PERSON_CODE_PREFIX = "P-"


@dataclass(frozen=True)
class Settings:
    min_confidence: float
    max_faces: int


@dataclass(frozen=True)
class Photo:
    """One uploaded or camera image, with its bytes read once."""

    name: str
    data: bytes
    source: str
    sha256: str


@dataclass
class Analysis:
    """The result of one photo, with its drawings encoded once for every rerun that shows them."""

    photo_name: str
    source: str
    sha256: str
    result: ImageResult
    annotated_jpeg: bytes | None = None
    thumbnails_png: dict[int, bytes] = field(default_factory=dict)


# --- Input ------------------------------------------------------------------------


def settings_ui() -> Settings:
    with st.sidebar:
        st.subheader("Detection settings")
        min_confidence = st.slider(
            "Minimum detection confidence",
            min_value=0.5,
            max_value=0.99,
            value=DEFAULT_MIN_CONFIDENCE,
            step=0.01,
            help="Faces the detector is less sure about than this are ignored. Lower it to find small or turned faces.",
        )
        max_faces = st.number_input(
            "Maximum faces per photo",
            min_value=1,
            max_value=DEFAULT_MAX_FACES,
            value=DEFAULT_MAX_FACES,
            step=1,
            help="Only the largest faces up to this number are analyzed.",
        )
    return Settings(min_confidence=float(min_confidence), max_faces=int(max_faces))


def photos_ui() -> list[Photo]:
    """Draw the uploader and the optional camera, and return the photos they hold."""
    uploads = st.file_uploader(
        "Photos",
        type=list(IMAGE_TYPES),
        accept_multiple_files=True,
        help="JPEG, PNG, WebP, BMP, TIFF or HEIC. Several photos can be analyzed at once.",
    )
    photos = [photo_from_bytes(upload.name, upload.getvalue(), source="upload") for upload in uploads]

    # The camera is opt-in, so the browser does not ask for webcam access on every visit.
    # Its container exists on every run, so the elements below keep their places.
    use_camera = st.toggle("Take a picture with the camera", key="use_camera")
    with st.container():
        if use_camera:
            picture = st.camera_input("Camera picture")
            if picture is not None:
                photos.append(photo_from_bytes("camera picture", picture.getvalue(), source="camera"))
    return photos


def photo_from_bytes(name: str, data: bytes, *, source: str) -> Photo:
    return Photo(name=name, data=data, source=source, sha256=hashlib.sha256(data).hexdigest())


# --- Analysis -----------------------------------------------------------------------


def analyze_photo(pipeline: Pipeline, photo: Photo, settings: Settings) -> Analysis:
    """Analyze one photo; every failure becomes ``result.error`` so other photos still run."""
    try:
        loaded = pipeline.load(photo.data, name=photo.name)
        result = pipeline.analyze_loaded(loaded, min_confidence=settings.min_confidence, max_faces=settings.max_faces)
        annotated = draw_annotations(loaded.image, result, max_side=DISPLAY_MAX_SIDE)
        annotated_jpeg = encode_image(annotated, "JPEG")
        thumbnails = {face.number: encode_image(face_thumbnail(loaded.image, face), "PNG") for face in result.faces}
    except ImageLoadError as error:
        result = ImageResult(source=photo.name, width=0, height=0, error=ErrorInfo(error.kind, str(error)))
        return Analysis(photo.name, photo.source, photo.sha256, result)
    except Exception:
        logger.exception("analysis of %s (sha256 %s) failed", photo.name, photo.sha256)
        result = ImageResult(source=photo.name, width=0, height=0, error=ErrorInfo("internal", "analysis failed"))
        return Analysis(photo.name, photo.source, photo.sha256, result)
    return Analysis(photo.name, photo.source, photo.sha256, result, annotated_jpeg, thumbnails)


def encode_image(image: Image.Image, image_format: str) -> bytes:
    # The annotated photo is sent as JPEG: for a 1280x1600 photo, PNG encoding measured 0.8 s
    # and 2.7 MB against 0.01 s and 0.4 MB for JPEG on a shared 2-core machine.
    buffer = io.BytesIO()
    image.save(buffer, format=image_format, **({"quality": JPEG_QUALITY} if image_format == "JPEG" else {}))
    return buffer.getvalue()


def run_analyses(pipeline: Pipeline, photos: Sequence[Photo], settings: Settings) -> list[Analysis]:
    """Return an analysis per photo, running only those not cached for these settings."""
    cache: dict[tuple[str, float, int], Analysis] = st.session_state.setdefault(ANALYSES_KEY, {})
    keys = [(photo.sha256, settings.min_confidence, settings.max_faces) for photo in photos]
    # One index per uncached key, so the same bytes uploaded twice are analyzed once.
    pending = list({key: index for index, key in reversed(list(enumerate(keys))) if key not in cache}.values())

    if pending:
        progress = st.progress(0.0, text=f"Processed 0 of {len(photos)} photos")
        done = len(photos) - len(pending)
        try:
            for index in sorted(pending):
                photo = photos[index]
                progress.progress(done / len(photos), text=f"Processed {done} of {len(photos)}: analyzing {photo.name}")
                cache[keys[index]] = analyze_photo(pipeline, photo, settings)
                done += 1
        finally:
            progress.empty()
        # Oldest entries go first; dicts keep insertion order.
        for stale in list(cache)[: max(0, len(cache) - MAX_CACHED_ANALYSES)]:
            if stale not in keys:
                del cache[stale]

    analyses = []
    for photo, key in zip(photos, keys):
        cached = cache[key]
        # The same bytes under another name are shown under that name.
        analyses.append(
            Analysis(photo.name, photo.source, photo.sha256, cached.result, cached.annotated_jpeg, cached.thumbnails_png)
        )
    return analyses


# --- Results ------------------------------------------------------------------------


def status_ui(analyses: Sequence[Analysis]) -> None:
    finished = sum(1 for analysis in analyses if analysis.result.error is None)
    st.write(f"Processed {len(analyses)} of {len(analyses)} photos; {finished} could be read.")
    rows = [{"file": analysis.photo_name, "status": describe_status(analysis.result)} for analysis in analyses]
    st.dataframe(rows, hide_index=True)


def analysis_ui(analysis: Analysis, *, index: int) -> None:
    result = analysis.result
    st.subheader(analysis.photo_name)
    if result.error is not None:
        st.error(describe_error(analysis.photo_name, result.error))
        if result.error.kind != "internal":
            st.caption(f"Details: {result.error.message}")
        return
    for note in result.notes:
        st.caption(f"Note: {note}")
    if analysis.annotated_jpeg is not None:
        st.image(analysis.annotated_jpeg, caption=f"{analysis.photo_name}: faces numbered from left to right")
    if not result.faces:
        st.warning(
            f"No face found in {analysis.photo_name}. Try a photo where the face is larger and facing the camera, "
            "or lower the minimum detection confidence in the sidebar."
        )
        return
    for face in result.faces:
        face_ui(analysis, face, index=index)


def face_ui(analysis: Analysis, face: FaceResult, *, index: int) -> None:
    with st.container(border=True):
        thumbnail_column, text_column, chart_column = st.columns([1, 2, 4])
        thumbnail = analysis.thumbnails_png.get(face.number)
        if thumbnail is not None:
            thumbnail_column.image(thumbnail, caption=f"Face {face.number}")
        with text_column:
            st.markdown(f"**Face {face.number}**")
            if face.probabilities is None:
                st.info("Unclassified: the model gave no valid estimate for this face, so it cannot be saved.")
            else:
                st.markdown(f"Top expression: **{face.label}** ({format_percent(face.top_probability)})")
                if face.uncertain:
                    st.badge("uncertain", icon=":material/help:", color="orange")
                    st.caption("The top two expressions are close, or the top one is weak.")
            st.caption(f"Detection confidence {face.confidence:.1%}")
        if face.probabilities is not None:
            chart_column.plotly_chart(
                probability_figure(face.probabilities),
                key=f"probabilities-{index}-{analysis.sha256[:12]}-{face.number}",
                config={"displayModeBar": False},
            )


# --- Saving -------------------------------------------------------------------------


def next_person_code(people: Sequence[Person]) -> str:
    """Return the next free code of the form P-0001 after the highest numbered one."""
    numbers = [
        int(person.code[len(PERSON_CODE_PREFIX) :])
        for person in people
        if person.code.startswith(PERSON_CODE_PREFIX) and person.code[len(PERSON_CODE_PREFIX) :].isdigit()
    ]
    return f"{PERSON_CODE_PREFIX}{max(numbers, default=0) + 1:04d}"


@dataclass(frozen=True)
class SaveRequest:
    """The save form's values: the person, and per analysis index the chosen face numbers."""

    code: str | None
    display_name: str | None
    is_new: bool
    chosen: dict[int, list[int]]


def faces_key(index: int, analysis: Analysis) -> str:
    return f"save_faces-{index}-{analysis.sha256}"


def person_ui(store: HistoryStore) -> None:
    people = store.list_people()
    labels = {person.code: person_label(person) for person in people}
    choice = st.selectbox(
        "Person",
        [NEW_PERSON, *labels],
        format_func=lambda code: labels.get(code, code),
        key=PERSON_KEY,
        help="Results are filed under a pseudonymous code. Avoid real names in codes.",
    )
    if choice == NEW_PERSON:
        code_column, name_column = st.columns(2)
        code_column.text_input("New person code", value=next_person_code(people), key=NEW_CODE_KEY)
        name_column.text_input("Display name (optional)", key=NEW_NAME_KEY)


def face_choice_ui(analyses: Sequence[Analysis]) -> None:
    # Only a lone face in a lone photo is pre-selected: photos uploaded together
    # may show different people, and a wrong pick files a stranger's face.
    preselect = len(analyses) == 1
    for index, analysis in enumerate(analyses):
        numbers = [face.number for face in analysis.result.faces if face.probabilities is not None]
        if numbers:
            st.multiselect(
                f"Faces of this person in {analysis.photo_name}",
                numbers,
                default=numbers if preselect and len(numbers) == 1 else [],
                format_func=lambda number: f"Face {number}",
                key=faces_key(index, analysis),
            )


def read_save_request(analyses: Sequence[Analysis]) -> SaveRequest:
    """Read the save form from session state.

    The button's callback reads the form here too, so a value typed just
    before the click counts even when no rerun happened in between.
    """
    state = st.session_state
    choice = state.get(PERSON_KEY, NEW_PERSON)
    is_new = choice == NEW_PERSON
    code = state.get(NEW_CODE_KEY, "").strip() if is_new else choice
    display_name = state.get(NEW_NAME_KEY, "").strip() if is_new else ""
    chosen = {index: list(state.get(faces_key(index, analysis), [])) for index, analysis in enumerate(analyses)}
    return SaveRequest(
        code=code or None,
        display_name=display_name or None,
        is_new=is_new,
        chosen={index: numbers for index, numbers in chosen.items() if numbers},
    )


def save(store: HistoryStore, analyses: Sequence[Analysis], request: SaveRequest) -> list[tuple[str, str]]:
    """Save the chosen faces; return a (message kind, text) pair per photo."""
    assert request.code is not None
    messages = []
    for index, numbers in request.chosen.items():
        analysis = analyses[index]
        # NOTE: captured_at is left to the store, so it is the time of saving, not the photo's EXIF date.
        summary = store.save_capture(
            request.code,
            analysis.result,
            image_sha256=analysis.sha256,
            source=analysis.source,
            face_numbers=numbers,
        )
        kind = "success" if summary.changed else "info"
        messages.append((kind, f"{analysis.photo_name}: {summary.describe()}"))
    return messages


def on_save(store: HistoryStore, analyses: Sequence[Analysis]) -> None:
    """Save on the button's callback, which runs before the next rerun and may still change widget state."""
    request = read_save_request(analyses)
    messages: list[tuple[str, str]] = []
    if request.code is None or not request.chosen:
        messages.append(("error", "Nothing saved: enter a person code and choose at least one face."))
        st.session_state[SAVE_MESSAGES_KEY] = messages
        return
    try:
        if request.is_new:
            store.create_person(request.code, request.display_name)
            # Select the new person and clear the new-person fields, so the
            # next save offers the next free code.
            st.session_state[PERSON_KEY] = request.code
            del st.session_state[NEW_CODE_KEY]
            st.session_state.pop(NEW_NAME_KEY, None)
        messages = save(store, analyses, request)
    except FedError as error:
        logger.warning("saving to person %s failed: %s", request.code, error)
        messages.append(("error", f"Saving stopped: {error}"))
    except Exception:
        logger.exception("saving to person %s failed", request.code)
        messages.append(("error", "Saving failed unexpectedly. Try again; if it fails again, report it to your administrator."))
    st.session_state[SAVE_MESSAGES_KEY] = messages


def save_ui(store: HistoryStore, analyses: Sequence[Analysis]) -> None:
    st.header("Save to history")
    if not any(face.probabilities is not None for analysis in analyses for face in analysis.result.faces):
        st.info("There are no classified faces to save.")
        return
    person_ui(store)
    face_choice_ui(analyses)
    request = read_save_request(analyses)
    st.button(
        "Save to history",
        type="primary",
        disabled=not request.chosen or request.code is None,
        key="save_button",
        on_click=on_save,
        args=(store, analyses),
    )
    if not request.chosen:
        st.caption("Choose at least one face above to save.")
    for kind, text in st.session_state.pop(SAVE_MESSAGES_KEY, []):
        getattr(st, kind)(text)


# --- Page ---------------------------------------------------------------------------


def main() -> None:
    st.title("Analyze")
    st.write(
        "Upload photos or take a picture. FED finds each face, numbers the faces from left to right and "
        "estimates the probability of 8 expressions for each. These are estimates of visible expressions, "
        "not diagnoses. Photos are analyzed in memory and never stored; saving keeps only the estimates."
    )
    settings = settings_ui()
    try:
        pipeline = get_pipeline()
    except CheckpointError as error:
        logger.error("the expression model could not be loaded: %s", error)
        st.error(
            f"The expression model could not be loaded: {error} "
            "Ask your administrator to reinstall the model files in the models folder, then reload this page."
        )
        return

    photos = photos_ui()
    # Each part gets a fixed place, created on every run. While a new photo is
    # analyzed, the save area then shows a disabled button straight away
    # instead of the previous run's live one.
    progress_area = st.container()
    results_area = st.container()
    save_area = st.empty()
    if not photos:
        save_area.info("No photo yet. Drop files on the uploader above, or turn on the camera.")
        return

    save_area.button("Save to history", disabled=True, key="save_button_waiting")
    with progress_area:
        analyses = run_analyses(pipeline, photos, settings)
        if len(analyses) > 1:
            status_ui(analyses)
    with results_area:
        for index, analysis in enumerate(analyses):
            analysis_ui(analysis, index=index)
    with save_area.container():
        try:
            save_ui(get_store(database_url()), analyses)
        except FedError as error:
            logger.error("the history database is not available: %s", error)
            st.error(f"The history database is not available: {error} Results can still be viewed but not saved.")


main()
