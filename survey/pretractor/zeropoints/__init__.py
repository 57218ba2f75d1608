"""The lite engine's ``legacy_zeropoints``: calibrate one CP image, CCD by CCD.

For each CCD (HDU) of an ``ooi`` image, with its ``ood`` mask and ``oow`` inverse variance:
sky statistics and a spline sky (``splinesky``), a Moffat PSF fitted to bright isolated Gaia
stars found by ``sep`` and stored as a pixelised PsfEx model (``psfex``), then PSF photometry of
the Gaia stars on the CCD against reference magnitudes in the CCD's band.  The photometric
zeropoint ``ccdzpt`` is the 2.5σ-clipped median of (reference mag − instrumental mag), the
instrumental magnitude being −2.5 log10 of the PSF flux in electrons/s (the CP's image unit), so
it is the AB magnitude of a source giving 1 e-/s, legacypipe's convention.  The outputs are
legacypipe's: ``zpt/<imgdir>/<base>-annotated.fits`` (one row per CCD, ``ANNOTATED_DTYPE``),
``zpt/<imgdir>/<base>-photom.fits`` (one row per fitted star) and per-CCD calibs.

Reference magnitudes: for a synthetic survey (primary header ``LSDRSIM``) the simulator's own
Gaia→grz transform; otherwise legacypipe's Gaia colour polynomials (G plus a polynomial in
BP−RP; DECam's from ``gaiacat.py``, the BASS/MzLS ones recorded there for 90Prime and Mosaic).
Every input is read and every CCD measured before anything is written, so a truncated or
corrupt file raises ``InputFileError`` (naming file and HDU) and leaves no output behind.
See ``docs/zeropoints.md``.
"""
