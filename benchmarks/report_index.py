"""Load time of an ``igkit report`` index of 10,000 items in headless Chromium.

Generates a synthetic ``igkit explain`` folder (``NAME.npz`` with the keys the report reads and a
tiny ``NAME.png`` per item), builds the report, opens ``index.html`` from the file system in
headless Debian Chromium and prints the load time (navigationStart to loadEventEnd) and the time
until the gallery's first render (the ``gallery-rendered`` performance mark). Run from the
repository root::

    .venv/bin/python benchmarks/report_index.py [--items 10000] [--repeats 3]

Needs selenium and ``/usr/bin/chromium`` with ``/usr/bin/chromedriver``.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from igkit.report import build_report


def make_source(folder: Path, count: int, *, seed: int = 0) -> None:
    """Write ``count`` synthetic explain outputs (8x8 attributions, 8x8 PNG) into ``folder``."""
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for i in range(count):
        name = f"img{i:05d}"
        rel = float(rng.exponential(0.03))
        score = float(rng.uniform())
        np.savez(
            folder / f"{name}.npz",
            attributions=rng.normal(size=(8, 8, 3)).astype(np.float32),
            target=np.asarray(i % 10),
            target_label=np.asarray(f"class {i % 10}"),
            score=np.asarray(score),
            baseline_score=np.asarray(0.1),
            delta=np.asarray(rel * (score - 0.1)),
            relative_error=np.asarray(rel),
            converged=np.asarray(rel <= 0.05),
            completeness=np.asarray(f"relative error {rel:.3%}"),
            steps=np.asarray(16),
            method=np.asarray("gauss_legendre"),
            tol=np.asarray(0.05),
            top_k_indices=np.asarray([i % 10]),
            top_k_scores=np.asarray([score]),
            top_k_labels=np.asarray([f"class {i % 10}"]),
        )
        Image.fromarray(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)).save(
            folder / f"{name}.png"
        )


def measure(index: Path, repeats: int) -> list[tuple[float, float]]:
    """``(load ms, first render ms)`` of ``repeats`` fresh loads of ``index``."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    profile = tempfile.mkdtemp(prefix="igkit-bench-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic",
                 "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--window-size=1280,900",
                 f"--user-data-dir={profile}"):
        options.add_argument(flag)
    driver: Any = webdriver.Chrome(options=options, service=Service("/usr/bin/chromedriver"))
    results = []
    try:
        for _ in range(repeats):
            driver.get("about:blank")
            driver.get(index.as_uri())
            timing = driver.execute_script(
                "var t = performance.timing;"
                "var m = performance.getEntriesByName('gallery-rendered');"
                "return [t.loadEventEnd - t.navigationStart,"
                " m.length ? m[0].startTime : -1,"
                " document.getElementById('count').textContent];"
            )
            results.append((float(timing[0]), float(timing[1])))
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)
    return results


def main() -> None:
    """Generate, build, measure and print."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=10_000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="igkit-report-bench-"))
    try:
        start = time.perf_counter()
        make_source(work / "source", args.items)
        generated = time.perf_counter()
        build_report(work / "source", work / "report")
        built = time.perf_counter()
        index = work / "report" / "index.html"
        print(f"{args.items} items: generated in {generated - start:.1f} s, report built in "
              f"{built - generated:.1f} s, index.html {index.stat().st_size / 1e6:.2f} MB")
        for load, render in measure(index, args.repeats):
            print(f"load (navigationStart to loadEventEnd) {load:.0f} ms; "
                  f"gallery first render {render:.0f} ms")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
