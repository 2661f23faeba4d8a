"""Multi-channel examples from per-channel files and TIFF stacks (igkit.io.channels)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tifffile
from PIL import Image

from igkit.io.channels import (
    DEFAULT_CHANNELS,
    ChannelError,
    find_channel_examples,
    load_channel_files,
    load_channel_stack,
    parse_channel_names,
    read_channel_file,
    save_channel_files,
)


@pytest.fixture
def rgby(rng) -> np.ndarray:
    return rng.random((12, 20, 4))


def test_per_channel_pngs_round_trip_in_any_order(tmp_path, rgby):
    save_channel_files(tmp_path, "cell", rgby)
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "cell_blue.png",
        "cell_green.png",
        "cell_red.png",
        "cell_yellow.png",
    ]
    full = load_channel_files(tmp_path, "cell")
    assert full.shape == (12, 20, 4) and full.dtype == np.float32
    np.testing.assert_allclose(full, rgby, atol=0.5 / 255 + 1e-7)
    picked = load_channel_files(tmp_path, "cell", ["yellow", "red"])
    np.testing.assert_array_equal(picked, full[..., [3, 0]])


def test_eight_and_sixteen_bit_files_are_scaled_by_their_container(tmp_path):
    Image.fromarray(np.array([[0, 128, 255]], dtype=np.uint8)).save(tmp_path / "a.png")
    Image.fromarray(np.array([[0, 32768, 65535]], dtype=np.uint16)).save(tmp_path / "b.png")
    tifffile.imwrite(tmp_path / "c.tif", np.array([[0, 4095, 65535]], dtype=np.uint16))
    np.testing.assert_allclose(read_channel_file(tmp_path / "a.png"), [[0, 128 / 255, 1]])
    np.testing.assert_allclose(read_channel_file(tmp_path / "b.png"), [[0, 32768 / 65535, 1]])
    np.testing.assert_allclose(read_channel_file(tmp_path / "c.tif"), [[0, 4095 / 65535, 1]])
    # 12-bit data in 16-bit files: value_max says what full intensity is.
    tifffile.imwrite(tmp_path / "d.tif", np.array([[0, 4095]], dtype=np.uint16))
    np.testing.assert_allclose(read_channel_file(tmp_path / "d.tif", 4095), [[0, 1]])
    with pytest.raises(ChannelError, match="outside"):
        read_channel_file(tmp_path / "c.tif", 4095)


def test_sixteen_bit_pngs_round_trip(tmp_path, rgby):
    save_channel_files(tmp_path, "x", rgby, bits=16)
    np.testing.assert_allclose(load_channel_files(tmp_path, "x"), rgby, atol=0.5 / 65535 + 1e-7)


def test_a_colour_file_is_reduced_to_its_stain(tmp_path):
    plane = np.zeros((4, 4, 3), dtype=np.uint8)
    plane[..., 1] = 200  # a green stain saved in green
    Image.fromarray(plane).save(tmp_path / "g.png")
    np.testing.assert_allclose(read_channel_file(tmp_path / "g.png"), np.full((4, 4), 200 / 255))


@pytest.mark.parametrize("layout", ["pages", "planar", "samples", "separate_pages"])
def test_tiff_stacks_in_every_layout(tmp_path, rgby, layout):
    data = np.round(rgby * 65535).astype(np.uint16)
    path = tmp_path / "stack.tif"
    if layout == "pages":
        tifffile.imwrite(path, data.transpose(2, 0, 1), photometric="minisblack")
    elif layout == "planar":
        tifffile.imwrite(
            path, data.transpose(2, 0, 1), photometric="minisblack", planarconfig="separate"
        )
    elif layout == "samples":
        tifffile.imwrite(path, data, photometric="rgb", extrasamples=["unspecified"])
    else:
        with tifffile.TiffWriter(path) as writer:
            for k in range(4):
                writer.write(data[..., k])
    stack = load_channel_stack(path)
    np.testing.assert_allclose(stack, rgby, atol=0.5 / 65535 + 1e-7)
    np.testing.assert_array_equal(load_channel_stack(path, ["blue", "green"]), stack[..., [2, 1]])


def test_tiff_stack_with_named_channels(tmp_path, rgby):
    path = tmp_path / "s.tiff"
    planes = np.round(rgby[..., :3] * 255).astype(np.uint8).transpose(2, 0, 1)
    tifffile.imwrite(path, planes, photometric="minisblack")
    out = load_channel_stack(path, ["dapi"], ["tubulin", "protein", "dapi"])
    np.testing.assert_allclose(out[..., 0], rgby[..., 2], atol=0.5 / 255 + 1e-7)
    with pytest.raises(ChannelError, match="holds 3 channels but 4 are named"):
        load_channel_stack(path)
    with pytest.raises(ChannelError, match="'er' is not among the file's channels"):
        load_channel_stack(path, ["er"], ["tubulin", "protein", "dapi"])


def test_find_examples_in_a_folder_and_from_one_file(tmp_path, rgby):
    for name in ("b", "a"):
        save_channel_files(tmp_path, name, rgby)
    (tmp_path / "notes.txt").write_text("not an image")
    found = find_channel_examples([tmp_path])
    assert [e.id for e in found] == ["a", "b"]
    assert found[0].files["yellow"] == tmp_path / "a_yellow.png"
    one = find_channel_examples([tmp_path / "b_green.png", tmp_path])
    assert [e.id for e in one] == ["b", "a"]  # given order, repeats dropped


def test_custom_pattern_with_subfolders(tmp_path, rgby):
    pattern = "{channel}/{id}.tif"
    save_channel_files(tmp_path, "cell7", rgby[..., :2], ["dna", "protein"], pattern)
    assert (tmp_path / "dna" / "cell7.tif").is_file()
    found = find_channel_examples([tmp_path], ["protein", "dna"], pattern)
    assert [e.id for e in found] == ["cell7"]
    image = found[0].load(["protein", "dna"])
    np.testing.assert_allclose(image, rgby[..., [1, 0]], atol=0.5 / 255 + 1e-7)


def test_folder_of_tiff_stacks(tmp_path, rgby):
    planes = np.round(rgby * 255).astype(np.uint8).transpose(2, 0, 1)
    tifffile.imwrite(tmp_path / "one.tif", planes, photometric="minisblack")
    found = find_channel_examples([tmp_path])
    assert [(e.id, e.stack) for e in found] == [("one", tmp_path / "one.tif")]
    assert found[0].load(DEFAULT_CHANNELS).shape == (12, 20, 4)


def test_missing_channel_file_names_it_and_the_fix(tmp_path, rgby):
    save_channel_files(tmp_path, "c1", rgby)
    (tmp_path / "c1_yellow.png").unlink()
    with pytest.raises(ChannelError) as info:
        find_channel_examples([tmp_path])
    message = str(info.value)
    assert str(tmp_path / "c1_yellow.png") in message and "missing channel 'yellow'" in message
    assert "leave 'yellow' out" in message
    with pytest.raises(ChannelError, match="missing channel 'yellow'"):
        load_channel_files(tmp_path, "c1")
    assert isinstance(info.value, ValueError)


def test_channels_of_different_sizes_are_refused(tmp_path, rgby):
    save_channel_files(tmp_path, "c1", rgby)
    Image.fromarray(np.zeros((5, 7), np.uint8)).save(tmp_path / "c1_blue.png")
    with pytest.raises(
        ChannelError,
        match=r"c1_blue.png: channel of size 7x5 but .*c1_red.png "
        r"is 20x12.*resize them",
    ):
        find_channel_examples([tmp_path])[0].load(DEFAULT_CHANNELS)


def test_unreadable_and_unsupported_files(tmp_path, rgby):
    save_channel_files(tmp_path, "c1", rgby)
    (tmp_path / "c1_green.png").write_bytes(b"garbage")
    with pytest.raises(ChannelError, match=r"c1_green.png: cannot be read as an image"):
        load_channel_files(tmp_path, "c1")
    (tmp_path / "bad.tif").write_bytes(b"II*\x00garbage")
    with pytest.raises(ChannelError, match="bad.tif: cannot be read as a TIFF"):
        load_channel_stack(tmp_path / "bad.tif")
    (tmp_path / "other.jpg").write_bytes(b"")
    with pytest.raises(ChannelError, match="matches neither the channel-file pattern"):
        find_channel_examples([tmp_path / "other.jpg"])
    with pytest.raises(ChannelError, match="no such file or folder"):
        find_channel_examples([tmp_path / "nope"])
    tifffile.imwrite(tmp_path / "big.tif", np.full((3, 3), 70000, np.int32))
    with pytest.raises(ChannelError, match="fit neither 8 nor 16 bits"):
        read_channel_file(tmp_path / "big.tif")


def test_empty_folder_and_bad_patterns_and_names(tmp_path):
    with pytest.raises(ChannelError, match="no channel files matching"):
        find_channel_examples([tmp_path])
    with pytest.raises(ChannelError, match="lacks {channel}"):
        find_channel_examples([tmp_path], pattern="{id}.png")
    with pytest.raises(ChannelError, match=r"uses {stain}"):
        find_channel_examples([tmp_path], pattern="{id}_{stain}.png")
    with pytest.raises(ChannelError, match="listed twice"):
        parse_channel_names("red,red")
    with pytest.raises(ChannelError, match="may hold only"):
        parse_channel_names("red,gr/een")
    assert parse_channel_names(" red, green ") == ("red", "green")


def test_tiff_pages_of_different_sizes(tmp_path):
    path = Path(tmp_path) / "pages.tif"
    with tifffile.TiffWriter(path) as writer:
        writer.write(np.zeros((8, 8), np.uint8))
        writer.write(np.zeros((6, 8), np.uint8))
    with pytest.raises(ChannelError, match="pages differ in size.*resize them"):
        load_channel_stack(path, ["a", "b"], ["a", "b"])
