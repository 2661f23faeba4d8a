"""``igkit report``: structure and escaping in Python, behaviour in headless Chromium."""

from __future__ import annotations

import hashlib
import html
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from test_runner_support import (
    MODEL_MODULE,
    make_images,
    run_igkit,
    write_model_module,
    write_store,
)

from igkit.cli import COMMAND_MODULES, main
from igkit.report import embed_json
from igkit.report.folder import PARTIAL

MALICIOUS = "<img src=x onerror=alert(1)></script><b>&amp;"
CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")


def _npz_rewrite(path: Path, **changes: Any) -> None:
    with np.load(path, allow_pickle=False) as data:
        arrays = {key: data[key] for key in data.files}
    arrays.update({k: np.asarray(v) for k, v in changes.items()})
    np.savez(path, **arrays)


@pytest.fixture(scope="module")
def sources(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """An explain folder (one label made malicious) and a store, each with its report."""
    root = tmp_path_factory.mktemp("report")
    model_dir = write_model_module(root / "models")
    make_images(root / "imgs", 3)
    model = f"{MODEL_MODULE}:tiny"
    explain = root / "explain"
    images = [str(p) for p in sorted((root / "imgs").glob("*.png"))]
    done = run_igkit(["explain", *images, "--out", str(explain), "--model", model,
                      "--input-size", "16", "--steps", "4", "--figure", "panel,signs", "--trust"],
                     model_dir, root)
    assert done.returncode == 0, done.stderr
    _npz_rewrite(explain / "img001.npz", target_label=MALICIOUS)
    store = root / "store"
    done = run_igkit(["explain-dataset", str(root / "imgs"), "--out", str(store), "--model",
                      model, "--input-size", "16", "--steps", "4", "--no-progress", "--trust"],
                     model_dir, root)
    assert done.returncode == 0, done.stderr
    assert main(["report", str(explain), "--out", str(root / "rep_explain")]) == 0
    assert main(["report", str(store), "--out", str(root / "rep_store")]) == 0
    return {"explain": explain, "store": store, "rep_explain": root / "rep_explain",
            "rep_store": root / "rep_store"}


def _data(report: Path) -> list[dict[str, Any]]:
    text = (report / "index.html").read_text(encoding="utf-8")
    match = re.search(r'<script type="application/json" id="report-data">(.*?)</script>', text,
                      re.S)
    assert match
    items: list[dict[str, Any]] = json.loads(match.group(1))["items"]
    return items


def test_embed_json_escapes_markup() -> None:
    text = embed_json({"label": MALICIOUS})
    assert "<" not in text and ">" not in text and "&" not in text
    assert json.loads(text) == {"label": MALICIOUS}


@pytest.mark.parametrize("kind", ["rep_explain", "rep_store"])
def test_report_structure(sources: dict[str, Path], kind: str) -> None:
    report = sources[kind]
    items = _data(report)
    assert len(items) == 3
    for name in ("index.html", "item_0.html", "item_2.html", "class_0.html"):
        assert (report / name).is_file()
    for item in items:
        assert (report / item["thumb"]).is_file()
        assert (report / item["detail"]).is_file()
    for page in report.glob("*.html"):
        text = page.read_text(encoding="utf-8")
        links = re.findall(r'(?:href|src)="([^"]*)"', text)
        for link in links:
            assert not link.startswith(("/", "file:", "http:", "https:", "//")), (page, link)
            assert link.startswith("data:") or (report / link).resolve().is_relative_to(
                report.resolve()
            ), link
            assert link.startswith("data:") or (report / link).exists(), link
        assert str(sources["explain"].parent) not in " ".join(links)
        assert "<script src" not in text and "<link rel=\"stylesheet\"" not in text
        assert "<img src=x" not in text


def test_report_explain_details(sources: dict[str, Path]) -> None:
    report = sources["rep_explain"]
    items = _data(report)
    assert [i["name"] for i in items] == ["img000", "img001", "img002"]
    assert items[1]["target_label"] == MALICIOUS
    detail = (report / "item_1.html").read_text(encoding="utf-8")
    assert html.escape(MALICIOUS) in detail
    assert "href=\"data/1.npz\"" in detail and (report / "data/1.npz").is_file()
    assert len(list(report.glob("img/1_*.png"))) == 2  # the panel and the sign masks
    with np.load(sources["explain"] / "img000.npz", allow_pickle=False) as data:
        score, rel = float(data["score"]), float(data["relative_error"])
    first = (report / "item_0.html").read_text(encoding="utf-8")
    assert f'<span id="score">{score:.6g}</span>' in first
    assert f'<span id="relative-error">{rel:.6g}</span>' in first
    for key in ("method", "baseline", "tol", "steps", "model", "completeness"):
        assert f"<td>{key}</td>" in first


def test_report_store_class_page(sources: dict[str, Path]) -> None:
    report = sources["rep_store"]
    page = (report / "class_0.html").read_text(encoding="utf-8")
    assert "Mean |attribution| map" in page and "Channel shares" in page
    assert (report / "img/class_0_mean.png").is_file()
    # Channels by name (an RGB photo store), as igkit summarize names them.
    assert all(f"<td>{c}</td>" in page for c in ("red", "green", "blue"))
    assert "channel 0" not in page


def test_report_store_gallery_shows_overlays(sources: dict[str, Path]) -> None:
    """A store from explain-dataset records how its images were preprocessed, so the gallery
    shows each overlay (not the grey mask) and the settings say what was used."""
    report = sources["rep_store"]
    for item in _data(report):
        assert item["thumb"] == f"img/{item['id']}_overlay.png" and item["note"] is None
        page = (report / item["detail"]).read_text(encoding="utf-8")
        assert "None" not in page
        shown = _settings_shown(page)
        assert shown["preprocess"] in ("pad", "resize", "center_crop")
        assert shown["output"] in ("softmax", "raw", "sigmoid")
        assert shown["input_size"] == "16, 16"


def test_report_rejects_other_folders(tmp_path: Path) -> None:
    assert main(["report", str(tmp_path), "--out", str(tmp_path / "r")]) == 2
    assert main(["report", str(tmp_path / "nope"), "--out", str(tmp_path / "r")]) == 2


# ---------------------------------------------------------------------------------------------
# Stores: overlays drawn from the images, settings as the run used them


def _png(path: Path) -> np.ndarray:
    from PIL import Image

    with Image.open(path) as image:
        return np.asarray(image.convert("RGB"), dtype=np.int64)


def _expected_overlay(image: Path, attributions: np.ndarray, mode: str) -> np.ndarray:
    """What igkit explain's panel draws: the model input at alpha 0.4 over the inferno mask."""
    from igkit.io.images import load_image, preprocess
    from igkit.viz import attribution_mask, overlay

    pixels = preprocess(load_image(image), attributions.shape[:2], mode)
    drawn = overlay(pixels.astype(np.float64), attribution_mask(attributions), "inferno", 0.4)
    return np.round(255 * drawn).astype(np.int64)


def _settings_shown(page: str) -> dict[str, str]:
    return dict(re.findall(r"<tr><td>setting: ([^<]*)</td><td>([^<]*)</td></tr>", page))


@pytest.mark.parametrize(
    ("settings", "mode", "shown"),
    [
        # An older store of a built-in model: None resolved by the model's name.
        ({"model": "efficientnet_lite0"}, "center_crop",
         {"preprocess": "center_crop (model default)", "output": "softmax (model default)",
          "input_size": "16, 16 (model default)", "weights": "model default",
          "baseline": "black"}),
        # A store that records the resolved values.
        ({"model": "mine:net", "preprocess": "resize", "output": "sigmoid",
          "input_size": [16, 16]}, "resize",
         {"preprocess": "resize", "output": "sigmoid", "input_size": "16, 16"}),
        # An older store of a model only loading could tell about.
        ({"model": "mine:net"}, None,
         {"preprocess": "model default", "output": "model default",
          "input_size": "16, 16 (model default)"}),
    ],
)
def test_report_store_overlays_and_settings(tmp_path: Path, settings: dict[str, Any],
                                            mode: str | None, shown: dict[str, str]) -> None:
    from PIL import Image

    images = make_images(tmp_path / "imgs", 3)  # 20x24: the presets give different inputs
    square = tmp_path / "imgs" / "square.png"  # 32x32: every preset gives the same input
    Image.fromarray(np.random.default_rng(5).integers(0, 256, (32, 32, 3), np.uint8)).save(square)
    images.append(square)
    rng = np.random.default_rng(1)
    attributions = [rng.normal(size=(16, 16, 3)).astype(np.float32) for _ in images]
    examples = [{"path": str(p), "label": "cat", "attributions": a}
                for p, a in zip(images, attributions, strict=True)]
    store = write_store(tmp_path / "store", examples, shape=(16, 16, 3), settings=settings)
    images[1].unlink()  # the image of example 1 is gone
    report = tmp_path / "report"
    assert main(["report", str(store), "--out", str(report)]) == 0
    items = _data(report)
    for i, item in enumerate(items):
        page = (report / item["detail"]).read_text(encoding="utf-8")
        assert "None" not in page
        assert _settings_shown(page).items() >= shown.items()
        thumb = _png(report / item["thumb"])
        has_overlay = i != 1 and (mode is not None or images[i] == square)
        if not has_overlay:
            assert item["thumb"] == f"img/{i}_mask.png"
            why = "is gone" if i == 1 else "does not record how the run preprocessed"
            assert why in item["note"]
            assert why in page and 'id="note"' in page
            continue
        assert item["thumb"] == f"img/{i}_overlay.png" and item["note"] is None
        assert (report / f"img/{i}_mask.png").is_file()  # the mask too, on the detail page
        step = 128 // 16  # thumbnails are upscaled (nearest) to 128 pixels
        expected = _expected_overlay(images[i], attributions[i], mode or "resize")
        assert np.abs(thumb[::step, ::step] - expected).max() <= 1
        if images[i] != square:  # the run's preset, not another one
            other = "pad" if mode == "center_crop" else "center_crop"
            assert np.abs(thumb[::step, ::step]
                          - _expected_overlay(images[i], attributions[i], other)).max() > 10


@pytest.mark.parametrize("name", ["efficientnet_lite0", "hpa_synthetic"])
def test_builtin_model_defaults_match_the_loaders(name: str) -> None:
    import igkit
    from igkit.runner.aggregate import BUILTIN_MODEL_DEFAULTS

    loaded = igkit.load_model(name)
    defaults = BUILTIN_MODEL_DEFAULTS[name]
    assert defaults["preprocess"] == loaded.preprocess
    assert defaults["output"] == loaded.default_output
    assert tuple(defaults.get("channels") or ()) == tuple(loaded.channels or ())


@pytest.mark.parametrize("module", [None, *COMMAND_MODULES])
def test_help_is_plain_text(module: str | None, capsys: pytest.CaptureFixture[str]) -> None:
    """``igkit --help`` and every ``igkit COMMAND --help`` print no reST markup."""
    import importlib

    name = importlib.import_module(f"igkit.cli.{module}").COMMAND.name if module else None
    assert main([name, "--help"] if name else ["--help"]) == 0
    text = capsys.readouterr().out
    assert text.strip()
    assert "``" not in text
    assert not re.search(r":(mod|func|class|meth|data|attr|obj):`", text), text


# ---------------------------------------------------------------------------------------------
# The output folder: a report replaces only what an earlier report wrote, whole or not at all


def _small_store(root: Path, count: int) -> Path:
    """A store of ``count`` examples written through the store API (no model run)."""
    images = make_images(root / "imgs", count)
    rng = np.random.default_rng(count)
    examples = [{"path": str(p), "label": "cat",
                 "attributions": rng.normal(size=(16, 16, 3)).astype(np.float32)}
                for p in images]
    return write_store(root / "store", examples, shape=(16, 16, 3),
                       settings={"preprocess": "resize"})


def _tree(folder: Path) -> dict[str, str]:
    """Every entry under ``folder``: files by content, folders and symlinks by kind."""
    tree = {}
    for path in sorted(folder.rglob("*")):
        rel = str(path.relative_to(folder))
        if path.is_symlink():
            tree[rel] = f"link to {path.readlink()}"
        elif path.is_dir():
            tree[rel] = "folder"
        else:
            tree[rel] = hashlib.sha256(path.read_bytes()).hexdigest()
    return tree


def _one_error(err: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("igkit: error: "), err
    return lines[0]


def _recorded(report: Path) -> set[str]:
    record = json.loads((report / "igkit-report.json").read_text(encoding="utf-8"))
    assert record["complete"] is True
    return set(record["files"]) | set(record["folders"])


@pytest.mark.parametrize("users", [
    ["notes.txt"],                   # a user's file beside the report's
    ["data/mine.txt"],               # inside a folder the report writes
    ["img/photo.png", "data/mine.txt", "index.html"],  # the report's names, not its files
    ["data/mine.txt", "earlier"],    # a user's file added to an earlier report
])  # fmt: skip
def test_report_never_touches_a_users_files(tmp_path: Path, users: list[str],
                                            capsys: pytest.CaptureFixture[str]) -> None:
    """Before the record, ``--out DIR`` deleted DIR/data and DIR/img whatever they held."""
    store = _small_store(tmp_path, 2)
    out = tmp_path / "out"
    if "earlier" in users:
        assert main(["report", str(store), "--out", str(out)]) == 0
    out.mkdir(exist_ok=True)
    for name in users:
        if name != "earlier":
            (out / name).parent.mkdir(parents=True, exist_ok=True)
            (out / name).write_text(f"the user's {name}\n")
    before = _tree(out)
    capsys.readouterr()
    assert main(["report", str(store), "--out", str(out)]) == 2
    line = _one_error(capsys.readouterr().err)
    assert "igkit report did not write" in line
    assert any(name.split("/")[0] in line for name in users if name != "earlier"), line
    assert _tree(out) == before


def test_report_replaces_only_what_an_earlier_report_wrote(
    sources: dict[str, Path], compared: dict[str, Path], tmp_path: Path
) -> None:
    """A compare report, then a smaller explain report into the same folder: every file of the
    first that the second does not write is gone, and the folder holds what the record lists."""
    out = tmp_path / "out"
    assert main(["report", str(compared["a"]), str(compared["b"]), "--out", str(out)]) == 0
    first = _tree(out)
    assert set(first) == _recorded(out) and "compare.html" in first
    assert main(["report", str(sources["explain"]), "--out", str(out)]) == 0
    second = _tree(out)
    assert set(second) == _recorded(out)
    assert "compare.html" not in second and not any(n.startswith("img/compare_") for n in second)
    assert second["index.html"] != first["index.html"]
    # The same report again is the same folder.
    assert main(["report", str(sources["explain"]), "--out", str(out)]) == 0
    assert set(_tree(out)) == set(second)


@pytest.mark.parametrize("damage", ["file", "damaged record", "record escapes", "symlink"])
def test_report_refuses_an_out_it_cannot_own(tmp_path: Path, damage: str,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    store = _small_store(tmp_path, 2)
    out = tmp_path / "out"
    victim = tmp_path / "victim.txt"
    victim.write_text("precious\n")
    if damage == "file":
        out.write_text("not a folder\n")
    else:
        assert main(["report", str(store), "--out", str(out)]) == 0
        record = out / "igkit-report.json"
        if damage == "damaged record":
            record.write_text('{"files": "index.html"}')
        elif damage == "record escapes":  # a record that lists files outside the folder
            data = json.loads(record.read_text())
            data["files"].append("../victim.txt")
            record.write_text(json.dumps(data))
        else:
            (out / "data" / "0.npz").unlink()
            (out / "data" / "0.npz").symlink_to(victim)
    before = {"out": _tree(out) if out.is_dir() else out.read_text(), "victim": _tree(tmp_path)}
    capsys.readouterr()
    assert main(["report", str(store), "--out", str(out)]) == 2
    line = _one_error(capsys.readouterr().err)
    assert {"file": "not a folder", "damaged record": "damaged", "record escapes": "damaged",
            "symlink": "data/0.npz"}[damage] in line
    assert {"out": _tree(out) if out.is_dir() else out.read_text(),
            "victim": _tree(tmp_path)} == before


def test_report_build_killed_midway_is_cleaned_up(tmp_path: Path) -> None:
    """The hidden build folder of a run that died is igkit's (it carries its mark): the next
    report removes it; one without the mark is a user's folder and is refused."""
    store = _small_store(tmp_path, 2)
    out = tmp_path / "out"
    assert main(["report", str(store), "--out", str(out)]) == 0
    partial = out / PARTIAL
    partial.mkdir()
    (partial / "img").mkdir()
    (partial / "img" / "0_mask.png").write_bytes(b"half a png")
    assert main(["report", str(store), "--out", str(out)]) == 2  # no mark: not igkit's
    (partial / ".igkit-report-build").touch()
    assert main(["report", str(store), "--out", str(out)]) == 0
    assert not partial.exists() and set(_tree(out)) == _recorded(out)


_CHILD = """
import ctypes, os, resource, signal, sys
mode, limit = sys.argv[1], int(sys.argv[2])
if mode == "full":
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
if mode == "read-only" and "IGKIT_TEST_NO_DAC_OVERRIDE" not in os.environ:
    # Drop the capabilities that let root write anywhere (CAP_DAC_OVERRIDE,
    # CAP_DAC_READ_SEARCH, CAP_FOWNER) from the bounding set and exec this script again, so they
    # leave the effective set too: a read-only folder is then read-only for root as well.
    # Refused (a no-op) for other users, for whom chmod is enough.
    libc = ctypes.CDLL(None, use_errno=True)
    for cap in (1, 2, 3):
        libc.prctl(24, cap, 0, 0, 0)  # PR_CAPBSET_DROP
    os.environ["IGKIT_TEST_NO_DAC_OVERRIDE"] = "1"
    os.execv(sys.executable, [sys.executable, *sys.argv])
from igkit.cli import main
sys.exit(main(sys.argv[3:]))
"""


def _run_child(
    script_dir: Path, mode: str, args: list[str], limit: int = 0
) -> subprocess.CompletedProcess[str]:
    """Run igkit in a child that limits itself (no preexec_fn: forking the test process with
    its frameworks loaded would run their fork handlers)."""
    script = script_dir / "child.py"
    script.write_text(_CHILD, encoding="utf-8")
    return subprocess.run(
        [sys.executable, str(script), mode, str(limit), *args], capture_output=True, text=True,
        timeout=300, env={**os.environ, "MPLBACKEND": "Agg"},
    )


@pytest.mark.parametrize("earlier", [False, True])
@pytest.mark.parametrize("mode", ["full", "read-only"])
def test_report_on_a_full_or_read_only_disk_changes_nothing(tmp_path: Path, mode: str,
                                                            earlier: bool) -> None:
    """A disk that fills up midway (RLIMIT_FSIZE: files of 5,000 bytes pass, the npz files of
    9 KB do not) or a folder that cannot be written: one line, exit 2, and ``--out`` (and its
    parent) exactly as before: no partial report, no hidden build folder, no new folder."""
    store = _small_store(tmp_path, 3)
    parent = tmp_path / "parent"
    parent.mkdir()
    out = parent / "report"
    if earlier:
        assert main(["report", str(store), "--out", str(out)]) == 0
    locked = out if earlier else parent
    before = _tree(parent)
    if mode == "read-only":
        locked.chmod(0o555)
    try:
        done = _run_child(tmp_path, mode, ["report", str(store), "--out", str(out)], limit=5000)
    finally:
        locked.chmod(0o755)
    assert done.returncode == 2, done.stderr
    line = _one_error(done.stderr)
    assert "cannot write the report" in line and "--out is as it was" in line
    assert ("free space" if mode == "full" else "writable --out") in line
    if mode == "full":
        assert "File too large" in line
    assert _tree(parent) == before


# ---------------------------------------------------------------------------------------------
# Text from data in figures (the report shows them): drawn verbatim, never read as mathtext

DOLLARS = ["a $ b $ c", "cost $5", "$x^$", "$\\alpha_$", "a \\$ b"]


def _texts(fig: Any) -> list[Any]:
    from matplotlib.text import Text

    return [t for t in fig.findobj(Text) if t.get_text()]


def _check_dollars(fig: Any, label: str | None) -> None:
    """The figure renders; no text of it is mathtext; ``label`` is shown as it is."""
    import io

    from matplotlib import cbook

    fig.savefig(io.BytesIO(), format="png")  # mathtext errors surface when drawing
    texts = [t.get_text() for t in _texts(fig)]
    assert not [t for t in texts if cbook.is_math_text(t)], texts
    if label is not None:
        # What matplotlib draws for a text that is not math: "\$" as "$", the rest as it is.
        assert any(label in t.replace("\\$", "$") for t in texts), (label, texts)


@pytest.mark.parametrize("label", DOLLARS)
def test_figures_draw_labels_with_dollars_verbatim(label: str, tmp_path: Path) -> None:
    """Every figure style and the report's charts, with a class named ``label``: before, a
    ``$`` pair turned the text between into mathtext (``a $ b $ c`` lost its dollars) and
    ``$x^$`` made matplotlib refuse to draw the figure."""
    import torch

    import igkit
    from igkit import viz
    from igkit.report.charts import bar_figure, map_grid

    torch.manual_seed(0)
    net = torch.nn.Sequential(
        torch.nn.Conv2d(3, 4, 3, padding=1), torch.nn.ReLU(), torch.nn.AdaptiveAvgPool2d(1),
        torch.nn.Flatten(), torch.nn.Linear(4, 3),
    )
    x = np.random.default_rng(0).uniform(0, 1, (1, 3, 16, 16)).astype(np.float32)
    with warnings.catch_warnings():  # few steps on a random net: only the text matters here
        warnings.simplefilter("ignore")
        result = igkit.integrated_gradients(net, x, target=1, output="softmax", steps=8,
                                            return_path=True)
        figures = viz.explain_figures(x[0], result, styles="all", model=net, output="softmax",
                                      label=label, title=f"photo {label}", channel_axis=0)
    for style, fig in figures.items():
        _check_dollars(fig, None if style == "riemann" else label)
    _check_dollars(viz.compare_grid([x[0].transpose(1, 2, 0)] * 2,
                                    [np.ones((16, 16, 3))] * 2, [label, "other"]), label)
    _check_dollars(map_grid([label], [np.ones((4, 4))], title=label), label)
    _check_dollars(bar_figure([label, "b"], {label: np.ones(2)}, ylabel=label, title="t"), label)


def test_a_title_with_dollars_is_as_wide_as_the_same_text_without_math() -> None:
    """The drawn suptitle of a label ``a $ b $ c`` has the width of that text drawn with
    mathtext off: the dollars are there (as mathtext the title is narrower: no dollars)."""
    from igkit import viz
    from igkit.viz._draw import literal

    label = DOLLARS[0]
    img = np.random.default_rng(0).uniform(0, 1, (16, 16, 3))
    fig = viz.ig_panel(img, img - 0.5, label=label)
    title = next(t for t in _texts(fig) if t.get_text() == fig.get_suptitle())
    assert title.get_text() == literal(label)
    reference = fig.text(0.5, 0.5, label, parse_math=False,
                         fontproperties=title.get_fontproperties())
    renderer = fig.canvas.get_renderer()
    width = title.get_window_extent(renderer).width
    assert width == pytest.approx(reference.get_window_extent(renderer).width, abs=0.5)
    math = fig.text(0.5, 0.2, label, fontproperties=title.get_fontproperties())
    assert abs(math.get_window_extent(renderer).width - width) > 5  # the test can tell


# ---------------------------------------------------------------------------------------------
# Browser tests


@pytest.fixture(scope="module")
def driver() -> Iterator[Any]:
    """Headless Debian Chromium driven by its own chromedriver (nothing downloaded).

    Missing browser: under CI (``CI=true``, set by ``.ci/run``, which installs it) the browser
    tests fail, so a CI that lost Chromium cannot pass by skipping them; elsewhere they skip
    with the reason.
    """
    missing = [str(p) for p in (CHROMIUM, CHROMEDRIVER) if not p.exists()]
    if missing:
        why = (f"browser tests need {' and '.join(missing)} "
               "(apt-get install chromium chromium-driver)")
        if os.environ.get("CI", "").lower() in ("true", "1"):
            pytest.fail(f"CI=true: {why}; .ci/run installs them", pytrace=False)
        pytest.skip(why)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    profile = tempfile.mkdtemp(prefix="igkit-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic",
                 "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--window-size=1280,900",
                 f"--user-data-dir={profile}"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    browser = webdriver.Chrome(options=options, service=Service(str(CHROMEDRIVER)))
    try:
        yield browser
    finally:
        browser.quit()
        shutil.rmtree(profile, ignore_errors=True)


def _errors(driver: Any) -> list[dict[str, Any]]:
    return [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]


def _assert_no_alert(driver: Any) -> None:
    from selenium.common.exceptions import NoAlertPresentException

    with pytest.raises(NoAlertPresentException):
        driver.switch_to.alert  # noqa: B018 - the property raises when no dialog is open


@pytest.mark.parametrize("kind", ["rep_explain", "rep_store"])
def test_browser_index_loads_and_filters(driver: Any, sources: dict[str, Path],
                                         kind: str) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import Select

    report = sources[kind]
    items = _data(report)
    driver.get_log("browser")  # drop earlier entries
    driver.get((report / "index.html").as_uri())
    assert driver.find_element(By.TAG_NAME, "body").get_attribute("data-rendered") == "1"
    assert _errors(driver) == []
    count = driver.find_element(By.ID, "count")
    assert count.text == "3"
    assert len(driver.find_elements(By.CSS_SELECTOR, "#gallery .card")) == 3
    assert all(img.get_attribute("loading") == "lazy"
               for img in driver.find_elements(By.CSS_SELECTOR, "#gallery img"))

    errors = sorted(abs(i["relative_error"]) for i in items)
    threshold = errors[0]  # strictly above the smallest: all but one (ties aside)
    expected = sum(1 for e in errors if e > threshold)
    box = driver.find_element(By.ID, "f-relerr")
    box.send_keys(repr(threshold))
    assert count.text == str(expected)
    assert len(driver.find_elements(By.CSS_SELECTOR, "#gallery .card")) == expected
    box.send_keys(Keys.CONTROL, "a")
    box.send_keys(Keys.DELETE)
    assert count.text == "3"

    status = Select(driver.find_element(By.ID, "f-status"))
    status.select_by_value("not converged")
    assert count.text == str(sum(1 for i in items if i["status"] == "not converged"))
    status.select_by_value("converged")
    assert count.text == str(sum(1 for i in items if i["status"] == "converged"))
    status.select_by_value("")

    classes = Select(driver.find_element(By.ID, "f-class"))
    first = items[0]["cls"]
    classes.select_by_value(first)
    assert count.text == str(sum(1 for i in items if i["cls"] == first))
    classes.select_by_value("")

    Select(driver.find_element(By.ID, "f-sort")).select_by_value("score:desc")
    ids = [int(c.get_attribute("data-id"))
           for c in driver.find_elements(By.CSS_SELECTOR, "#gallery .card")]
    scores = {i["id"]: i["score"] for i in items}
    assert [scores[i] for i in ids] == sorted(scores.values(), reverse=True)
    assert _errors(driver) == []


def test_browser_detail_page_numbers(driver: Any, sources: dict[str, Path]) -> None:
    from selenium.webdriver.common.by import By

    report = sources["rep_explain"]
    driver.get((report / "index.html").as_uri())
    driver.find_element(By.CSS_SELECTOR, '#gallery .card[data-id="2"] a').click()
    assert driver.current_url.endswith("/item_2.html")
    with np.load(sources["explain"] / "img002.npz", allow_pickle=False) as data:
        score, rel = float(data["score"]), float(data["relative_error"])
        converged = bool(data["converged"])
    assert float(driver.find_element(By.ID, "score").text) == pytest.approx(score, rel=1e-5)
    assert float(driver.find_element(By.ID, "relative-error").text) == pytest.approx(
        rel, rel=1e-5
    )
    assert driver.find_element(By.ID, "status").text == (
        "converged" if converged else "not converged"
    )
    assert "relative error" in driver.find_element(By.ID, "completeness").text
    images = driver.find_elements(By.CSS_SELECTOR, "figure img")
    assert len(images) == 2
    assert all(driver.execute_script("return arguments[0].naturalWidth", i) > 0 for i in images)
    assert _errors(driver) == []


@pytest.mark.parametrize("page", ["index.html", "item_1.html"])
def test_browser_malicious_label_is_text(driver: Any, sources: dict[str, Path],
                                         page: str) -> None:
    from selenium.webdriver.common.by import By

    report = sources["rep_explain"]
    driver.get((report / page).as_uri())
    _assert_no_alert(driver)
    assert driver.find_elements(By.CSS_SELECTOR, "[onerror]") == []
    assert driver.find_elements(By.CSS_SELECTOR, "img[src='x']") == []
    assert MALICIOUS in driver.find_element(By.TAG_NAME, "body").text
    assert _errors(driver) == []


# ---------------------------------------------------------------------------------------------
# Two stores: the compare view


@pytest.fixture(scope="module")
def compared(sources: dict[str, Path]) -> dict[str, Path]:
    """A second store of the same images (more steps, so the maps differ) and the report."""
    root = sources["store"].parent
    store_b = root / "store_b"
    done = run_igkit(["explain-dataset", str(root / "imgs"), "--out", str(store_b), "--model",
                      f"{MODEL_MODULE}:tiny", "--input-size", "16", "--steps", "9",
                      "--no-progress", "--trust"], root / "models", root)
    assert done.returncode == 0, done.stderr
    report = root / "rep_compare"
    assert main(["report", str(sources["store"]), str(store_b), "--out", str(report)]) == 0
    return {"a": sources["store"], "b": store_b, "report": report}


def test_report_compare_page(compared: dict[str, Path]) -> None:
    from igkit.runner.aggregate import compare_rows, summarize_store
    from igkit.runner.store import DatasetStore

    report = compared["report"]
    assert 'href="compare.html"' in (report / "index.html").read_text(encoding="utf-8")
    page = (report / "compare.html").read_text(encoding="utf-8")
    rows = compare_rows(summarize_store(DatasetStore.open(compared["a"]))[0],
                        summarize_store(DatasetStore.open(compared["b"]))[0])
    assert any(a is not None and b is not None for _, a, b, _ in rows)
    for k, (name, a, b, row) in enumerate(rows):
        if a is None or b is None:
            continue
        assert f"<h2>Class {html.escape(name)}</h2>" in page
        for fig in (f"img/compare_{k}_maps.png", f"img/compare_{k}_diff.png"):
            assert f'src="{fig}"' in page and (report / fig).is_file()
        assert f"<td>{row['d_share_red']}</td>" in page
        assert f"L1 distance of the normalised maps: {row['map_l1']}" in page
    for link in re.findall(r'(?:href|src)="([^"]*)"', page):
        assert not link.startswith(("/", "file:", "http")), link
        assert link == "data:," or (report / link).exists(), link


def test_report_compare_bad_input(sources: dict[str, Path], tmp_path: Path,
                                  capsys: pytest.CaptureFixture[str]) -> None:
    store, explain = str(sources["store"]), str(sources["explain"])
    for args in ([store, store, store], [explain, store], [store, explain]):
        capsys.readouterr()
        assert main(["report", *args, "--out", str(tmp_path / "r")]) == 2
        err = capsys.readouterr().err.strip()
        assert err and len(err.splitlines()) == 1, err


def test_browser_compare_page_loads(driver: Any, compared: dict[str, Path]) -> None:
    from selenium.webdriver.common.by import By

    driver.get_log("browser")
    driver.get((compared["report"] / "compare.html").as_uri())
    images = driver.find_elements(By.CSS_SELECTOR, "figure img")
    assert images
    assert all(driver.execute_script("return arguments[0].naturalWidth", i) > 0 for i in images)
    assert _errors(driver) == []


def test_browser_store_gallery_overlays_and_note(driver: Any, tmp_path: Path) -> None:
    from selenium.webdriver.common.by import By

    images = make_images(tmp_path / "imgs", 3)
    rng = np.random.default_rng(2)
    examples = [{"path": str(p), "label": "cat",
                 "attributions": rng.normal(size=(16, 16, 3)).astype(np.float32)}
                for p in images]
    store = write_store(tmp_path / "store", examples, shape=(16, 16, 3),
                        settings={"preprocess": "center_crop"})
    images[2].unlink()
    report = tmp_path / "report"
    assert main(["report", str(store), "--out", str(report)]) == 0
    driver.get_log("browser")
    driver.get((report / "index.html").as_uri())
    cards = driver.find_elements(By.CSS_SELECTOR, "#gallery .card")
    assert len(cards) == 3
    for card in cards:
        img = card.find_element(By.TAG_NAME, "img")
        driver.execute_script("arguments[0].scrollIntoView()", img)  # lazy images load
    srcs = [c.find_element(By.TAG_NAME, "img").get_attribute("src") for c in cards]
    assert [s.rsplit("/", 1)[1] for s in srcs] == ["0_overlay.png", "1_overlay.png", "2_mask.png"]
    notes = [[n.text for n in c.find_elements(By.CSS_SELECTOR, ".note")] for c in cards]
    assert notes[:2] == [[], []]
    assert len(notes[2]) == 1 and "is gone" in notes[2][0]
    driver.get((report / "item_2.html").as_uri())
    assert "is gone" in driver.find_element(By.ID, "note").text
    assert _errors(driver) == []
