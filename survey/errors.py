"""Errors of the survey domain, each carrying a one-line message a person can act on."""

from __future__ import annotations


class SurveyError(Exception):
    """Base class: a problem with the survey's inputs, reported without a traceback."""


class UsageError(SurveyError, ValueError):
    """Bad parameters or configuration: fail fast, before any work starts."""


class BrickNameError(UsageError):
    """A brick name that is not on the Legacy Surveys brick grid."""


class RegionError(UsageError):
    """A sky region or coordinate outside the sky, or empty."""


class CameraError(UsageError):
    """A camera lsdr does not know."""


class InputFileError(SurveyError):
    """An input file that is missing, truncated or unreadable; the message names the file."""
