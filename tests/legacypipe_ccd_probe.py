"""The real legacypipe's CCD look-ups on a survey directory (run under legacypipe's Python).

``legacypipe_ccd_probe.py SURVEY_DIR BRICK...`` prints JSON: whether legacypipe opened a kd-tree
file, then for each brick the CCDs ``LegacySurveyData.ccds_touching_wcs`` finds for its 3600²
grid (``wcs_for_brick``), and for each exposure number of the CCD table the CCDs
``find_ccds(expnum=…)`` finds; CCDs as sorted [expnum, ccdname] pairs.
"""

import json
import sys

from legacypipe.survey import LegacySurveyData, wcs_for_brick


def pairs(table: object) -> list[list[object]]:
    """Sorted [expnum, ccdname] of a table's rows (none for None)."""
    if table is None:
        return []
    return sorted(
        [int(e), str(n).strip()] for e, n in zip(table.expnum, table.ccdname, strict=True)
    )


def main(survey_dir: str, bricks: list[str]) -> None:
    """Ask legacypipe for each brick's and each exposure's CCDs."""
    survey = LegacySurveyData(survey_dir=survey_dir)
    kd_files = [str(fn) for fn, _ in survey.get_ccd_kdtrees()]
    touching = {
        name: pairs(survey.ccds_touching_wcs(wcs_for_brick(survey.get_brick_by_name(name))))
        for name in bricks
    }
    expnums = sorted({int(e) for e in survey.get_ccds_readonly().expnum})
    by_expnum = {str(e): pairs(survey.find_ccds(expnum=e)) for e in expnums}
    print(json.dumps({"kd_files": kd_files, "bricks": touching, "expnums": by_expnum}))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2:])
