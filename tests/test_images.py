"""Image files in, float RGB out: every error path, every pixel mode, the three presets, and
atomic output writers."""

from __future__ import annotations

import io
import os
import stat
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from igkit.io.images import IMAGE_EXTENSIONS, ImageError, list_images, load_image, preprocess
from igkit.io.writers import atomic_open, write_csv, write_npz


def _save(path: Path, array: np.ndarray, **kwargs: object) -> Path:
    Image.fromarray(array).save(path, **kwargs)
    return path


def _noise(shape: tuple[int, ...], seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=shape, dtype=np.uint8)


# ------------------------------------------------------------------------------- error paths


def test_image_error_is_a_value_error() -> None:
    assert issubclass(ImageError, ValueError)


def test_missing_file_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.png"
    with pytest.raises(ImageError, match=r"nope\.png: no such file"):
        load_image(path)


def test_folder_is_not_an_image(tmp_path: Path) -> None:
    with pytest.raises(ImageError, match="is a folder"):
        load_image(tmp_path)


def test_corrupt_file(tmp_path: Path) -> None:
    path = tmp_path / "broken.png"
    path.write_bytes(b"\x89PNG but not really" * 10)
    with pytest.raises(ImageError, match=r"broken\.png: corrupt"):
        load_image(path)


@pytest.mark.parametrize("fmt,suffix", [("PNG", ".png"), ("JPEG", ".jpg")])
def test_truncated_file(tmp_path: Path, fmt: str, suffix: str) -> None:
    buffer = io.BytesIO()
    Image.fromarray(_noise((64, 64, 3))).save(buffer, format=fmt)
    path = tmp_path / f"cut{suffix}"
    path.write_bytes(buffer.getvalue()[: len(buffer.getvalue()) // 2])
    with pytest.raises(ImageError, match=rf"cut\{suffix}: the image data is truncated"):
        load_image(path)


def test_unsupported_format(tmp_path: Path) -> None:
    path = tmp_path / "notes.txt"
    path.write_text("not an image")
    with pytest.raises(ImageError, match=r"notes\.txt: unsupported image format '\.txt'"):
        load_image(path)


@pytest.mark.parametrize("side", [12, 20])  # above the limit (Pillow warns) and above twice it
def test_decompression_bomb_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, side: int
) -> None:
    path = _save(tmp_path / "bomb.png", np.zeros((side, side, 3), np.uint8))
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)
    with pytest.raises(ImageError, match=r"bomb\.png: refused as a possible decompression bomb"):
        load_image(path)


# ---------------------------------------------------------------------------------- pixel modes


def test_rgb_is_scaled_to_unit_range(tmp_path: Path) -> None:
    pixels = _noise((5, 7, 3))
    image = load_image(_save(tmp_path / "rgb.png", pixels))
    assert image.dtype == np.float32 and image.shape == (5, 7, 3)
    np.testing.assert_allclose(image, pixels / 255.0, atol=1e-7)


def test_grayscale_becomes_three_equal_channels(tmp_path: Path) -> None:
    gray = _noise((6, 4))
    image = load_image(_save(tmp_path / "gray.png", gray))
    assert image.shape == (6, 4, 3)
    for c in range(3):
        np.testing.assert_allclose(image[..., c], gray / 255.0, atol=1e-7)


def test_rgba_is_composited_onto_white(tmp_path: Path) -> None:
    rgba = np.array(
        [[[255, 0, 0, 0], [0, 0, 255, 255], [0, 0, 0, 128]]], dtype=np.uint8
    )  # transparent red, opaque blue, half-transparent black
    image = load_image(_save(tmp_path / "rgba.png", rgba))
    np.testing.assert_allclose(image[0, 0], [1.0, 1.0, 1.0], atol=1e-6)
    np.testing.assert_allclose(image[0, 1], [0.0, 0.0, 1.0], atol=1e-6)
    np.testing.assert_allclose(image[0, 2], [1 - 128 / 255] * 3, atol=1e-6)


def test_palette_with_transparency(tmp_path: Path) -> None:
    palette = Image.new("P", (2, 1))
    palette.putpalette([0, 255, 0, 10, 20, 30] + [0] * 762)
    palette.putdata([0, 1])
    path = tmp_path / "palette.png"
    palette.save(path, transparency=0)
    image = load_image(path)
    np.testing.assert_allclose(image[0, 0], [1.0, 1.0, 1.0], atol=1e-6)  # transparent entry
    np.testing.assert_allclose(image[0, 1], np.array([10, 20, 30]) / 255.0, atol=1e-6)


def test_16_bit_png_keeps_its_precision(tmp_path: Path) -> None:
    values = np.array([[0, 1, 256, 32768, 65535]], dtype=np.uint16)
    path = _save(tmp_path / "deep.png", values)
    with Image.open(path) as stored:
        assert stored.mode.startswith("I")  # really stored with 16 bits
    image = load_image(path)
    np.testing.assert_allclose(image[..., 0], values / 65535.0, rtol=1e-6, atol=1e-9)
    assert image[0, 1, 0] > 0  # 1/65535 would be lost in 8 bits


def test_exif_orientation_is_applied(tmp_path: Path) -> None:
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display"
    path = tmp_path / "phone.jpg"
    Image.fromarray(np.zeros((10, 30, 3), np.uint8)).save(path, exif=exif)
    assert load_image(path).shape == (30, 10, 3)


# ------------------------------------------------------------------------------------ presets


@pytest.mark.parametrize("mode", ["pad", "resize", "center_crop"])
@pytest.mark.parametrize("size", [224, (120, 160)])
def test_presets_produce_the_requested_size(mode: str, size: int | tuple[int, int]) -> None:
    image = np.random.default_rng(1).random((100, 200, 3)).astype(np.float32)
    out = preprocess(image, size, mode)  # type: ignore[arg-type]
    expected = (size, size) if isinstance(size, int) else size
    assert out.shape == (*expected, 3) and out.dtype == np.float32
    assert out.min() >= 0.0 and out.max() <= 1.0


def test_pad_keeps_the_aspect_ratio_and_pads_with_black() -> None:
    image = np.ones((100, 200, 3), np.float32)  # 1:2, landscape
    out = preprocess(image, 224, "pad")
    rows = np.flatnonzero(out[..., 0].max(axis=1) > 0.5)
    cols = np.flatnonzero(out[..., 0].max(axis=0) > 0.5)
    assert (rows[0], rows[-1] + 1) == (56, 168)  # 112 rows, centred
    assert (cols[0], cols[-1] + 1) == (0, 224)
    assert (cols[-1] + 1 - cols[0]) / (rows[-1] + 1 - rows[0]) == pytest.approx(2.0)
    assert np.all(out[:56] == 0) and np.all(out[168:] == 0)


def test_resize_stretches() -> None:
    image = np.zeros((100, 200, 3), np.float32)
    image[:, 100:] = 1.0  # right half white
    out = preprocess(image, 50, "resize")
    assert out[:, :24].max() < 0.05 and out[:, 26:].min() > 0.95


def test_center_crop_keeps_the_middle() -> None:
    image = np.zeros((100, 300, 3), np.float32)
    image[:, 100:200, 1] = 1.0  # middle third green
    out = preprocess(image, 64, "center_crop")
    np.testing.assert_allclose(out[..., 1], 1.0, atol=1e-6)
    np.testing.assert_allclose(out[..., [0, 2]], 0.0, atol=1e-6)


def test_center_crop_matches_the_reference_pipeline() -> None:
    """The default model's reference predictions used photos.center_crop_resize on uint8."""
    from igkit.models.photos import center_crop_resize

    photo = _noise((90, 130, 3), seed=3)
    pixels = photo.astype(np.float32) / 255.0
    ours = preprocess(pixels, 48, "center_crop")
    # Same crop and filter as the reference's float path ...
    np.testing.assert_allclose(ours, center_crop_resize(pixels, 48), atol=1e-6)
    # ... and within a few 8-bit steps of its uint8 path even on worst-case noise.
    difference = np.abs(ours - center_crop_resize(photo, 48))
    assert difference.max() <= 6 / 255 and difference.mean() <= 1 / 255


def test_unknown_preset() -> None:
    with pytest.raises(ValueError, match="unknown preprocess mode 'zoom'"):
        preprocess(np.zeros((4, 4, 3), np.float32), 4, "zoom")  # type: ignore[arg-type]


# -------------------------------------------------------------------------------- list_images


def test_list_images_recurses_sorted_and_skips_hidden(tmp_path: Path) -> None:
    tiny = np.zeros((2, 2, 3), np.uint8)
    (tmp_path / "b").mkdir()
    (tmp_path / ".cache").mkdir()
    for rel in ("b/z.png", "a.JPG", "b/c.webp", ".hidden.png", ".cache/x.png"):
        Image.fromarray(tiny).save(tmp_path / rel, format="PNG")
    (tmp_path / "readme.txt").write_text("skip me")
    found = list_images([tmp_path])
    assert [p.relative_to(tmp_path).as_posix() for p in found] == ["a.JPG", "b/c.webp", "b/z.png"]
    # files are kept as given, in order, without duplicates
    single = tmp_path / "b" / "z.png"
    assert list_images([single, tmp_path / "a.JPG", single]) == [single, tmp_path / "a.JPG"]


def test_list_images_errors(tmp_path: Path) -> None:
    with pytest.raises(ImageError, match="no such file or folder"):
        list_images([tmp_path / "missing"])
    (tmp_path / "empty").mkdir()
    with pytest.raises(ImageError, match="no image files in this folder"):
        list_images([tmp_path / "empty"])
    assert ".png" in IMAGE_EXTENSIONS and ".jpg" in IMAGE_EXTENSIONS


# ---------------------------------------------------------------------------- atomic writers


def test_writers_write_complete_files_and_leave_no_temporaries(tmp_path: Path) -> None:
    write_npz(tmp_path / "a.npz", {"x": np.arange(3), "name": "cat", "p": 0.5})
    with np.load(tmp_path / "a.npz", allow_pickle=False) as data:
        assert data["x"].tolist() == [0, 1, 2] and str(data["name"]) == "cat"
    write_csv(tmp_path / "s.csv", [{"a": 1, "b": "x,y"}], ["a", "b"])
    assert (tmp_path / "s.csv").read_bytes() == b'a,b\r\n1,"x,y"\r\n'
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.npz", "s.csv"]


def test_failed_write_keeps_the_old_file(tmp_path: Path) -> None:
    target = tmp_path / "keep.csv"
    target.write_text("old")
    with pytest.raises(RuntimeError, match="boom"), atomic_open(target) as handle:
        handle.write(b"half of the new")
        raise RuntimeError("boom")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["keep.csv"]


def test_npz_refuses_object_arrays(tmp_path: Path) -> None:
    with pytest.raises(TypeError, match="object array"):
        write_npz(tmp_path / "bad.npz", {"x": [1, "a", None]})
    assert not list(tmp_path.iterdir())


def test_written_files_get_normal_permissions(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        write_npz(tmp_path / "p.npz", {"x": np.zeros(1)})
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "p.npz").stat().st_mode) == 0o644
