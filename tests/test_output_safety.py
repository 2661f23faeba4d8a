"""An output folder holds one run, and igkit never destroys a file it did not write.

Real runs of ``igkit explain`` (the default model, 2 steps) into folders holding inputs, a
user's files, an earlier run, a symlink, a damaged run record, and onto a disk that fills up
(``RLIMIT_FSIZE`` in a child process: writes past the limit fail as on a full disk).
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from igkit.cli import main

FAST = ["--steps", "2", "--no-figures"]


@pytest.fixture(scope="module")
def photo_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import skimage.data as skimage_data
    folder = tmp_path_factory.mktemp("photos")
    Image.fromarray(skimage_data.chelsea()).save(folder / "chelsea.png")
    return folder


def _digests(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def _one_error(err: str) -> str:
    # The progress bar shares stderr; what is not the bar is the one error line.
    lines = [line for line in err.splitlines() if line.strip() and "image/s]" not in line]
    assert len(lines) == 1 and lines[0].startswith("igkit: error: "), err
    assert "Traceback" not in err
    return lines[0]


def _copy(photo_dir: Path, folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / "chelsea.png"
    target.write_bytes((photo_dir / "chelsea.png").read_bytes())
    return target


def test_output_over_an_input_is_refused(photo_dir: Path, tmp_path: Path, capsys) -> None:
    photos = tmp_path / "photos"
    _copy(photo_dir, photos)
    before = _digests(photos)
    # The panel figure of chelsea.png would be written as photos/chelsea.png: the input.
    assert main(["explain", str(photos), "--out", str(photos), "--steps", "2"]) == 2
    line = _one_error(capsys.readouterr().err)
    assert "over its input" in line and "choose another --out" in line
    assert _digests(photos) == before  # nothing written, nothing changed


def test_a_file_igkit_did_not_write_is_never_overwritten(
    photo_dir: Path, tmp_path: Path, capsys
) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "summary.csv").write_text("my own table\n")
    (out / "notes.txt").write_text("keep me\n")
    before = _digests(out)
    assert main(["explain", str(photo_dir / "chelsea.png"), "--out", str(out), *FAST]) == 2
    assert "igkit did not write it" in _one_error(capsys.readouterr().err)
    assert _digests(out) == before


def test_a_symlink_in_the_way_is_refused(photo_dir: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "out"
    out.mkdir()
    victim = tmp_path / "victim.txt"
    victim.write_text("precious\n")
    (out / "chelsea.npz").symlink_to(victim)
    assert main(["explain", str(photo_dir / "chelsea.png"), "--out", str(out), *FAST]) == 2
    _one_error(capsys.readouterr().err)
    assert victim.read_text() == "precious\n"


def test_an_earlier_run_is_refused_then_replaced_with_replace(
    photo_dir: Path, tmp_path: Path, capsys
) -> None:
    out = tmp_path / "out"
    first = tmp_path / "first"
    _copy(photo_dir, first).rename(first / "kitten.png")
    assert main(["explain", str(first / "kitten.png"), "--out", str(out), *FAST]) == 0
    record = json.loads((out / "igkit-run.json").read_text())
    assert record["complete"] is True
    assert sorted(record["files"]) == ["igkit-run.json", "kitten.npz", "summary.csv"]
    assert record["settings"]["output"] == "softmax"  # resolved, not None
    (out / "mine.txt").write_text("a user's file\n")
    capsys.readouterr()

    again = ["explain", str(photo_dir / "chelsea.png"), "--out", str(out), *FAST]
    assert main(again) == 2
    line = _one_error(capsys.readouterr().err)
    assert "earlier igkit run" in line and "--replace" in line
    assert (out / "kitten.npz").is_file()

    assert main([*again, "--replace"]) == 0
    # The earlier run's files are gone (runs do not mix), the user's file stays.
    assert sorted(p.name for p in out.iterdir()) == [
        "chelsea.npz", "igkit-run.json", "mine.txt", "summary.csv",
    ]  # fmt: skip
    assert (out / "mine.txt").read_text() == "a user's file\n"


def test_a_damaged_run_record_is_refused(photo_dir: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "igkit-run.json").write_text('{"files": "summary.csv"}')
    args = ["explain", str(photo_dir / "chelsea.png"), "--out", str(out), *FAST, "--replace"]
    assert main(args) == 2
    assert "damaged" in _one_error(capsys.readouterr().err)


_FULL_DISK = """
import resource, signal, sys
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG
limit = int(sys.argv[1])
resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
from igkit.cli import main
sys.exit(main(sys.argv[2:]))
"""


def test_a_full_disk_stops_with_one_line_and_leaves_whole_files(
    photo_dir: Path, tmp_path: Path
) -> None:
    photos = tmp_path / "photos"
    _copy(photo_dir, photos)
    (photos / "chelsea.png").rename(photos / "a.png")
    _copy(photo_dir, photos)
    out = tmp_path / "out"
    # Each npz is ~1.2 MB (attributions and the image at 224 x 224 x 3, float32): a 1 MB limit
    # lets the run record through and stops the first npz.
    done = subprocess.run(
        [sys.executable, "-c", _FULL_DISK, str(1 << 20), "explain", str(photos), "--out",
         str(out), *FAST],
        capture_output=True, text=True, timeout=600,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"},
    )
    assert done.returncode == 2, done.stderr
    line = _one_error(done.stderr)
    assert "cannot write a.npz" in line and "free space or choose another --out" in line
    names = sorted(p.name for p in out.iterdir())
    assert names == ["igkit-run.json"], names  # no partial npz, no temporary file left
    assert json.loads((out / "igkit-run.json").read_text())["complete"] is False



def test_a_full_disk_is_one_line_for_the_dataset_commands(tmp_path: Path) -> None:
    """explain-dataset and summarize on a disk that fills up (RLIMIT_FSIZE): one line, exit 2,
    no traceback; the store's committed batches stay readable."""
    from test_runner_support import (
        MODEL_MODULE,
        RUN_OPTIONS,
        cli_env,
        make_images,
        write_model_module,
    )

    models = write_model_module(tmp_path / "models")
    make_images(tmp_path / "imgs", 6)
    store = tmp_path / "store"
    run = [sys.executable, "-c", _FULL_DISK]
    explain = ["explain-dataset", str(tmp_path / "imgs"), "--out", str(store),
               "--model", f"{MODEL_MODULE}:tiny", *RUN_OPTIONS]
    env = {**cli_env(models), "TF_CPP_MIN_LOG_LEVEL": "2"}
    # 1 KB: store.json and the examples table fit, the first Parquet part does not.
    done = subprocess.run([*run, "1024", *explain], capture_output=True, text=True, timeout=600,
                          env=env)
    assert done.returncode == 2, done.stderr
    assert "cannot write" in _one_error(done.stderr)
    # A full run, then summarize onto a full disk.
    assert subprocess.run([*run, str(1 << 30), *explain], capture_output=True, text=True,
                          timeout=600, env=env).returncode == 0
    summary = subprocess.run([*run, "100", "summarize", str(store)], capture_output=True,
                             text=True, timeout=600, env=env)
    assert summary.returncode == 2, summary.stderr
    assert "cannot write" in _one_error(summary.stderr)


def test_summarize_and_compare_never_overwrite_a_users_file(tmp_path: Path, capsys) -> None:
    import numpy as np
    from test_runner_support import write_store

    examples = [
        {"path": f"/nowhere/{i}.png", "label": "cat",
         "attributions": np.full((4, 4, 3), i + 1.0, np.float32)}
        for i in range(2)
    ]
    store = write_store(tmp_path / "s", examples, shape=(4, 4, 3))
    other = write_store(tmp_path / "t", examples, shape=(4, 4, 3))
    for command, name in ((["summarize", str(store)], "classes.csv"),
                          (["compare", str(store), str(other)], "compare.csv")):
        out = tmp_path / f"out-{command[0]}"
        out.mkdir()
        (out / name).write_text("my own table\n")
        args = [*command, "--out", str(out), "--no-figures"]
        assert main(args) == 2
        assert "igkit did not write it" in _one_error(capsys.readouterr().err)
        assert (out / name).read_text() == "my own table\n"
        # In a folder of its own, a command replaces what it wrote itself, run after run.
        (out / name).unlink()
        assert main(args) == 0 and main(args) == 0, capsys.readouterr().err
        assert (out / name).read_text() != "my own table\n"
    capsys.readouterr()
