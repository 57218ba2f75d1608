"""The survey, free of Prefect and Dask: core, pretractor, runbrick, posttractor, simulate."""
