"""The Ray engine on a local Ray cluster started here gives the same store as the local engine,
also when its driver is killed and the run resumed."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import ray
import torch  # noqa: F401 - installed by make test: a regression fails, not skips
import zarr  # noqa: F401 - installed by make test: a regression fails, not skips
from test_cli_dataset import _rows, assert_same_store  # noqa: E402
from test_runner_support import (  # noqa: E402
    MODEL_MODULE,
    RUN_OPTIONS,
    cli_env,
    kill_after_parts,
    make_images,
    run_igkit,
    write_model_module,
)

from igkit.cli import main  # noqa: E402
from igkit.runner.store import DatasetStore  # noqa: E402

# Ray starts its processes by fork + exec. When an earlier test in the same pytest process has
# imported JAX, JAX's at-fork hook warns that fork and its threads may deadlock; the child execs
# at once, so that cannot happen here. Only that warning is ignored, for this module only.
pytestmark = pytest.mark.filterwarnings(r"ignore:os\.fork\(\) was called:RuntimeWarning")


@pytest.fixture(scope="module")
def ray_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A local 2-CPU Ray cluster whose workers can import the test model module."""
    folder = write_model_module(tmp_path_factory.mktemp("ray_models"))
    saved = os.environ.get("PYTHONPATH")
    # Workers inherit the driver's environment at ray.init: that is how they find the module.
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(folder), saved]))
    try:
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
        yield folder
    finally:
        ray.shutdown()
        if saved is None:
            os.environ.pop("PYTHONPATH", None)
        else:
            os.environ["PYTHONPATH"] = saved


# Ray 2.60's own DataContext() assigns its deprecated fields (use_push_based_shuffle,
# use_polars, use_arrow_tensor_v2) and warns about each (ray/data/context.py), whatever the
# caller does; nothing igkit can act on. Only that module's DeprecationWarnings are ignored.
@pytest.mark.filterwarnings("ignore::DeprecationWarning:ray.data.context")
@pytest.mark.parametrize("workers", [1, 2])
def test_ray_store_equals_local_store(
    tmp_path: Path,
    ray_cluster: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    workers: int,
) -> None:
    monkeypatch.syspath_prepend(str(ray_cluster))
    make_images(tmp_path / "imgs", 8, broken=True)
    common = [str(tmp_path / "imgs"), "--model", f"{MODEL_MODULE}:tiny", *RUN_OPTIONS,
              "--commit-every", "3"]
    assert main(["explain-dataset", *common, "--out", str(tmp_path / "local")]) == 1
    assert main(["explain-dataset", *common, "--out", str(tmp_path / "ray"),
                 "--engine", "ray", "--workers", str(workers)]) == 1
    capsys.readouterr()
    rows = _rows(tmp_path / "ray")
    assert [r["id"] for r in rows] == list(range(9))
    assert rows[-1]["status"] == "failed" and "zz_broken.png" in rows[-1]["error"]
    assert_same_store(tmp_path / "local", tmp_path / "ray")


def test_more_gpus_than_the_cluster_has_is_refused(
    tmp_path: Path,
    ray_cluster: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.syspath_prepend(str(ray_cluster))
    make_images(tmp_path / "imgs", 2)
    code = main(["explain-dataset", str(tmp_path / "imgs"), "--out", str(tmp_path / "s"),
                 "--model", f"{MODEL_MODULE}:tiny", *RUN_OPTIONS, "--engine", "ray",
                 "--gpus-per-worker", "1"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert err[-1].startswith("igkit: error: --workers 1 x --gpus-per-worker 1 needs 1 GPUs")
    assert not (tmp_path / "s").exists()  # asked before the store is made: nothing written


@pytest.mark.filterwarnings("ignore::DeprecationWarning:ray.data.context")
def test_kill_the_ray_driver_and_resume(
    tmp_path: Path,
    ray_cluster: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """SIGKILL an ``explain-dataset --engine ray`` driver (joined to the cluster started here)
    after it committed two batches; the same command again finishes with every example exactly
    once and the numbers of a local run."""
    monkeypatch.syspath_prepend(str(ray_cluster))
    make_images(tmp_path / "imgs", 12, broken=True)
    common = [str(tmp_path / "imgs"), *RUN_OPTIONS, "--commit-every", "2"]
    assert main(["explain-dataset", *common, "--out", str(tmp_path / "local"),
                 "--model", f"{MODEL_MODULE}:tiny"]) == 1
    capsys.readouterr()

    killed = tmp_path / "ray"
    command = ["explain-dataset", *common, "--out", str(killed), "--model",
               f"{MODEL_MODULE}:slow", "--engine", "ray"]
    address = ray.get_runtime_context().gcs_address
    kill_after_parts(command, killed, cli_env(ray_cluster, RAY_ADDRESS=address), tmp_path)
    partial = _rows(killed)
    assert 4 <= len(partial) < 13
    assert len({r["id"] for r in partial}) == len(partial)

    resumed = run_igkit(command, ray_cluster, tmp_path, RAY_ADDRESS=address)
    assert resumed.returncode == 1, resumed.stderr  # the corrupt image
    assert "resuming:" in resumed.stderr
    checked = DatasetStore.open(killed).check()
    assert checked.ok, [str(d) for d in checked.damage]
    assert [r["id"] for r in checked.rows] == list(range(13))  # each example exactly once
    assert_same_store(tmp_path / "local", killed)


@pytest.mark.filterwarnings("ignore::DeprecationWarning:ray.data.context")
def test_ray_evaluation_equals_local_evaluation(
    tmp_path: Path, ray_cluster: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import csv

    monkeypatch.syspath_prepend(str(ray_cluster))
    make_images(tmp_path / "imgs", 4)
    common = [str(tmp_path / "imgs"), "--model", f"{MODEL_MODULE}:tiny", "--input-size", "16",
              "--steps", "16", "--trust", "--methods", "ig,saliency", "--metrics",
              "deletion,insertion", "--batch-size", "2"]
    assert main(["evaluate", *common, "--out", str(tmp_path / "local")]) == 0
    assert main(["evaluate", *common, "--out", str(tmp_path / "ray"), "--engine", "ray",
                 "--workers", "2"]) == 0

    def table(name: str) -> dict[tuple[str, str, str, str], float]:
        with open(tmp_path / name / "metrics.csv", encoding="utf-8", newline="") as handle:
            return {(r["level"], r["method"], r["metric"], r["example"]): float(r["mean"])
                    for r in csv.DictReader(handle)}

    local, distributed = table("local"), table("ray")
    assert local.keys() == distributed.keys() and len(local) == 4 * 2 * (4 + 1)
    for key, value in local.items():
        assert distributed[key] == pytest.approx(value, rel=1e-6, abs=1e-9), key
