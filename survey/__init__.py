"""The survey itself, free of Prefect and Dask: brick grid, cameras, release layout, science."""
