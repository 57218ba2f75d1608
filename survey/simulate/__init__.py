"""A synthetic survey: CP-like images with a truth catalogue, for demos, tests and validation.

``simulate_survey`` writes, under a release directory's ``images/``, multi-extension
``.fits.fz`` images (``ooi``) with their data-quality (``ood``) and inverse-variance weight
(``oow``) companions, named and laid out as the NOIRLab Community Pipeline does, for the cameras
of the cookbook's worked example (90Prime g and r, Mosaic z; DECam optional).  Beside them it
writes the truth (``truth/truth.fits``: every source; ``truth/truth-ccds.fits``: the true
zeropoint, seeing and sky of every CCD) and a Gaia-like reference catalogue in legacypipe's
HEALPix chunk layout.  See ``docs/simulate.md`` for the model and its conventions.

Everything derives from one seed through ``numpy.random.SeedSequence``, each exposure from its
own child sequence, so the files are identical whatever the number of worker processes.
"""
