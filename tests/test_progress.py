"""The progress output on stderr: ``igkit explain`` counts the images, ``explain-dataset`` shows
the rate and the time left. Real runs of the command line on a tiny model (a ``module:function``
entry point, hence ``--trust``) and random images; stdout keeps only the results."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from test_runner_support import MODEL_MODULE, make_images, run_igkit, write_model_module

TINY = ["--model", f"{MODEL_MODULE}:tiny", "--trust", "--input-size", "16", "--steps", "4",
        "--tol", "1e6"]
#: tqdm's bar: "N/TOTAL [elapsed<left, rate]", e.g. "3/3 [00:00<00:00, 11.2image/s]".
BAR = re.compile(
    r"(?P<done>\d+)/(?P<total>\d+) \[(?P<elapsed>\d+:\d\d)<(?P<left>\d+:\d\d|\?), +"
    r"(?P<rate>\?|\d+(?:\.\d+)?)(?:image/s|s/image)"
)


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("progress")
    make_images(root / "imgs", 3)
    return root, write_model_module(root / "models")


def _bars(stderr: str) -> list[re.Match[str]]:
    # The bar redraws itself with carriage returns; every state is one match.
    return list(BAR.finditer(stderr))


def test_explain_counts_the_images_on_stderr(setup: tuple[Path, Path]) -> None:
    """The bar counts up to 2/2. tqdm redraws at most every 0.1 s and explain's bar is removed
    when it closes, so the final count is drawn only when the last image took longer than that:
    the slow model (40 ms per forward pass, four path batches per image) guarantees it."""
    root, models = setup
    images = sorted(str(p) for p in (root / "imgs").glob("*.png"))[:2]
    slow = ["--model", f"{MODEL_MODULE}:slow", *TINY[2:], "--steps", "16", "--batch-size", "4"]
    done = run_igkit(["explain", *images, "--out", str(root / "out"), "--no-figures", *slow],
                     models, root)
    assert done.returncode == 0, done.stderr
    bars = _bars(done.stderr)
    assert bars, done.stderr
    counts = [int(bar["done"]) for bar in bars]
    assert {bar["total"] for bar in bars} == {"2"} and counts == sorted(counts), counts
    assert (bars[-1]["done"], bars[-1]["total"]) == ("2", "2"), done.stderr
    assert "2/2" not in done.stdout and "image/s" not in done.stdout  # results only on stdout


def test_explain_of_one_image_shows_no_bar(setup: tuple[Path, Path]) -> None:
    root, models = setup
    image = str(sorted((root / "imgs").glob("*.png"))[0])
    done = run_igkit(["explain", image, "--out", str(root / "one"), "--no-figures", *TINY],
                     models, root)
    assert done.returncode == 0, done.stderr
    assert not _bars(done.stderr), done.stderr


def test_explain_dataset_shows_rate_and_eta(setup: tuple[Path, Path]) -> None:
    root, models = setup
    done = run_igkit(["explain-dataset", str(root / "imgs"), "--out", str(root / "store"),
                      *TINY], models, root)
    assert done.returncode == 0, done.stderr
    bars = _bars(done.stderr)
    assert bars, done.stderr
    last = bars[-1]
    assert (last["done"], last["total"]) == ("3", "3")
    # A measured rate and time left (tqdm prints "?" until it has one).
    assert last["rate"] != "?" and float(last["rate"]) > 0, last.group(0)
    assert last["left"] != "?", last.group(0)
    assert "image/s" not in done.stdout.replace("images/s", "")  # the bar stays on stderr
    quiet = run_igkit(["explain-dataset", str(root / "imgs"), "--out", str(root / "quiet"),
                       *TINY, "--no-progress"], models, root)
    assert quiet.returncode == 0, quiet.stderr
    assert not _bars(quiet.stderr), quiet.stderr
