"""Load a photo from a path, bytes, a stream, a PIL image or a numpy array as an upright RGB image.

Every input ends as a :class:`LoadedImage` whose ``image`` is a fresh 8-bit RGB
PIL image with its EXIF orientation applied once and no metadata left on it, so
no later ``ImageOps.exif_transpose`` can rotate it again. Unreadable input
raises :class:`~fedcore.errors.ImageLoadError` with a ``kind`` of
``not_found``, ``empty``, ``unsupported``, ``corrupt`` or ``too_large``, and a
message that names the source.
"""

from __future__ import annotations

import io
import logging
import os
import re
import struct
import threading
import warnings
import zlib
from dataclasses import dataclass
from typing import IO, Literal, Union

import numpy as np
from PIL import Image, ImageFile

from fedcore.constants import DEFAULT_MAX_PIXELS
from fedcore.errors import ImageLoadError

logger = logging.getLogger(__name__)

ImageSource = Union[str, os.PathLike, bytes, bytearray, memoryview, IO[bytes], Image.Image, np.ndarray]
ChannelOrder = Literal["RGB", "BGR"]
CHANNEL_ORDERS: tuple[str, ...] = ("RGB", "BGR")

# Names used in messages when the caller gives no name and the source has none.
BYTES_NAME = "<bytes>"
STREAM_NAME = "<stream>"
PIL_IMAGE_NAME = "<PIL image>"
ARRAY_NAME = "<array>"

WHITE = (255, 255, 255, 255)
EXIF_ORIENTATION_TAG = 0x0112
# EXIF orientation value -> the transpose that makes the stored pixels upright.
ORIENTATION_TRANSPOSE: dict[int, Image.Transpose] = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}
# The pattern Pillow's Image.getexif uses to read tiff:Orientation from XMP.
XMP_ORIENTATION = re.compile(rb'tiff:Orientation(?:="|>)([0-9])')

ALPHA_MODES = frozenset({"RGBA", "LA", "PA", "RGBa", "La"})
SIXTEEN_BIT_MODES = frozenset({"I;16", "I;16L", "I;16B", "I;16N"})
UINT16_MAX = 65535

# Pillow's own open loop reads this many bytes for the format check.
PREFIX_BYTES = 16
# Errors a Pillow plugin raises on a header or data stream it cannot parse.
DECODE_ERRORS = (OSError, SyntaxError, ValueError, EOFError, IndexError, TypeError, struct.error, zlib.error)

_heif_lock = threading.Lock()
_heif_registered: bool | None = None


@dataclass(frozen=True)
class LoadedImage:
    """A decoded photo ready for detection.

    ``image`` is an upright 8-bit RGB image, ``source`` the name used in
    messages, ``notes`` the conversions a user may want to know about, and
    ``frames`` the frame count of the source (only the first frame is used).
    """

    image: Image.Image
    source: str
    notes: tuple[str, ...] = ()
    frames: int = 1

    @property
    def width(self) -> int:
        return self.image.width

    @property
    def height(self) -> int:
        return self.image.height


def load_image(
    source: ImageSource,
    *,
    name: str | None = None,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    channel_order: ChannelOrder = "RGB",
) -> LoadedImage:
    """Decode ``source`` into an upright RGB :class:`LoadedImage`.

    ``source`` is a file path, encoded bytes, a binary file object (read once,
    so a non-seekable stream works), a PIL image, or a uint8 numpy array of
    shape (H, W), (H, W, 3) or (H, W, 4). The format comes from the content,
    never from the file extension. ``name`` replaces the source's own name in
    messages and in ``LoadedImage.source``. ``max_pixels`` caps width * height,
    checked from the header before any pixel is decoded. ``channel_order``
    ("RGB" or "BGR") sets how the colour channels of a 3- or 4-channel array
    are ordered, so OpenCV's BGR and BGRA frames load correctly.

    Raises ImageLoadError for unreadable input, TypeError for a source of
    another type, and ValueError for an invalid ``max_pixels`` or ``channel_order``.
    """
    if channel_order not in CHANNEL_ORDERS:
        raise ValueError(f"channel_order must be one of {CHANNEL_ORDERS}, got {channel_order!r}")
    if isinstance(max_pixels, bool) or not isinstance(max_pixels, int) or max_pixels < 1:
        raise ValueError(f"max_pixels must be a positive integer, got {max_pixels!r}")

    if isinstance(source, np.ndarray):
        return _load_array(source, name or ARRAY_NAME, max_pixels, channel_order)
    if isinstance(source, Image.Image):
        label = name or getattr(source, "filename", "") or PIL_IMAGE_NAME
        return _load_pil_image(source, label, max_pixels)
    if isinstance(source, (str, os.PathLike)):
        return _load_path(source, name, max_pixels)
    if isinstance(source, (bytes, bytearray, memoryview)):
        return _load_bytes(memoryview(source).tobytes(), name or BYTES_NAME, max_pixels)
    if hasattr(source, "read"):
        stream_name = getattr(source, "name", None)
        label = name or (stream_name if isinstance(stream_name, str) else STREAM_NAME)
        data = source.read()
        if not isinstance(data, (bytes, bytearray)):
            raise ImageLoadError(
                f"{label} was opened in text mode, so it returned {type(data).__name__} instead of bytes. "
                "Open the file in binary mode ('rb').",
                kind="unsupported",
                source=label,
            )
        return _load_bytes(bytes(data), label, max_pixels)
    raise TypeError(
        "source must be a path, bytes, a binary file object, a PIL image or a numpy array, "
        f"got {type(source).__name__}"
    )


# Encoded sources: paths, bytes and streams.


def _load_path(path: str | os.PathLike, name: str | None, max_pixels: int) -> LoadedImage:
    label = name or os.fspath(path)
    try:
        file = open(path, "rb")  # noqa: SIM115 -- closed below, after decoding
    except FileNotFoundError:
        message = f"Image file not found: {label}. Check the path."
        raise ImageLoadError(message, kind="not_found", source=label) from None
    except IsADirectoryError:
        raise ImageLoadError(
            f"{label} is a directory, not an image file. Pass the path of an image file.",
            kind="not_found",
            source=label,
        ) from None
    except OSError as error:
        # There is no separate kind for an unreadable file, and to the user it is as absent as a missing one.
        raise ImageLoadError(
            f"Image file {label} cannot be opened: {error.strerror or error}. Check the path and its permissions.",
            kind="not_found",
            source=label,
        ) from error
    with file:
        if os.fstat(file.fileno()).st_size == 0:
            raise _empty_error(label)
        return _decode(file, label, max_pixels, filename=os.fspath(path))


def _load_bytes(data: bytes, label: str, max_pixels: int) -> LoadedImage:
    if not data:
        raise _empty_error(label)
    return _decode(io.BytesIO(data), label, max_pixels, filename="")


def _empty_error(label: str) -> ImageLoadError:
    return ImageLoadError(
        f"{label} is empty (0 bytes). Choose a file that contains an image.", kind="empty", source=label
    )


def _decode(file: IO[bytes], label: str, max_pixels: int, *, filename: str) -> LoadedImage:
    """Identify the format from the content, check the size from the header, then decode fully."""
    _register_heif_opener()
    image = _identify(file, label, filename)
    try:
        _check_size(image.size, label, max_pixels)
        frames = _count_frames(image, label)
        _load_fully(image, label)
        return _finish(image, label, frames=frames, frame_index=0)
    finally:
        image.close()


def _identify(file: IO[bytes], label: str, filename: str) -> ImageFile.ImageFile:
    """Open ``file`` with the first Pillow plugin that accepts its content, reading only the header.

    This repeats the format loop of ``PIL.Image.open`` without its
    decompression-bomb check, because that check compares against the
    process-wide ``Image.MAX_IMAGE_PIXELS`` and would override ``max_pixels``
    or print a warning. Changing that global would affect every other thread
    using Pillow, so the caller's own limit is checked in :func:`_check_size`.
    """
    Image.init()
    prefix = file.read(PREFIX_BYTES)
    if not prefix:
        raise _empty_error(label)

    damaged: list[tuple[str, BaseException]] = []
    for format_id in list(Image.ID):
        factory, accept = Image.OPEN[format_id]
        if accept is not None:
            accepted = accept(prefix)
            # A string is Pillow's way of saying "not this format" with a reason.
            if isinstance(accepted, str) or not accepted:
                continue
        file.seek(0)
        try:
            return factory(file, filename)
        except Image.DecompressionBombError as error:
            raise _bomb_error(label, error) from error
        except DECODE_ERRORS as error:
            # A plugin without an accept function tries every file, so its failure is no sign of damage.
            if accept is not None:
                damaged.append((format_id, error))

    if damaged:
        format_id, error = damaged[0]
        raise ImageLoadError(
            f"{label} starts like a {format_id} image but its header is damaged ({error}). "
            "Export or copy the file again.",
            kind="corrupt",
            source=label,
        ) from error
    raise ImageLoadError(
        f"{label} is not a supported image: its content matches no format Pillow can read. "
        "Use JPEG, PNG, WebP, TIFF, BMP, GIF or HEIC.",
        kind="unsupported",
        source=label,
    )


def _check_size(size: tuple[int, int], label: str, max_pixels: int) -> None:
    width, height = size
    pixels = width * height
    if pixels <= max_pixels:
        return
    if max_pixels >= 1_000_000:
        amount = (
            f"{width} x {height} = {pixels / 1e6:.1f} megapixels "
            f"exceeds the limit of {max_pixels / 1e6:.1f} megapixels"
        )
    else:
        amount = f"{width} x {height} = {pixels} pixels exceeds the limit of {max_pixels} pixels"
    raise ImageLoadError(
        f"{label} is too large: {amount}. Downscale the image, or raise the limit (max_pixels, or --max-pixels on the command line).",
        kind="too_large",
        source=label,
    )


def _count_frames(image: Image.Image, label: str) -> int:
    # Counting GIF frames reads the whole file, so a damaged later frame shows up here.
    try:
        return int(getattr(image, "n_frames", 1))
    except Image.DecompressionBombError as error:
        raise _bomb_error(label, error) from error
    except DECODE_ERRORS as error:
        raise _corrupt_error(label, error) from error


def _load_fully(image: Image.Image, label: str) -> None:
    """Decode every pixel now, so truncated data raises here instead of yielding a partial image."""
    if ImageFile.LOAD_TRUNCATED_IMAGES:
        # Setting it back would change Pillow for every other thread, and loading
        # with it on would silently return partial images.
        raise RuntimeError(
            "PIL.ImageFile.LOAD_TRUNCATED_IMAGES is True, so Pillow would return truncated photos "
            "as partial images. Find the code that sets it and remove that line."
        )
    try:
        image.load()
    except Image.DecompressionBombError as error:
        raise _bomb_error(label, error) from error
    except (*DECODE_ERRORS, RuntimeError) as error:
        # pillow-heif 1.9 raises ValueError for truncated data, and its own plugin code
        # also expects RuntimeError from libheif.
        raise _corrupt_error(label, error) from error


def _bomb_error(label: str, error: BaseException) -> ImageLoadError:
    # Pillow plugins still check some sizes inside a file, such as GIF frame extents, against its global limit.
    return ImageLoadError(f"{label} is too large to decode safely: {error}", kind="too_large", source=label)


def _corrupt_error(label: str, error: BaseException) -> ImageLoadError:
    return ImageLoadError(
        f"{label} is damaged or truncated, so it cannot be decoded ({error}). Export or copy the file again.",
        kind="corrupt",
        source=label,
    )


def _register_heif_opener() -> None:
    """Register pillow-heif's HEIC/HEIF plugin with Pillow on first use."""
    global _heif_registered
    with _heif_lock:
        if _heif_registered is not None:
            return
        try:
            import pillow_heif
        except ImportError:
            logger.warning("pillow-heif is not installed, so HEIC and HEIF photos cannot be read")
            _heif_registered = False
            return
        # pillow-heif (checked with 1.9) applies the container's rotation and mirroring
        # while decoding and resets the EXIF orientation to 1, so _finish does not rotate again.
        pillow_heif.register_heif_opener()
        _heif_registered = True


# Decoded sources: PIL images and arrays.


def _load_pil_image(image: Image.Image, label: str, max_pixels: int) -> LoadedImage:
    """Convert a caller's PIL image, using the frame it is on and its EXIF orientation."""
    _check_size(image.size, label, max_pixels)
    frames = _count_frames(image, label)
    frame_index = image.tell() if frames > 1 else 0
    _load_fully(image, label)
    return _finish(image, label, frames=frames, frame_index=frame_index)


def _load_array(array: np.ndarray, label: str, max_pixels: int, channel_order: str) -> LoadedImage:
    if array.dtype != np.uint8:
        hint = " For floats in [0, 1], pass (array * 255).round().astype(np.uint8)." if array.dtype.kind == "f" else ""
        raise ImageLoadError(
            f"{label}: array dtype {array.dtype} is not supported. Expected uint8 with values 0-255.{hint}",
            kind="unsupported",
            source=label,
        )
    if array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[2] not in (3, 4)):
        raise ImageLoadError(
            f"{label}: array shape {array.shape} is not supported. "
            "Expected (H, W) gray, (H, W, 3) RGB or BGR, or (H, W, 4) RGBA or BGRA.",
            kind="unsupported",
            source=label,
        )
    height, width = array.shape[:2]
    if height == 0 or width == 0:
        raise ImageLoadError(f"{label}: array shape {array.shape} has no pixels.", kind="empty", source=label)
    _check_size((width, height), label, max_pixels)

    if channel_order == "BGR" and array.ndim == 3:
        array = array[..., [2, 1, 0, 3]] if array.shape[2] == 4 else array[..., ::-1]
    image = Image.fromarray(np.ascontiguousarray(array))
    rgb, notes = _to_rgb(image)
    return _make_result(rgb, label, notes, frames=1)


# Conversion to upright RGB.


def _finish(image: Image.Image, label: str, *, frames: int, frame_index: int) -> LoadedImage:
    notes: list[str] = []
    if frames > 1:
        position = "the first" if frame_index == 0 else f"frame {frame_index + 1}"
        notes.append(f"analysed {position} of {frames} frames")
    # pillow-heif stores the orientation it applied while decoding under this key.
    decoded_orientation = image.info.get("original_orientation")
    if decoded_orientation in ORIENTATION_TRANSPOSE:
        notes.append(f"EXIF orientation {decoded_orientation} applied by the HEIF decoder")
    orientation, orientation_notes = _read_orientation(image, label)
    rgb, conversion_notes = _to_rgb(image)
    # Conversion works pixel by pixel, so rotating after it gives the same result as before it.
    if orientation in ORIENTATION_TRANSPOSE:
        rgb = rgb.transpose(ORIENTATION_TRANSPOSE[orientation])
        notes.append(f"EXIF orientation {orientation} applied")
    return _make_result(rgb, label, [*notes, *orientation_notes, *conversion_notes], frames=frames)


def _make_result(rgb: Image.Image, label: str, notes: list[str], *, frames: int) -> LoadedImage:
    # Dropping the metadata removes the orientation tag, which would otherwise let a
    # later exif_transpose rotate the image a second time, and any GPS or camera data.
    rgb.info = {}
    return LoadedImage(image=rgb, source=label, notes=tuple(notes), frames=frames)


def _read_orientation(image: Image.Image, label: str) -> tuple[int, list[str]]:
    """Return the valid EXIF orientation (1 when absent or unusable) and notes on any problem.

    An unusable entry (0, 9, text, several values, a broken EXIF block) leaves the image as stored.
    When EXIF and XMP disagree, EXIF wins, as in Pillow 13's getexif, which reads
    the XMP orientation only when EXIF has none.
    """
    # Pillow reports broken EXIF through warnings.warn, which prints to stderr, so they are recorded and logged.
    # NOTE: catch_warnings swaps process-wide state, so a warning another thread
    # raises in this short window is logged here instead of printed.
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            value = image.getexif().get(EXIF_ORIENTATION_TAG)
            error = None
        except DECODE_ERRORS as exif_error:
            value, error = None, exif_error
    messages = [str(warning.message) for warning in caught]
    for message in messages:
        logger.warning("%s: EXIF metadata: %s", label, message)

    if error is not None:
        logger.warning("%s: the EXIF block is unreadable (%s), so the image is used as stored", label, error)
        return 1, ["EXIF block unreadable, orientation not applied"]
    # Pillow keeps the first of several orientation values and only warns ("tag 274 had too many entries").
    # Such an entry may contradict itself, so it is not trusted.
    if any(f"tag {EXIF_ORIENTATION_TAG} " in message for message in messages):
        logger.warning("%s: the EXIF orientation entry has several values, so the image is used as stored", label)
        return 1, ["malformed EXIF orientation entry ignored"]
    if value is None:
        return 1, []
    if type(value) is not int or not 1 <= value <= 8:
        logger.warning(
            "%s: EXIF orientation %r is not an integer from 1 to 8, so the image is used as stored", label, value
        )
        return 1, [f"invalid EXIF orientation {value!r} ignored"]

    xmp_value = _read_xmp_orientation(image)
    if xmp_value is not None and xmp_value != value:
        logger.warning(
            "%s: EXIF orientation %d and XMP orientation %d disagree, so the EXIF value is used",
            label,
            value,
            xmp_value,
        )
        return value, [f"XMP orientation {xmp_value} ignored in favour of EXIF orientation {value}"]
    return value, []


def _read_xmp_orientation(image: Image.Image) -> int | None:
    xmp = image.info.get("XML:com.adobe.xmp") or image.info.get("xmp")
    if isinstance(xmp, str):
        xmp = xmp.encode("utf-8", "replace")
    if not isinstance(xmp, bytes):
        return None
    match = XMP_ORIENTATION.search(xmp)
    return int(match[1]) if match else None


def _to_rgb(image: Image.Image) -> tuple[Image.Image, list[str]]:
    """Convert any Pillow mode to a new 8-bit RGB image, compositing transparency on white."""
    mode = image.mode
    if mode in SIXTEEN_BIT_MODES or mode in ("I", "F"):
        gray, note = _scale_to_uint8(image)
        return Image.fromarray(gray).convert("RGB"), [note]
    if mode in ALPHA_MODES or image.has_transparency_data:
        # Premultiplied modes convert to RGBA only through their straight-alpha form.
        if mode == "La":
            image = image.convert("LA")
        rgba = image.convert("RGBA")
        lowest_alpha, _ = rgba.getchannel("A").getextrema()
        if lowest_alpha == 255:
            return rgba.convert("RGB"), []
        background = Image.new("RGBA", rgba.size, WHITE)
        return Image.alpha_composite(background, rgba).convert("RGB"), ["transparency composited on white"]
    # NOTE: Pillow 13 decodes 16-bit RGB PNG straight to RGB by keeping the
    # high byte, which can differ by 1 from the rounding used for 16-bit gray.
    # NOTE: embedded ICC profiles are ignored, so CMYK and wide-gamut photos
    # convert with Pillow's fixed formulas instead of colour management.
    return image.convert("RGB"), []


def _scale_to_uint8(image: Image.Image) -> tuple[np.ndarray, str]:
    """Scale a 16-bit, 32-bit integer or float gray image to uint8 and describe the rule used.

    16-bit values divide by 257, so 65535 becomes 255 and the whole range is
    kept, never clipped. 32-bit integer images use the same rule when every
    value lies in 0-65535 (as after ``convert("I")`` of a 16-bit image),
    and otherwise stretch their own minimum-maximum range to 0-255. Float
    images are taken as 0-1 when every value lies there, as 0-255 when every
    value lies there, and otherwise stretch their own range. Non-finite float
    values become 0.
    """
    values = np.asarray(image)
    mode = image.mode
    if mode in SIXTEEN_BIT_MODES:
        return _divide_round(values, 257.0), "16-bit image scaled to 8 bits"

    values = values.astype(np.float64)
    if mode == "F":
        finite = np.isfinite(values)
        values = np.where(finite, values, 0.0)
        low, high = (values[finite].min(), values[finite].max()) if finite.any() else (0.0, 0.0)
        if low >= 0.0 and high <= 1.0:
            return _divide_round(values, 1.0 / 255.0), "float image scaled to 8 bits from the range 0-1"
        if low >= 0.0 and high <= 255.0:
            return _divide_round(values, 1.0), "float image rounded to 8 bits from the range 0-255"
        return _stretch(values, low, high), f"float image scaled to 8 bits from its range {low:g} to {high:g}"

    low, high = int(values.min()), int(values.max())
    if low >= 0 and high <= UINT16_MAX:
        return _divide_round(values, 257.0), "32-bit image scaled to 8 bits from the 16-bit range"
    return _stretch(values, low, high), f"32-bit image scaled to 8 bits from its range {low} to {high}"


def _divide_round(values: np.ndarray, divisor: float) -> np.ndarray:
    return np.clip(np.rint(values / divisor), 0, 255).astype(np.uint8)


def _stretch(values: np.ndarray, low: float, high: float) -> np.ndarray:
    # A constant image has no range to stretch, so it becomes black.
    span = high - low
    if span == 0:
        return np.zeros(values.shape, dtype=np.uint8)
    return _divide_round((values - low) * 255.0, span)
