import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from inspector.errors import ImageError
from inspector.images import decode_image, read_image, to_rgb8


def _png(arr: np.ndarray, mode: str | None = None) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr, mode=mode).save(buf, format="PNG")
    return buf.getvalue()


def _jpeg(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="JPEG")
    return buf.getvalue()


RGB = (np.arange(64 * 48 * 3) % 251).astype(np.uint8).reshape(48, 64, 3)


def test_rgb_png_and_jpeg_decode_to_rgb8() -> None:
    out = decode_image(_png(RGB))
    assert out.dtype == np.uint8 and out.shape == (48, 64, 3) and np.array_equal(out, RGB)
    assert decode_image(_jpeg(RGB)).shape == (48, 64, 3)


def test_grayscale_rgba_and_16bit_convert() -> None:
    gray = RGB[:, :, 0]
    assert np.array_equal(decode_image(_png(gray))[:, :, 1], gray)
    rgba = np.dstack([RGB, np.full(RGB.shape[:2], 7, np.uint8)])
    assert np.array_equal(decode_image(_png(rgba)), RGB)
    deep = gray.astype(np.uint16) * 257
    buf = io.BytesIO()
    Image.fromarray(deep).save(buf, format="PNG")
    out = decode_image(buf.getvalue())
    assert out.dtype == np.uint8 and np.array_equal(out[:, :, 0], gray)


@pytest.mark.parametrize("make", [_png, _jpeg])
def test_truncated_files_name_the_problem(make) -> None:
    data = make(RGB)
    with pytest.raises(ImageError, match="corrupt or truncated|not an image"):
        decode_image(data[: len(data) // 2], "part.img")


def test_non_image_and_empty_files(tmp_path: Path) -> None:
    f = tmp_path / "notes.png"
    f.write_text("this is not a picture")
    with pytest.raises(ImageError, match="notes.png: not an image file"):
        read_image(f)
    e = tmp_path / "empty.jpg"
    e.write_bytes(b"")
    with pytest.raises(ImageError, match="empty.jpg: file is empty"):
        read_image(e)
    with pytest.raises(ImageError, match="missing.png: file not found"):
        read_image(tmp_path / "missing.png")


def test_wrong_shapes_and_tiny_images_are_refused() -> None:
    with pytest.raises(ImageError, match="unsupported image shape"):
        to_rgb8(np.zeros((10, 10, 5), np.uint8))
    with pytest.raises(ImageError, match="at least 32x32"):
        to_rgb8(np.zeros((8, 8, 3), np.uint8))
    with pytest.raises(ImageError, match="NaN"):
        to_rgb8(np.full((40, 40, 3), np.nan, np.float32))
