"""The Ray engine on a local Ray cluster started here gives the same store as the local engine."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

pytest.importorskip("torch")
pytest.importorskip("zarr")
ray = pytest.importorskip("ray")

from test_cli_dataset import _rows, assert_same_store  # noqa: E402
from test_runner_support import (  # noqa: E402
    MODEL_MODULE,
    RUN_OPTIONS,
    make_images,
    write_model_module,
)

from igkit.cli import main  # noqa: E402

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
    assert not _rows(tmp_path / "s")
