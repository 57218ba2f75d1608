"""Before the Tractor: image discovery, zeropoints and calibs, CCD tables and cuts, brick lists."""
