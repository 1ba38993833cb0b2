"""Tests for fedcore.imageio: every input type, every Pillow mode, EXIF orientation and each error kind."""

from __future__ import annotations

import io
import logging
import struct
import warnings
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageFile, ImageOps, PngImagePlugin

from fedcore.constants import DEFAULT_MAX_PIXELS
from fedcore.errors import ImageLoadError
from fedcore.imageio import LoadedImage, load_image

# An upright 2 x 3 image with six distinct colours, so every flip and rotation is visible.
UPRIGHT = np.array(
    [
        [(255, 0, 0), (0, 255, 0), (0, 0, 255)],
        [(255, 255, 0), (0, 255, 255), (255, 0, 255)],
    ],
    dtype=np.uint8,
)

# How each EXIF orientation stores the upright image. EXIF defines each value by
# where the stored 0th row and 0th column appear when the image is shown.
STORED_FOR_ORIENTATION = {
    1: UPRIGHT,  # row 0 top, column 0 left
    2: UPRIGHT[:, ::-1],  # row 0 top, column 0 right
    3: UPRIGHT[::-1, ::-1],  # row 0 bottom, column 0 right
    4: UPRIGHT[::-1, :],  # row 0 bottom, column 0 left
    5: UPRIGHT.transpose(1, 0, 2),  # row 0 left, column 0 top
    6: UPRIGHT[:, ::-1].transpose(1, 0, 2),  # row 0 right, column 0 top
    7: UPRIGHT[::-1, ::-1].transpose(1, 0, 2),  # row 0 right, column 0 bottom
    8: UPRIGHT[::-1, :].transpose(1, 0, 2),  # row 0 left, column 0 bottom
}

SHORT, ASCII = 3, 2  # TIFF field types


# Helpers that build inputs.


def encode(image: Image.Image, image_format: str, **options: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, image_format, **options)
    return buffer.getvalue()


def pixels(loaded: LoadedImage) -> np.ndarray:
    return np.asarray(loaded.image)


def png_chunk(chunk_type: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + chunk_type + data + struct.pack(">I", zlib.crc32(chunk_type + data))


def png_with_header(width: int, height: int) -> bytes:
    """Return a PNG whose IHDR claims ``width`` x ``height`` RGB but whose IDAT contains one row."""
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    row = zlib.compress(b"\x00" + b"\x00" * 3 * min(width, 16))
    return b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", header) + png_chunk(b"IDAT", row) + png_chunk(b"IEND", b"")


def exif_block(field_type: int, count: int, value: bytes) -> bytes:
    """Return a little-endian EXIF block with a single orientation entry of any type."""
    entry = struct.pack("<HHI", 0x0112, field_type, count) + value.ljust(4, b"\x00")
    return b"II*\x00" + struct.pack("<I", 8) + struct.pack("<H", 1) + entry + struct.pack("<I", 0)


def orientation_exif(orientation: int) -> bytes:
    return exif_block(SHORT, 1, struct.pack("<H", orientation))


def noise_image(size: int = 64) -> Image.Image:
    rng = np.random.default_rng(0)
    return Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8))


def composite_on_white(channel: int, alpha: int) -> int:
    return round((channel * alpha + 255 * (255 - alpha)) / 255)


class NonSeekableStream(io.RawIOBase):
    """A binary stream that can only be read forward, like a pipe or an HTTP body."""

    def __init__(self, data: bytes) -> None:
        self._buffer = io.BytesIO(data)

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:  # type: ignore[override]
        return self._buffer.readinto(buffer)


# Colour modes.


def test_palette_image_maps_index_to_colour():
    image = Image.new("P", (2, 1))
    image.putpalette([0, 0, 0, 12, 34, 56])
    image.putpixel((0, 0), 1)
    loaded = load_image(encode(image, "PNG"))
    assert pixels(loaded)[0, 0].tolist() == [12, 34, 56]
    assert pixels(loaded)[0, 1].tolist() == [0, 0, 0]
    assert loaded.notes == ()


@pytest.mark.parametrize("image_format", ["PNG", "GIF"])
def test_palette_transparency_becomes_white(image_format):
    image = Image.new("P", (2, 1))
    image.putpalette([255, 0, 0, 0, 0, 255])
    image.putpixel((1, 0), 1)
    loaded = load_image(encode(image, image_format, transparency=1))
    assert pixels(loaded)[0, 0].tolist() == [255, 0, 0]
    assert pixels(loaded)[0, 1].tolist() == [255, 255, 255]
    assert "transparency composited on white" in loaded.notes


def test_pa_image_composites_on_white():
    image = Image.new("PA", (2, 1))
    image.putpalette([0, 0, 0, 40, 80, 120])
    image.putpixel((0, 0), (1, 255))
    image.putpixel((1, 0), (1, 0))
    loaded = load_image(image)
    assert pixels(loaded)[0, 0].tolist() == [40, 80, 120]
    assert pixels(loaded)[0, 1].tolist() == [255, 255, 255]


def test_la_image_composites_on_white():
    image = Image.new("LA", (3, 1))
    image.putpixel((0, 0), (10, 255))
    image.putpixel((1, 0), (10, 0))
    image.putpixel((2, 0), (0, 128))
    loaded = load_image(encode(image, "PNG"))
    assert pixels(loaded)[0, 0].tolist() == [10, 10, 10]
    assert pixels(loaded)[0, 1].tolist() == [255, 255, 255]
    assert pixels(loaded)[0, 2].tolist() == [composite_on_white(0, 128)] * 3


def test_rgba_hidden_colour_never_matters():
    image = Image.new("RGBA", (3, 1))
    image.putpixel((0, 0), (255, 0, 0, 0))
    image.putpixel((1, 0), (0, 255, 0, 0))
    image.putpixel((2, 0), (200, 100, 50, 128))
    loaded = load_image(encode(image, "PNG"))
    assert pixels(loaded)[0, 0].tolist() == [255, 255, 255]
    assert pixels(loaded)[0, 1].tolist() == [255, 255, 255]
    assert pixels(loaded)[0, 2].tolist() == [composite_on_white(c, 128) for c in (200, 100, 50)]
    assert loaded.notes == ("transparency composited on white",)


def test_opaque_alpha_adds_no_note():
    loaded = load_image(encode(Image.new("RGBA", (2, 1), (1, 2, 3, 255)), "PNG"))
    assert pixels(loaded)[0, 0].tolist() == [1, 2, 3]
    assert loaded.notes == ()


def test_rgb_transparent_colour_becomes_white():
    image = Image.new("RGB", (2, 1), (255, 0, 0))
    image.putpixel((1, 0), (0, 0, 255))
    loaded = load_image(encode(image, "PNG", transparency=(255, 0, 0)))
    assert pixels(loaded)[0, 0].tolist() == [255, 255, 255]
    assert pixels(loaded)[0, 1].tolist() == [0, 0, 255]


def test_premultiplied_modes_composite_on_white():
    rgba = Image.new("RGBa", (2, 1), (10, 20, 30, 255))
    rgba.putpixel((1, 0), (0, 0, 0, 0))
    gray = Image.new("La", (2, 1), (10, 255))
    gray.putpixel((1, 0), (0, 0))
    assert pixels(load_image(rgba)).tolist() == [[[10, 20, 30], [255, 255, 255]]]
    assert pixels(load_image(gray)).tolist() == [[[10, 10, 10], [255, 255, 255]]]


def test_gray_image_repeats_value():
    loaded = load_image(encode(Image.new("L", (2, 2), 77), "PNG"))
    assert pixels(loaded).shape == (2, 2, 3)
    assert np.all(pixels(loaded) == 77)


def test_bilevel_image_black_and_white():
    image = Image.new("1", (2, 1), 0)
    image.putpixel((1, 0), 1)
    loaded = load_image(encode(image, "PNG"))
    assert pixels(loaded)[0, 0].tolist() == [0, 0, 0]
    assert pixels(loaded)[0, 1].tolist() == [255, 255, 255]


@pytest.mark.parametrize(("mode", "image_format"), [("I;16", "PNG"), ("I;16", "TIFF"), ("I;16B", "TIFF")])
def test_sixteen_bit_scales_by_257(mode, image_format):
    # 257 * 200 separates dividing by 257 from dividing by 256 (which gives 201).
    image = Image.new(mode, (6, 1))
    for x, value in enumerate([0, 128, 129, 257 * 100, 257 * 200, 65535]):
        image.putpixel((x, 0), value)
    data = encode(image, image_format)
    assert Image.open(io.BytesIO(data)).mode == mode
    loaded = load_image(data)
    assert pixels(loaded)[0, :, 0].tolist() == [0, 0, 1, 100, 200, 255]
    assert loaded.notes == ("16-bit image scaled to 8 bits",)


def test_int32_in_16bit_range_scales():
    image = Image.new("I", (3, 1))
    for x, value in enumerate([0, 257 * 100, 65535]):
        image.putpixel((x, 0), value)
    loaded = load_image(encode(image, "TIFF"))
    assert pixels(loaded)[0, :, 0].tolist() == [0, 100, 255]
    assert loaded.notes == ("32-bit image scaled to 8 bits from the 16-bit range",)


def test_int32_outside_16bit_uses_data_range():
    image = Image.new("I", (3, 1))
    for x, value in enumerate([-100, 0, 155]):
        image.putpixel((x, 0), value)
    loaded = load_image(encode(image, "TIFF"))
    assert pixels(loaded)[0, :, 0].tolist() == [0, 100, 255]
    assert loaded.notes == ("32-bit image scaled to 8 bits from its range -100 to 155",)


def test_int32_constant_large_becomes_black():
    loaded = load_image(encode(Image.new("I", (2, 1), 70000), "TIFF"))
    assert pixels(loaded).max() == 0


@pytest.mark.parametrize(
    ("values", "expected", "note"),
    [
        ([0.0, 0.2, 1.0], [0, 51, 255], "float image scaled to 8 bits from the range 0-1"),
        ([0.0, 77.4, 255.0], [0, 77, 255], "float image rounded to 8 bits from the range 0-255"),
        ([-1.0, 0.0, 4.0], [0, 51, 255], "float image scaled to 8 bits from its range -1 to 4"),
        ([float("nan"), 0.2, 1.0], [0, 51, 255], "float image scaled to 8 bits from the range 0-1"),
    ],
)
def test_float_image_scales_by_range(values, expected, note):
    image = Image.new("F", (3, 1))
    for x, value in enumerate(values):
        image.putpixel((x, 0), value)
    loaded = load_image(encode(image, "TIFF"))
    assert pixels(loaded)[0, :, 0].tolist() == expected
    assert loaded.notes == (note,)


def test_cmyk_image_converts_to_rgb():
    image = Image.new("CMYK", (2, 1), (0, 255, 255, 0))
    image.putpixel((1, 0), (0, 0, 0, 255))
    loaded = load_image(encode(image, "TIFF"))
    assert pixels(loaded)[0, 0].tolist() == [255, 0, 0]
    assert pixels(loaded)[0, 1].tolist() == [0, 0, 0]


def test_ycbcr_image_matches_jfif_formula():
    y, cb, cr = 76, 85, 255
    expected = [
        y + 1.402 * (cr - 128),
        y - 0.344136 * (cb - 128) - 0.714136 * (cr - 128),
        y + 1.772 * (cb - 128),
    ]
    loaded = load_image(Image.new("YCbCr", (1, 1), (y, cb, cr)))
    for actual, formula_value in zip(pixels(loaded)[0, 0].tolist(), expected, strict=True):
        # Pillow rounds differently from the floating-point formula, so allow one step.
        assert abs(actual - min(max(formula_value, 0), 255)) <= 1


def test_lab_image_white_and_black():
    image = Image.new("LAB", (2, 1), (255, 128, 128))
    image.putpixel((1, 0), (0, 128, 128))
    loaded = load_image(encode(image, "TIFF"))
    # Pillow 13 maps LAB white to (254, 255, 254), so allow 2 steps from pure white and black.
    assert np.all(np.abs(pixels(loaded)[0, 0].astype(int) - 255) <= 2)
    assert np.all(pixels(loaded)[0, 1] <= 2)


def test_hsv_image_converts_to_rgb():
    image = Image.new("HSV", (3, 1), (0, 255, 255))
    image.putpixel((1, 0), (85, 255, 255))
    image.putpixel((2, 0), (0, 0, 200))
    loaded = load_image(image)
    assert pixels(loaded)[0].tolist() == [[255, 0, 0], [0, 255, 0], [200, 200, 200]]


def test_rgbx_image_drops_padding():
    loaded = load_image(encode(Image.new("RGBX", (1, 1), (1, 2, 3, 4)), "TIFF"))
    assert pixels(loaded)[0, 0].tolist() == [1, 2, 3]


# EXIF orientation.


@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation_gives_upright_layout(orientation):
    stored = Image.fromarray(np.ascontiguousarray(STORED_FOR_ORIENTATION[orientation]))
    loaded = load_image(encode(stored, "PNG", exif=orientation_exif(orientation)))
    assert (loaded.width, loaded.height) == (3, 2)
    assert pixels(loaded).tolist() == UPRIGHT.tolist()
    applied = [note for note in loaded.notes if note.startswith("EXIF orientation")]
    assert applied == ([] if orientation == 1 else [f"EXIF orientation {orientation} applied"])


def test_exif_orientation_six_by_hand():
    red, green, blue, yellow, cyan, magenta = (tuple(colour) for colour in UPRIGHT.reshape(-1, 3).tolist())
    # A camera turned clockwise stores the upright rows as columns, read bottom to top.
    stored = np.array([[blue, magenta], [green, cyan], [red, yellow]], dtype=np.uint8)
    loaded = load_image(encode(Image.fromarray(stored), "PNG", exif=orientation_exif(6)))
    assert pixels(loaded).tolist() == UPRIGHT.tolist()


def test_exif_orientation_in_jpeg():
    # 16-pixel blocks keep each colour recognisable after JPEG compression.
    stored = np.kron(STORED_FOR_ORIENTATION[6], np.ones((16, 16, 1), dtype=np.uint8))
    exif = Image.Exif()
    exif[0x0112] = 6
    loaded = load_image(encode(Image.fromarray(stored), "JPEG", quality=95, exif=exif))
    assert (loaded.width, loaded.height) == (48, 32)
    block_centres = pixels(loaded)[8::16, 8::16].astype(int)
    assert np.abs(block_centres - UPRIGHT.astype(int)).max() <= 8


def test_tiff_orientation_tag_applied():
    stored = Image.fromarray(np.ascontiguousarray(STORED_FOR_ORIENTATION[8]))
    loaded = load_image(encode(stored, "TIFF", tiffinfo={0x0112: 8}))
    assert pixels(loaded).tolist() == UPRIGHT.tolist()


@pytest.mark.parametrize(
    ("exif", "shown"),
    [
        (exif_block(SHORT, 1, struct.pack("<H", 0)), "0"),
        (exif_block(SHORT, 1, struct.pack("<H", 9)), "9"),
        (exif_block(ASCII, 2, b"6\x00"), "'6'"),
    ],
)
def test_invalid_orientation_keeps_stored_layout(exif, shown, caplog):
    stored = Image.fromarray(np.ascontiguousarray(STORED_FOR_ORIENTATION[6]))
    with caplog.at_level(logging.WARNING, logger="fedcore.imageio"):
        loaded = load_image(encode(stored, "PNG", exif=exif), name="odd.png")
    assert pixels(loaded).tolist() == STORED_FOR_ORIENTATION[6].tolist()
    assert f"invalid EXIF orientation {shown} ignored" in loaded.notes
    assert any("odd.png" in record.getMessage() for record in caplog.records)


@pytest.mark.parametrize("values", [(6, 3), (6, 6)])
def test_repeated_orientation_keeps_stored_layout(values, caplog):
    stored = Image.fromarray(np.ascontiguousarray(STORED_FOR_ORIENTATION[6]))
    exif = exif_block(SHORT, 2, struct.pack("<HH", *values))
    with caplog.at_level(logging.WARNING, logger="fedcore.imageio"):
        loaded = load_image(encode(stored, "PNG", exif=exif))
    assert pixels(loaded).tolist() == STORED_FOR_ORIENTATION[6].tolist()
    assert loaded.notes == ("malformed EXIF orientation entry ignored",)
    assert caplog.records


@pytest.mark.parametrize("image_format", ["PNG", "JPEG"])
def test_broken_exif_block_still_loads(image_format, caplog):
    image = Image.new("RGB", (3, 2), (0, 0, 255))
    with caplog.at_level(logging.WARNING, logger="fedcore.imageio"):
        loaded = load_image(encode(image, image_format, exif=b"Exif\x00\x00garbage!!"))
    assert (loaded.width, loaded.height) == (3, 2)
    if image_format == "PNG":
        assert loaded.notes == ("EXIF block unreadable, orientation not applied",)
        assert caplog.records


def test_truncated_exif_logs_not_prints(caplog):
    # An IFD that promises one entry but ends after the count makes Pillow warn.
    exif = b"II*\x00" + struct.pack("<I", 8) + struct.pack("<H", 1)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with caplog.at_level(logging.WARNING, logger="fedcore.imageio"):
            loaded = load_image(encode(Image.new("RGB", (3, 2)), "PNG", exif=exif))
    assert (loaded.width, loaded.height) == (3, 2)
    assert any("Corrupt EXIF" in record.getMessage() for record in caplog.records)


def test_exif_wins_over_conflicting_xmp(caplog):
    stored = Image.fromarray(np.ascontiguousarray(STORED_FOR_ORIENTATION[6]))
    info = PngImagePlugin.PngInfo()
    info.add_itxt("XML:com.adobe.xmp", '<x:xmpmeta><rdf:Description tiff:Orientation="3"/></x:xmpmeta>')
    with caplog.at_level(logging.WARNING, logger="fedcore.imageio"):
        loaded = load_image(encode(stored, "PNG", exif=orientation_exif(6), pnginfo=info))
    assert pixels(loaded).tolist() == UPRIGHT.tolist()
    assert "XMP orientation 3 ignored in favour of EXIF orientation 6" in loaded.notes
    assert any("disagree" in record.getMessage() for record in caplog.records)


def test_result_carries_no_orientation():
    stored = Image.fromarray(np.ascontiguousarray(STORED_FOR_ORIENTATION[5]))
    loaded = load_image(encode(stored, "PNG", exif=orientation_exif(5)))
    assert loaded.image.info == {}
    assert loaded.image.getexif().get(0x0112) is None
    assert np.asarray(ImageOps.exif_transpose(loaded.image)).tolist() == UPRIGHT.tolist()


def test_pil_input_orientation_applied():
    stored = Image.fromarray(np.ascontiguousarray(STORED_FOR_ORIENTATION[7]))
    opened = Image.open(io.BytesIO(encode(stored, "PNG", exif=orientation_exif(7))))
    loaded = load_image(opened)
    assert pixels(loaded).tolist() == UPRIGHT.tolist()


# Formats and frames.


def test_jpeg_named_png_loads(tmp_path):
    path = tmp_path / "photo.png"
    path.write_bytes(encode(Image.new("RGB", (8, 8), (0, 0, 0)), "JPEG"))
    loaded = load_image(path)
    assert (loaded.width, loaded.height) == (8, 8)
    assert pixels(loaded).max() <= 2
    assert loaded.source == str(path)


def test_text_named_jpg_unsupported(tmp_path):
    path = tmp_path / "notes.jpg"
    path.write_text("Patient notes, not a photo.\n" * 4)
    with pytest.raises(ImageLoadError, match="not a supported image") as raised:
        load_image(path)
    assert raised.value.kind == "unsupported"
    assert "notes.jpg" in str(raised.value)
    assert raised.value.source == str(path)


def test_animated_gif_uses_first_frame():
    frames = [Image.new("RGB", (4, 4), colour) for colour in [(255, 0, 0), (0, 255, 0), (0, 0, 255)]]
    data = encode(frames[0], "GIF", save_all=True, append_images=frames[1:])
    loaded = load_image(data)
    assert loaded.frames == 3
    assert "analysed the first of 3 frames" in loaded.notes
    assert np.all(pixels(loaded) == [255, 0, 0])


@pytest.mark.parametrize(("image_format", "options"), [("TIFF", {}), ("PNG", {}), ("WEBP", {"lossless": True})])
def test_multi_frame_formats_first_frame(image_format, options):
    frames = [Image.new("RGB", (4, 4), colour) for colour in [(0, 0, 255), (255, 0, 0)]]
    loaded = load_image(encode(frames[0], image_format, save_all=True, append_images=frames[1:], **options))
    assert loaded.frames == 2
    assert loaded.notes == ("analysed the first of 2 frames",)
    assert np.all(pixels(loaded) == [0, 0, 255])


def test_pil_input_uses_current_frame():
    frames = [Image.new("RGB", (4, 4), colour) for colour in [(255, 0, 0), (0, 255, 0), (0, 0, 255)]]
    opened = Image.open(io.BytesIO(encode(frames[0], "TIFF", save_all=True, append_images=frames[1:])))
    opened.seek(1)
    loaded = load_image(opened)
    assert loaded.notes == ("analysed frame 2 of 3 frames",)
    assert np.all(pixels(loaded) == [0, 255, 0])


def test_heic_orientation_applied_once():
    pillow_heif = pytest.importorskip("pillow_heif", reason="pillow-heif is not installed")
    if not pillow_heif.libheif_info().get("HEIF"):
        pytest.skip("this libheif build has no HEVC encoder, so no HEIC can be written")
    pillow_heif.register_heif_opener()
    # 16-pixel blocks: HEVC works on blocks, and lossless 4:4:4 keeps colours within rounding.
    stored = np.kron(STORED_FOR_ORIENTATION[6], np.ones((16, 16, 1), dtype=np.uint8))
    data = encode(Image.fromarray(stored), "HEIF", exif=orientation_exif(6), quality=-1, chroma=444)
    loaded = load_image(data)
    assert (loaded.width, loaded.height) == (48, 32)
    block_centres = pixels(loaded)[8::16, 8::16].astype(int)
    assert np.abs(block_centres - UPRIGHT.astype(int)).max() <= 3
    assert loaded.notes == ("EXIF orientation 6 applied by the HEIF decoder",)


# Input types.


def test_bytes_input_default_name():
    data = encode(Image.new("RGB", (3, 2), (9, 8, 7)), "PNG")
    for source in (data, bytearray(data), memoryview(data)):
        loaded = load_image(source)
        assert loaded.source == "<bytes>"
        assert pixels(loaded)[1, 2].tolist() == [9, 8, 7]


def test_file_object_input_uses_name(tmp_path):
    path = tmp_path / "visit.png"
    path.write_bytes(encode(Image.new("RGB", (3, 2), (9, 8, 7)), "PNG"))
    with path.open("rb") as file:
        loaded = load_image(file)
    assert loaded.source == str(path)
    assert pixels(loaded)[0, 0].tolist() == [9, 8, 7]


def test_non_seekable_stream_loads():
    stream = NonSeekableStream(encode(Image.new("RGB", (3, 2), (1, 2, 3)), "PNG"))
    assert not stream.seekable()
    loaded = load_image(stream, name="camera")
    assert loaded.source == "camera"
    assert pixels(loaded)[0, 0].tolist() == [1, 2, 3]


def test_text_stream_rejected():
    with pytest.raises(ImageLoadError, match="binary mode") as raised:
        load_image(io.StringIO("not bytes"), name="upload")
    assert raised.value.kind == "unsupported"


def test_pil_image_input_untouched():
    image = Image.new("RGB", (3, 2), (4, 5, 6))
    loaded = load_image(image)
    assert loaded.source == "<PIL image>"
    assert loaded.image is not image
    assert pixels(loaded)[0, 0].tolist() == [4, 5, 6]


def test_path_object_and_string(tmp_path):
    path = tmp_path / "a.png"
    path.write_bytes(encode(Image.new("RGB", (3, 2), (4, 5, 6)), "PNG"))
    assert load_image(path).source == str(path)
    assert load_image(str(path)).source == str(path)
    assert load_image(path, name="visit-3.png").source == "visit-3.png"


def test_array_rgb_and_bgr_orders():
    array = np.zeros((2, 3, 3), dtype=np.uint8)
    array[0, 0] = (10, 20, 30)
    assert pixels(load_image(array))[0, 0].tolist() == [10, 20, 30]
    assert pixels(load_image(array, channel_order="BGR"))[0, 0].tolist() == [30, 20, 10]
    assert load_image(array).source == "<array>"


def test_array_gray_repeats_value():
    loaded = load_image(np.full((2, 3), 200, dtype=np.uint8))
    assert pixels(loaded).shape == (2, 3, 3)
    assert np.all(pixels(loaded) == 200)


def test_array_rgba_and_bgra_composite():
    array = np.array([[(255, 0, 0, 0), (10, 20, 30, 255)]], dtype=np.uint8)
    assert pixels(load_image(array)).tolist() == [[[255, 255, 255], [10, 20, 30]]]
    assert pixels(load_image(array, channel_order="BGR")).tolist() == [[[255, 255, 255], [30, 20, 10]]]


def test_array_non_contiguous_view():
    array = np.arange(2 * 6 * 3, dtype=np.uint8).reshape(2, 6, 3)[:, ::2]
    assert pixels(load_image(array)).tolist() == array.tolist()


@pytest.mark.parametrize("shape", [(2, 3, 2), (2, 3, 5), (2, 3, 3, 1), (6,)])
def test_array_bad_shape_rejected(shape):
    with pytest.raises(ImageLoadError, match=str(shape).replace("(", r"\(").replace(")", r"\)")) as raised:
        load_image(np.zeros(shape, dtype=np.uint8))
    assert raised.value.kind == "unsupported"


@pytest.mark.parametrize("dtype", ["float32", "float64", "uint16", "int32", "bool"])
def test_array_bad_dtype_rejected(dtype):
    with pytest.raises(ImageLoadError, match=f"dtype {dtype}") as raised:
        load_image(np.zeros((2, 3, 3), dtype=dtype), name="frame")
    assert raised.value.kind == "unsupported"
    assert raised.value.source == "frame"


def test_float_array_message_gives_fix():
    with pytest.raises(ImageLoadError, match=r"\(array \* 255\)\.round\(\)\.astype\(np\.uint8\)"):
        load_image(np.ones((2, 3, 3), dtype=np.float32))


def test_array_without_pixels_empty():
    with pytest.raises(ImageLoadError) as raised:
        load_image(np.zeros((0, 3, 3), dtype=np.uint8))
    assert raised.value.kind == "empty"


def test_unknown_source_type_rejected():
    with pytest.raises(TypeError, match="got int"):
        load_image(42)  # type: ignore[arg-type]


def test_invalid_options_rejected():
    image = Image.new("RGB", (1, 1))
    with pytest.raises(ValueError, match="'RGBA'"):
        load_image(image, channel_order="RGBA")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="max_pixels"):
        load_image(image, max_pixels=0)


# Errors.


def test_missing_path_not_found(tmp_path):
    with pytest.raises(ImageLoadError, match="missing.jpg") as raised:
        load_image(tmp_path / "missing.jpg")
    assert raised.value.kind == "not_found"


def test_directory_path_not_found(tmp_path):
    with pytest.raises(ImageLoadError, match="is a directory") as raised:
        load_image(tmp_path)
    assert raised.value.kind == "not_found"
    assert raised.value.source == str(tmp_path)


def test_empty_inputs_are_empty(tmp_path):
    path = tmp_path / "empty.jpg"
    path.write_bytes(b"")
    for source in (path, b"", io.BytesIO(b""), NonSeekableStream(b"")):
        with pytest.raises(ImageLoadError, match="empty") as raised:
            load_image(source)
        assert raised.value.kind == "empty"


@pytest.mark.parametrize("image_format", ["PNG", "JPEG"])
def test_truncated_file_is_corrupt(image_format):
    data = encode(noise_image(), image_format)
    with pytest.raises(ImageLoadError, match="truncated") as raised:
        load_image(data[: len(data) // 2], name=f"cut.{image_format.lower()}")
    assert raised.value.kind == "corrupt"
    assert f"cut.{image_format.lower()}" in str(raised.value)


def test_jpeg_without_end_marker_corrupt():
    data = encode(noise_image(), "JPEG")
    with pytest.raises(ImageLoadError) as raised:
        load_image(data[:-2])
    assert raised.value.kind == "corrupt"


def test_damaged_png_header_corrupt():
    data = bytearray(encode(noise_image(), "PNG"))
    data[29] ^= 0xFF  # inside the IHDR checksum
    with pytest.raises(ImageLoadError, match="header is damaged") as raised:
        load_image(bytes(data), name="scan.png")
    assert raised.value.kind == "corrupt"
    assert "scan.png" in str(raised.value)


def test_truncated_images_flag_rejected(monkeypatch):
    monkeypatch.setattr(ImageFile, "LOAD_TRUNCATED_IMAGES", True)
    data = encode(noise_image(), "PNG")
    with pytest.raises(RuntimeError, match="LOAD_TRUNCATED_IMAGES"):
        load_image(data[: len(data) // 2])


def test_huge_png_header_too_large():
    # The data would need 30 GB decoded, so getting too_large proves the header check came first.
    data = png_with_header(100_000, 100_000)
    with pytest.raises(ImageLoadError) as raised:
        load_image(data, name="huge.png")
    assert raised.value.kind == "too_large"
    assert str(raised.value) == (
        "huge.png is too large: 100000 x 100000 = 10000.0 megapixels exceeds the limit of "
        f"{DEFAULT_MAX_PIXELS / 1e6:.1f} megapixels. Downscale the image, or raise the limit "
        "(max_pixels, or --max-pixels on the command line)."
    )


def test_max_pixels_is_configurable():
    data = encode(Image.new("RGB", (3, 2)), "PNG")
    assert load_image(data, max_pixels=6).width == 3
    with pytest.raises(ImageLoadError, match=r"3 x 2 = 6 pixels exceeds the limit of 5 pixels") as raised:
        load_image(data, max_pixels=5)
    assert raised.value.kind == "too_large"


def test_max_pixels_applies_to_arrays_and_pil():
    with pytest.raises(ImageLoadError, match="exceeds the limit") as from_array:
        load_image(np.zeros((2, 3, 3), dtype=np.uint8), max_pixels=5)
    with pytest.raises(ImageLoadError, match="exceeds the limit") as from_pil:
        load_image(Image.new("RGB", (3, 2)), max_pixels=5)
    assert from_array.value.kind == "too_large"
    assert from_pil.value.kind == "too_large"


def test_pillow_global_limit_not_used(monkeypatch):
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 4)
    data = encode(Image.new("RGB", (4, 4)), "PNG")
    with pytest.raises(Image.DecompressionBombError):
        Image.open(io.BytesIO(data))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        loaded = load_image(data)
    assert (loaded.width, loaded.height) == (4, 4)
    assert Image.MAX_IMAGE_PIXELS == 4
