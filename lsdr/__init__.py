"""lsdr: run a Legacy Imaging Surveys data release as Prefect dataflows."""

__version__ = "0.1.0"
