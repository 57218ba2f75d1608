"""Errors of where things run (the Prefect server, …), apart from the survey's errors.

A :class:`~lsdr.survey.core.errors.SurveyError` is about the survey's inputs and parameters; an
:class:`InfraError` is about the machinery that runs the release.  The CLI reports both the same
way (one line, exit status 2), but code that handles survey problems (a unit's failure class,
a settings check) never catches an infrastructure one by accident.
"""

from __future__ import annotations


class InfraError(Exception):
    """Base class: a problem with the infrastructure a release runs on, not with the survey."""


class ServerError(InfraError):
    """The release's Prefect server did not start, stop or answer; the message quotes its log."""
