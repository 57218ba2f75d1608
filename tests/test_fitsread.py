"""Telling a truncated or corrupt FITS file from a whole one without reading its pixels."""

from __future__ import annotations

import shutil
from pathlib import Path

from required_in_ci import legacypipe_test_case

from lsdr.survey.core.fitsread import FITS_BLOCK, fits_problem

IMAGE = "images/90prime/CP/V2.3/CP20170429/ksb_170430_055945_ooi_r_ls9.CCD4.fits"


def test_a_real_image_has_no_problem_and_its_halves_do(tmp_path: Path) -> None:
    """The real cut-out reads; cut at half, at a block boundary or not, it is named truncated."""
    original = legacypipe_test_case("mzlsbass2") / IMAGE
    assert fits_problem(original) is None
    data = original.read_bytes()
    half = tmp_path / "half.fits"
    half.write_bytes(data[: len(data) // 2])
    problem = fits_problem(half)
    assert problem is not None and ("truncated" in problem or "unreadable" in problem)
    blocks = tmp_path / "blocks.fits"
    blocks.write_bytes(data[: (len(data) // FITS_BLOCK - 1) * FITS_BLOCK])
    problem = fits_problem(blocks)
    assert problem is not None and "truncated" in problem
    whole = tmp_path / "whole.fits"
    shutil.copy(original, whole)
    assert fits_problem(whole) is None


def test_not_a_fits_file_is_unreadable(tmp_path: Path) -> None:
    """Text with a .fits name: unreadable, with fitsio's reason."""
    text = tmp_path / "notes.fits"
    text.write_text("not a FITS file\n")
    problem = fits_problem(text)
    assert problem is not None and problem.startswith("unreadable")
