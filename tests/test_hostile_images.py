"""Hostile image files: decoding limits that say what to do, and fuzzed decoders.

Bombs are real files (tests/hostile.py): a 9000x9000 PNG of about 10 KB, PNGs in and beyond
Pillow's decompression-bomb bands, a zlib TIFF stack that decodes to more pixels than the budget.
The property tests feed malformed bytes (truncated files, random bytes behind a valid magic
header, flipped bytes, empty files, huge declared sizes) to :func:`igkit.io.images.load_image`
and the channel readers and require one clear ``ImageError`` / ``ChannelError`` naming the file,
or a valid image, within a deadline.
"""

from __future__ import annotations

import io
import resource
import struct
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import hostile
import numpy as np
import pytest
from PIL import Image

from igkit.cli import main
from igkit.io.channels import ChannelError, load_channel_stack, read_channel_file
from igkit.io.images import (
    DEFAULT_MAX_IMAGE_PIXELS,
    MAX_IMAGE_PIXELS_ENV,
    ImageError,
    load_image,
)


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


@pytest.fixture(autouse=True)
def _no_budget_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(MAX_IMAGE_PIXELS_ENV, raising=False)


# ------------------------------------------------------------------------------ the budget


def test_a_small_png_of_9000x9000_is_refused_from_its_header(tmp_path: Path) -> None:
    path = hostile.png_bomb(tmp_path / "bomb.png", 9000, 9000)
    assert path.stat().st_size < 20_000  # about 10 KB on disk
    assert 9000 * 9000 < Image.MAX_IMAGE_PIXELS  # Pillow alone would decode it
    before, start = _peak_rss_mb(), time.perf_counter()
    with pytest.raises(ImageError) as info:
        load_image(path)
    assert time.perf_counter() - start < 2.0
    assert _peak_rss_mb() - before < 200  # decoding would take 1.6 GB
    message = str(info.value)
    assert message.startswith(f"{path}: the image is 9000x9000 pixels (81.0 megapixels)")
    assert "decoding limit of 50.0 megapixels" in message
    assert "about 1.6 GB" in message
    assert f"{MAX_IMAGE_PIXELS_ENV}=81000000 (or more)" in message
    assert "\n" not in message


def test_the_budget_reaches_the_command_line_as_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = hostile.png_bomb(tmp_path / "bomb.png", 9000, 9000)
    out = tmp_path / "out"
    assert main(["explain", str(path), "--out", str(out), "--no-figures"]) == 2
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("igkit: error: ")
    assert MAX_IMAGE_PIXELS_ENV in lines[0] and "9000x9000" in lines[0]
    assert not out.exists()


def test_the_environment_variable_sets_the_budget(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = hostile.png_bomb(tmp_path / "wide.png", 60, 40, bit_depth=8)
    monkeypatch.setenv(MAX_IMAGE_PIXELS_ENV, "2_000")
    with pytest.raises(ImageError, match=r"60x40 pixels .* limit of 0\.0 megapixels.*=2400 "):
        load_image(path)
    monkeypatch.setenv(MAX_IMAGE_PIXELS_ENV, "2400")
    assert load_image(path).shape == (40, 60, 3)
    for bad in ("lots", "-5", "0", "1e9"):
        monkeypatch.setenv(MAX_IMAGE_PIXELS_ENV, bad)
        with pytest.raises(ImageError, match=rf"{MAX_IMAGE_PIXELS_ENV}=.* not a positive whole"):
            load_image(path)


def test_the_default_budget_lets_a_large_photo_through(tmp_path: Path) -> None:
    side = int(DEFAULT_MAX_IMAGE_PIXELS**0.5) - 1  # 7070x7070, just inside the budget
    path = hostile.png_bomb(tmp_path / "big.png", side, side)
    assert load_image(path).shape == (side, side, 3)


@pytest.mark.parametrize("side", [12, 20])
def test_pillows_bomb_limit_says_how_to_raise_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, side: int
) -> None:
    path = hostile.png_bomb(tmp_path / "bomb.png", side, side, bit_depth=8)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)
    with pytest.raises(ImageError) as info:
        load_image(path)
    message = str(info.value)
    assert f"{path}: refused as a possible decompression bomb" in message
    assert f"has {side * side} pixels" in message and "MAX_IMAGE_PIXELS = 100" in message
    if side == 12:  # Pillow's warning band (100 to 200 pixels): igkit's variable lifts it
        assert f"{MAX_IMAGE_PIXELS_ENV}=144 (or more)" in message
        monkeypatch.setenv(MAX_IMAGE_PIXELS_ENV, "144")
        assert load_image(path).shape == (12, 12, 3)
    else:  # beyond twice the limit Pillow refuses outright
        assert "raise PIL.Image.MAX_IMAGE_PIXELS from Python" in message
        monkeypatch.setenv(MAX_IMAGE_PIXELS_ENV, "400")
        with pytest.raises(ImageError, match="decompression bomb"):
            load_image(path)


def test_pillows_hard_limit_on_a_real_header(tmp_path: Path) -> None:
    path = tmp_path / "huge.png"
    path.write_bytes(hostile.png_declaring(100_000, 100_000))
    with pytest.raises(ImageError, match=r"huge\.png: refused .* 10000000000 pixels"):
        load_image(path)


def test_a_tiff_stack_counts_every_page(tmp_path: Path) -> None:
    # 4 pages of 4096x4096: each page is within every limit, the stack is 67 megapixels.
    path = hostile.tiff_stack_bomb(tmp_path / "stack.tif", 4, 4096)
    assert path.stat().st_size < 1_000_000
    before = _peak_rss_mb()
    with pytest.raises(ChannelError) as info:
        load_channel_stack(path, file_channels=("red", "green", "blue", "yellow"))
    assert _peak_rss_mb() - before < 200
    message = str(info.value)
    assert message.startswith(f"{path}: the TIFF stack is 4 x 4096x4096 pixels (67.1 megapixels)")
    assert f"{MAX_IMAGE_PIXELS_ENV}=67108864 (or more)" in message
    with pytest.raises(ChannelError, match="TIFF stack is 4 x 4096x4096"):
        read_channel_file(path)


def test_channel_files_share_the_budget(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    png = hostile.png_bomb(tmp_path / "c_red.png", 30, 20, bit_depth=8)
    tif = hostile.tiff_stack_bomb(tmp_path / "c.tif", 3, 20)
    monkeypatch.setenv(MAX_IMAGE_PIXELS_ENV, "500")
    with pytest.raises(ChannelError, match=r"c_red\.png: the image is 30x20 pixels"):
        read_channel_file(png)
    with pytest.raises(ChannelError, match=r"c\.tif: the TIFF stack is 3 x 20x20 pixels"):
        load_channel_stack(tif, channels=("a",), file_channels=("a", "b", "c"))
    monkeypatch.setenv(MAX_IMAGE_PIXELS_ENV, "1200")
    assert read_channel_file(png).shape == (20, 30)
    assert load_channel_stack(tif, ("a",), ("a", "b", "c")).shape == (20, 20, 1)
    monkeypatch.setenv(MAX_IMAGE_PIXELS_ENV, "many")
    with pytest.raises(ChannelError, match="not a positive whole number"):
        read_channel_file(png)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)
    monkeypatch.delenv(MAX_IMAGE_PIXELS_ENV)
    with pytest.raises(ChannelError, match=rf"decompression bomb.*{MAX_IMAGE_PIXELS_ENV}"):
        read_channel_file(png)


def test_a_tiff_whose_header_is_shifted_is_damaged_not_an_index_error(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # Found by the fuzzer: the first IFD read from offset 5 makes tifffile log "failed to
    # reshape (0,) to ()" and return an empty array (the reader once died of an IndexError).
    buffer = io.BytesIO()
    Image.fromarray(np.zeros((20, 15, 3), np.uint8)).save(buffer, format="TIFF")
    data = bytearray(buffer.getvalue())
    data[4] = 5
    path = tmp_path / "shifted.tif"
    path.write_bytes(bytes(data))
    with caplog.at_level("DEBUG"):
        with pytest.raises(ChannelError, match=r"shifted\.tif: the TIFF's image data is damaged"):
            read_channel_file(path)
    # tifffile's complaint went into the message, not to the terminal.
    assert not [r for r in caplog.records if r.name.startswith("tifffile")]


def test_a_tiff_page_with_damaged_compressed_data(tmp_path: Path) -> None:
    import tifffile

    path = tmp_path / "stack.tif"
    pages = np.random.default_rng(0).integers(0, 65535, (3, 32, 32), dtype=np.uint16)
    tifffile.imwrite(path, pages, compression="zlib", photometric="minisblack")
    with tifffile.TiffFile(path) as tif:
        start = tif.pages[1].dataoffsets[0] + 10
    data = bytearray(path.read_bytes())
    data[start : start + 20] = bytes(b ^ 0xFF for b in data[start : start + 20])
    path.write_bytes(bytes(data))
    with pytest.raises(ChannelError, match=r"stack\.tif: cannot be read as a TIFF"):
        load_channel_stack(path, ("a", "b", "c"), ("a", "b", "c"))


# ---------------------------------------------------------------------------------- fuzzing

try:  # in the test extra; the budget tests above run without it
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st
except ImportError:  # pragma: no cover - only without the test extra
    settings = None  # type: ignore[assignment]

#: A valid small file of each format, to truncate and mutate.
_FORMATS = {".png": "PNG", ".jpg": "JPEG", ".tif": "TIFF", ".bmp": "BMP", ".gif": "GIF",
            ".webp": "WEBP"}  # fmt: skip
#: Magic bytes that make Pillow or tifffile pick a decoder.
_MAGIC = {
    ".png": b"\x89PNG\r\n\x1a\n",
    ".jpg": b"\xff\xd8\xff\xe0",
    ".tif": b"II*\x00",
    ".tiff": b"MM\x00*",
    ".bmp": b"BM",
    ".gif": b"GIF89a",
    ".webp": b"RIFF\x10\x00\x00\x00WEBPVP8 ",
    ".ppm": b"P6\n",
}


def _valid_file(suffix: str, seed: int, mode: str) -> bytes:
    rng = np.random.default_rng(seed)
    shape = (int(rng.integers(1, 24)), int(rng.integers(1, 24)))
    if suffix == ".tif" and mode == "stack":  # tifffile's own stacks, compressed or not
        import tifffile

        pages = rng.integers(0, 65536, (int(rng.integers(1, 5)), *shape), dtype=np.uint16)
        buffer = io.BytesIO()
        compression = ("zlib", None)[int(rng.integers(0, 2))]
        tifffile.imwrite(buffer, pages, compression=compression, photometric="minisblack")
        return buffer.getvalue()
    pixels = rng.integers(0, 256, (*shape, 3), dtype=np.uint8)
    mode = "RGB" if suffix == ".jpg" or mode == "stack" else mode
    image = Image.fromarray(pixels).convert(mode)
    buffer = io.BytesIO()
    image.save(buffer, format=_FORMATS[suffix])
    return buffer.getvalue()


def _tiff_declaring(width: int, height: int, pages: int) -> bytes:
    """A little-endian TIFF whose IFDs declare width x height uint8 strips of 8 bytes each."""
    entries_per_ifd = 8
    ifd_size = 2 + 12 * entries_per_ifd + 4
    out = bytearray(b"II*\x00" + struct.pack("<I", 8))
    data_offset = 8 + ifd_size * pages
    for page in range(pages):
        next_ifd = 8 + ifd_size * (page + 1) if page + 1 < pages else 0
        tags = [
            (256, 4, 1, width),  # ImageWidth
            (257, 4, 1, height),  # ImageLength
            (258, 3, 1, 8),  # BitsPerSample
            (259, 3, 1, 1),  # no compression
            (262, 3, 1, 1),  # BlackIsZero
            (273, 4, 1, data_offset),  # StripOffsets
            (278, 4, 1, height),  # RowsPerStrip
            (279, 4, 1, 8),  # StripByteCounts: far fewer bytes than declared
        ]
        out += struct.pack("<H", len(tags))
        for tag, kind, count, value in tags:
            out += struct.pack("<HHII", tag, kind, count, value)
        out += struct.pack("<I", next_ifd)
    return bytes(out + b"\x00" * 8)


def _jpeg_declaring(width: int, height: int) -> bytes:
    """A JPEG start of frame declaring width x height, then nothing to decode."""
    sof = struct.pack(">BHHB", 8, height, width, 3) + b"\x01\x22\x00\x02\x11\x01\x03\x11\x01"
    return b"\xff\xd8" + b"\xff\xc0" + struct.pack(">H", len(sof) + 2) + sof + b"\xff\xd9"


@pytest.fixture(scope="module")
def fuzz_dir() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="igkit-fuzz-") as folder:
        yield Path(folder)


def _write(folder: Path, suffix: str, data: bytes) -> Path:
    path = folder / f"fuzzed{suffix}"
    path.write_bytes(data)
    return path


if settings is None:  # pragma: no cover

    @pytest.mark.skip(reason="fuzzing needs hypothesis: pip install hypothesis (igkit[test])")
    def test_fuzzing_needs_hypothesis() -> None:
        pass

else:
    FUZZ = settings(
        max_examples=50,
        deadline=5000,  # ms per example: generous for slow CI, tight enough to catch a hang
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
        derandomize=True,  # the same examples on every run; a failure is reproducible
        database=None,
    )

    @st.composite
    def malformed_files(draw: st.DrawFn) -> tuple[str, bytes]:
        """(suffix, bytes) of a file that is broken in one of several ways."""
        kind = draw(st.sampled_from(["truncated", "flipped", "magic", "empty", "declared"]))
        if kind == "empty":
            return draw(st.sampled_from([*_FORMATS, ".tiff", ".ppm"])), b""
        if kind == "magic":
            suffix = draw(st.sampled_from(sorted(_MAGIC)))
            return suffix, _MAGIC[suffix] + draw(st.binary(min_size=0, max_size=512))
        if kind == "declared":
            width = draw(st.integers(1, 2**31 - 1))
            height = draw(st.integers(1, 2**31 - 1))
            what = draw(st.sampled_from(["png", "jpeg", "tiff"]))
            if what == "png":
                return ".png", hostile.png_declaring(width, height)
            if what == "jpeg":
                return ".jpg", _jpeg_declaring(min(width, 65535), min(height, 65535))
            pages = draw(st.integers(1, 64))
            return ".tif", _tiff_declaring(width, height, pages)
        suffix = draw(st.sampled_from(sorted(_FORMATS)))
        mode = draw(st.sampled_from(["RGB", "L", "RGBA", "P", "stack"]))
        valid = _valid_file(suffix, draw(st.integers(0, 2**16)), mode)
        if kind == "truncated":
            return suffix, valid[: draw(st.integers(0, len(valid) - 1))]
        data = bytearray(valid)
        for _ in range(draw(st.integers(1, 8))):
            data[draw(st.integers(0, len(data) - 1))] = draw(st.integers(0, 255))
        return suffix, bytes(data)

    @FUZZ
    @given(case=malformed_files())
    def test_load_image_refuses_malformed_files_clearly(
        fuzz_dir: Path, case: tuple[str, bytes]
    ) -> None:
        path = _write(fuzz_dir, *case)
        try:
            image = load_image(path)
        except ImageError as exc:
            message = str(exc)
            assert message.startswith(f"{path}: ") and "\n" not in message, message
        else:  # a flipped byte may leave a valid image
            assert image.dtype == np.float32 and image.ndim == 3 and image.shape[2] == 3
            assert np.all((image >= 0) & (image <= 1))

    @FUZZ
    @given(case=malformed_files())
    def test_channel_readers_refuse_malformed_files_clearly(
        fuzz_dir: Path, case: tuple[str, bytes]
    ) -> None:
        path = _write(fuzz_dir, *case)
        readers = [lambda: read_channel_file(path)]
        if path.suffix in (".tif", ".tiff"):
            readers.append(lambda: load_channel_stack(path, ("a",), ("a",)))
        for read in readers:
            try:
                plane = read()
            except ChannelError as exc:
                message = str(exc)
                assert message.startswith(f"{path}: ") and "\n" not in message, message
            else:
                assert plane.dtype == np.float32 and np.all((plane >= 0) & (plane <= 1))
