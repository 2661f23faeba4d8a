"""Explaining whole datasets: the store (Zarr + Parquet) and the local and Ray engines.

See :mod:`igkit.runner.store` for the store layout and commit protocol, :mod:`igkit.runner.local`
for the default engine and :mod:`igkit.runner.ray_engine` for Ray Data. Importing this package
imports neither Zarr, pyarrow, DuckDB nor Ray; each is imported where it is used.
"""
