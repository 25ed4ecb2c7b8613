import struct

import cv2
import numpy as np
import pytest

from nstvideo.errors import InputError, UsageError
from nstvideo.images import read_image, write_image


def _with_exif_orientation(jpeg: bytes, orientation: int) -> bytes:
    """Insert a minimal EXIF APP1 segment carrying only the orientation tag."""
    tiff = b"II*\x00" + struct.pack("<I", 8) + struct.pack("<H", 1)
    tiff += struct.pack("<HHIHH", 0x0112, 3, 1, orientation, 0) + struct.pack("<I", 0)
    payload = b"Exif\x00\x00" + tiff
    app1 = b"\xff\xe1" + struct.pack(">H", len(payload) + 2) + payload
    return jpeg[:2] + app1 + jpeg[2:]


def test_rgba_is_composited_over_white(tmp_path):
    rgba = np.zeros((8, 10, 4), np.uint8)
    rgba[..., 2] = 255  # red in BGR order
    rgba[:, :5, 3] = 255  # left half opaque, right half transparent
    cv2.imwrite(str(tmp_path / "a.png"), rgba)
    image = read_image(tmp_path / "a.png")
    assert image.shape == (8, 10, 3)
    np.testing.assert_allclose(image[0, 0], [1, 0, 0])
    np.testing.assert_allclose(image[0, 9], [1, 1, 1])


def test_sixteen_bit_grey(tmp_path):
    grey = np.full((6, 7), 32768, np.uint16)
    cv2.imwrite(str(tmp_path / "g.png"), grey)
    image = read_image(tmp_path / "g.png")
    assert image.shape == (6, 7, 3) and image.dtype == np.float32
    np.testing.assert_allclose(image, 32768 / 65535, rtol=1e-6)


def test_exif_orientation_is_applied(tmp_path):
    pixels = np.zeros((20, 40, 3), np.uint8)
    ok, jpeg = cv2.imencode(".jpg", pixels)
    (tmp_path / "r.jpg").write_bytes(_with_exif_orientation(jpeg.tobytes(), 6))  # rotate 90 CW
    assert read_image(tmp_path / "r.jpg").shape == (40, 20, 3)


@pytest.mark.parametrize("content", [b"", b"not an image at all", b"\x89PNG\r\n\x1a\n" + b"\x00" * 40])
def test_corrupt_files_raise_input_error(tmp_path, content):
    path = tmp_path / "bad.png"
    path.write_bytes(content)
    with pytest.raises(InputError, match="bad.png"):
        read_image(path)
    with pytest.raises(InputError, match="no such file"):
        read_image(tmp_path / "missing.png")


def test_write_round_trip_8_and_16_bit(tmp_path):
    image = np.random.default_rng(0).random((9, 11, 3)).astype(np.float32)
    write_image(tmp_path / "x.png", image)
    np.testing.assert_allclose(read_image(tmp_path / "x.png"), image, atol=1 / 255)
    write_image(tmp_path / "x.tif", image)
    assert cv2.imread(str(tmp_path / "x.tif"), cv2.IMREAD_UNCHANGED).dtype == np.uint16
    np.testing.assert_allclose(read_image(tmp_path / "x.tif"), image, atol=1 / 65535)
    with pytest.raises(UsageError):
        write_image(tmp_path / "x.jpg", image, bit_depth=16)
    with pytest.raises(UsageError, match="cannot write"):
        write_image(tmp_path / "x.gifx", image)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.png", "x.tif"]  # no temp files left
