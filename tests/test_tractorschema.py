"""The tractor catalogue schema matches the research notes' DR list and real legacypipe output.

The column list is read from ``../shared/research/legacypipe-facts.md`` §6 (names, order and
dtypes as written there) and compared column for column with ``tractor_dtype``; the bit tables
from §6-7.  With the real legacypipe built, runbrick's own catalogues are compared too.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import fitsio
import numpy as np
import pytest
from legacypipe_cases import reference_env

from lsdr.infra.legacypipe_build import LegacypipeBuild
from lsdr.survey.core.errors import UsageError
from lsdr.survey.runbrick import tractorschema as ts

FACTS = Path(__file__).resolve().parents[2] / "shared" / "research" / "legacypipe-facts.md"
TESTDATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "legacypipe-test"
BANDS = ("g", "r", "z")
WISE = ("w1", "w2", "w3", "w4")
DTYPE = re.compile(r"(i2|i4|i8|f4|f8|S\d+|bool|u1)(?:\[(\w+)\])?(?=[\s,;.:)]|$)")


# -- reading §6 --------------------------------------------------------------------------


def section(number: int) -> str:
    """The text of section ``number`` of the facts file."""
    text = FACTS.read_text()
    match = re.search(rf"^## {number}\..*?(?=^## |\Z)", text, re.M | re.S)
    assert match, f"no section {number} in {FACTS}"
    return match.group(0)


def numbered_items(text: str) -> dict[int, str]:
    """Numbered list items (``1. …`` with indented continuation lines), joined into one line."""
    items: dict[int, str] = {}
    current = None
    for line in text.splitlines():
        m = re.match(r"^(\d+)\. (.*)", line)
        if m:
            current = int(m.group(1))
            items[current] = m.group(2)
        elif current is not None and line.startswith("   "):
            items[current] += " " + line.strip()
        else:
            current = None
    return items


class Entry:
    """One column as §6 writes it: name, dtype per flavour, shape, and flavour restrictions."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.dtype: dict[str, str] = {}
        self.shape: tuple[int, ...] = ()
        self.only: set[str] | None = None


def expand(token: str, last_stem: str | None) -> tuple[list[str], str | None]:
    """Expand one backticked name: ``x_<b>``, ``x_w1..w4``, ``x_w*``; ``_w*`` uses the last stem."""
    if token.startswith("_"):
        assert last_stem, f"{token} has no stem"
        token = last_stem + token
    if token.endswith("_<b>"):
        stem = token[:-4]
        return [f"{stem}_{b}" for b in BANDS], stem
    for tail in ("_w1..w4", "_w*"):
        if token.endswith(tail):
            stem = token[: -len(tail)]
            return [f"{stem}_{w}" for w in WISE], stem
    return [token], token


def tokens(text: str) -> list[tuple[str, str]]:
    """(kind, text) tokens: ``name`` (backticked), ``paren`` (balanced), ``dtype``, ``marker``."""
    out: list[tuple[str, str]] = []
    i = 0
    while i < len(text):
        c = text[i]
        if c == "`":
            j = text.index("`", i + 1)
            out.append(("name", text[i + 1 : j]))
            i = j + 1
        elif c == "(":
            depth, j = 0, i
            while True:
                depth += {"(": 1, ")": -1}.get(text[j], 0)
                if depth == 0:
                    break
                j += 1
            out.append(("paren", text[i + 1 : j]))
            i = j + 1
        elif text.startswith("**DR11 only**", i):
            out.append(("marker", "dr11"))
            i += len("**DR11 only**")
        else:
            m = DTYPE.match(text, i)
            if m and (i == 0 or not text[i - 1].isalnum()):
                out.append(("dtype", m.group(0)))
                i = m.end()
            else:
                i += 1
    return out


def dtype_of(text: str, n_epochs: int) -> tuple[str, tuple[int, ...]]:
    """``f4[8]`` → (``f4``, (8,)); ``[N]`` is the light-curve length."""
    m = DTYPE.fullmatch(text)
    assert m, text
    size = m.group(2)
    shape = () if size is None else ((n_epochs,) if size == "N" else (int(size),))
    return m.group(1), shape


def parse_generic(text: str, *, n_epochs: int, lc: bool = False) -> list[Entry]:
    """Backticked names collect until a dtype (bare, or opening a parenthesis) closes the group."""
    entries: list[Entry] = []
    pending: list[Entry] = []
    last_group: list[Entry] = []
    stem = None

    def close(dtypes: dict[str, str], shape: tuple[int, ...]) -> None:
        nonlocal pending, last_group
        for e in pending:
            e.dtype.update(dtypes)
            e.shape = shape
        last_group, pending = pending, []

    for kind, value in tokens(text):
        if kind == "name":
            if not re.fullmatch(r"[a-z_][a-z0-9_<>*.,\s]*", value):
                continue  # a flag or file named in the prose, not a column
            for part in value.split(","):
                names, stem = expand(part.strip(), stem)
                if lc:
                    names = [f"{n}_{w}" for n in names for w in ("w1", "w2")]
                new = [Entry(n) for n in names]
                entries.extend(new)
                pending.extend(new)
        elif kind == "dtype":
            dt, shape = dtype_of(value, n_epochs)
            close({f: dt for f in ts.FLAVOURS}, shape)
        elif kind == "paren":
            lead = DTYPE.match(value.strip())
            per_dr = dict(re.findall(r"DR(9|10|11) (i2|i4|i8|f4|f8)", value))
            if lead:
                dt, shape = dtype_of(lead.group(0), n_epochs)
                close({f: dt for f in ts.FLAVOURS}, shape)
            elif per_dr and pending:
                close(
                    {
                        "dr9": per_dr.get("9", ""),
                        "dr10": per_dr.get("10", ""),
                        "dr11": per_dr.get("11", per_dr.get("10", "")),
                    },
                    (),
                )
            group = pending or last_group
            if "DR11 only" in value:
                for e in group:
                    e.only = {"dr11"}
            if "DR10+" in value:
                for e in group:
                    e.only = {"dr10", "dr11"}
        elif kind == "marker":
            for e in pending or last_group:
                e.only = {"dr11"}
    assert not pending, f"names without a dtype: {[e.name for e in pending]}"
    return entries


def parse_gaia(text: str) -> list[Entry]:
    """Item 3: comma pieces; ``phot_{g,bp,rp}_…`` takes ``/ _suffix`` and later ``_suffix`` pieces.

    A dtype binds to the names of its own piece; pieces without one are f4 (the item's float
    default: legacypipe's other tag-alongs are float32).
    """
    body = text.split("):", 1)[1].strip().rstrip(".")
    entries: list[Entry] = []
    brace: tuple[str, list[str], list[tuple[str, str]]] | None = None

    def flush_brace() -> None:
        nonlocal brace
        if brace:
            prefix, alts, suffixes = brace
            for alt in alts:
                for suffix, dt in suffixes:
                    e = Entry(f"gaia_{prefix}{alt}{suffix}")
                    e.dtype = {f: dt for f in ts.FLAVOURS}
                    entries.append(e)
        brace = None

    for piece in [p.strip() for p in body.split(",")] if "{" not in body else _split(body):
        m = re.match(r"^(.*?)(?:\s+(i2|f4|bool|u1))?$", piece)
        assert m
        names, dt = m.group(1), m.group(2) or "f4"
        if "{" in names:
            flush_brace()
            bm = re.match(r"^(\w*)\{([\w,]+)\}(\w+)((?:\s*/\s*_\w+)*)$", names)
            assert bm, names
            suffixes = [bm.group(3), *re.findall(r"_\w+", bm.group(4))]
            brace = (bm.group(1), bm.group(2).split(","), [(s, dt) for s in suffixes])
            continue
        if names.startswith("_") and brace:
            brace[2].append((names, dt))
            continue
        flush_brace()
        out: list[str] = []
        om = re.match(r"^(\w+)\((_\w+)\)$", names)
        if om:
            out = [om.group(1), om.group(1) + om.group(2)]
        elif "/" in names:
            first, second = names.split("/")
            prefix = first.split("_", 1)[0] + "_"
            out = [first, prefix + second]
        else:
            out = [names]
        for n in out:
            e = Entry(f"gaia_{n}")
            e.dtype = {f: dt for f in ts.FLAVOURS}
            entries.append(e)
    flush_brace()
    return entries


def _split(body: str) -> list[str]:
    """Split on commas outside braces."""
    parts, depth, cur = [], 0, ""
    for c in body:
        depth += {"{": 1, "}": -1}.get(c, 0)
        if c == "," and depth == 0:
            parts.append(cur.strip())
            cur = ""
        else:
            cur += c
    parts.append(cur.strip())
    return parts


def facts_columns(flavour: str) -> list[tuple[str, str, tuple[int, ...]]]:
    """(name, dtype, shape) of every §6 column for ``flavour``, bands g,r,z, with WISE."""
    text = section(6)
    items = numbered_items(text)
    assert sorted(items) == list(range(1, 9)), sorted(items)
    n_epochs = int(re.search(r"(\d+) DR10 \(neo7\)", items[7]).group(1))  # type: ignore[union-attr]
    entries: list[Entry] = []
    for k in range(1, 9):
        if k == 3:
            assert re.match(r"21 `gaia_\*`", items[3])
            gaia = parse_gaia(items[3])
            assert len(gaia) == 21
            entries.extend(gaia)
        else:
            entries.extend(parse_generic(items[k], n_epochs=n_epochs, lc=k == 7))
    out = []
    for e in entries:
        if e.only is not None and flavour not in e.only:
            continue
        out.append((e.name, e.dtype[flavour], e.shape))
    return out


def schema_columns(flavour: str) -> list[tuple[str, str, tuple[int, ...]]]:
    """The same triples from ``tractor_dtype``."""
    dt = ts.tractor_dtype(BANDS, release_flavour=flavour, wise=True, lc_epochs=17)
    out = []
    for name in dt.names or ():
        f = dt[name]
        base = f.base
        code = "bool" if base.kind == "b" else f"{base.kind}{base.itemsize}"
        code = code.replace("S", "S") if base.kind == "S" else code
        out.append((name, code, f.shape))
    return out


@pytest.mark.parametrize("flavour", ["dr10", "dr9", "dr11"])
def test_dtype_matches_the_research_list(flavour: str):
    """tractor_dtype(g,r,z) has §6's columns, in §6's order, with §6's dtypes and shapes."""
    expected = facts_columns(flavour)
    got = schema_columns(flavour)
    assert len(expected) > 150
    for i, (want, have) in enumerate(zip(expected, got, strict=False)):
        assert want == have, f"column {i}: facts say {want}, schema has {have}"
    assert len(got) == len(expected)


def test_flavour_differences():
    """dr10: maskbits i4, ngood; ls_id_dr11/nearest_neighbor only in dr11; dr9: i2, no ngood."""
    names = {f: ts.tractor_dtype(BANDS, release_flavour=f).names for f in ts.FLAVOURS}
    assert "ls_id_dr11" not in names["dr10"] and "nearest_neighbor" not in names["dr10"]
    assert names["dr11"][0] == "ls_id_dr11" and "nearest_neighbor" in names["dr11"]
    assert "ngood_g" in names["dr10"] and "ngood_g" not in names["dr9"]
    assert ts.tractor_dtype(BANDS, release_flavour="dr9")["maskbits"] == np.dtype("i2")
    assert ts.tractor_dtype(BANDS)["maskbits"] == np.dtype("i4")


def test_options_change_the_columns():
    """Bands give flat per-band columns; wise=False drops WISE; lc_epochs sizes the light curves."""
    griz = ts.tractor_dtype(("g", "r", "i", "z"), wise=False)
    assert [n for n in griz.names if n.startswith("flux_")] == [
        "flux_g",
        "flux_r",
        "flux_i",
        "flux_z",
        "flux_ivar_g",
        "flux_ivar_r",
        "flux_ivar_i",
        "flux_ivar_z",
    ]
    assert not any(n.endswith(("_w1", "_w2")) or n.startswith("wise") for n in griz.names)
    assert ts.tractor_dtype(BANDS, lc_epochs=15)["lc_mjd_w2"].shape == (15,)
    assert "lc_flux_w1" not in (ts.tractor_dtype(BANDS, lc_epochs=0).names or ())
    # A band without a dust coefficient has no mw_transmission column (as legacypipe).
    assert "mw_transmission_N501" not in (ts.tractor_dtype(("N501",), wise=False).names or ())
    with pytest.raises(UsageError):
        ts.tractor_dtype(("g", "w1"))
    with pytest.raises(UsageError):
        ts.tractor_dtype(BANDS, release_flavour="dr8")


def test_units_and_descriptions():
    """Every column has a description; units follow legacypipe's TUNITs."""
    cols = ts.tractor_columns(BANDS)
    assert all(c.description for c in cols)
    units = ts.tractor_units(BANDS)
    assert units["ra"] == "deg" and units["ra_ivar"] == "deg^(-2)"
    assert units["flux_g"] == "nanomaggies" and units["flux_ivar_w1"] == "nanomaggies^(-2)"
    assert units["psfdepth_z"] == "nanomaggies^(-2)" and units["psfsize_r"] == "arcsec"
    assert units["lc_flux_w2"] == "nanomaggies" and units["gaia_phot_g_mean_mag"] == "mag"
    assert "nobs_g" not in units and "mw_transmission_g" not in units


def test_empty_catalog_nulls():
    """empty_catalog holds the documented nulls."""
    cat = ts.empty_catalog(3, BANDS)
    assert cat.dtype == ts.tractor_dtype(BANDS)
    assert (cat["flux_g"] == 0).all() and (cat["flux_ivar_z"] == 0).all()
    assert (cat["apflux_r"] == 0).all() and cat["apflux_r"].shape == (3, 8)
    assert (cat["type"] == b"").all() and (cat["ref_cat"] == b"").all()
    assert (cat["ref_id"] == 0).all() and (cat["ebv"] == 0).all()
    assert (cat["mw_transmission_g"] == 1).all() and (cat["mw_transmission_w4"] == 1).all()
    assert (cat["lc_epoch_index_w1"] == -1).all() and (cat["lc_flux_w1"] == 0).all()
    assert not cat["brick_primary"].any()
    assert len(ts.empty_catalog(0, BANDS)) == 0


# -- bits --------------------------------------------------------------------------------


def test_maskbits_match_section_7():
    """MASKBITS per flavour equal §7's list (DR9 to bit 13, DR10 to 16, DR11 to 19)."""
    text = section(7)
    first = text.split("`MASKBITS` (bit name):", 1)[1].split("`update_maskbits_bands`")[0]
    listed = {name: 1 << int(bit) for bit, name in re.findall(r"(\d+) ([A-Z][A-Z0-9_]+)", first)}
    assert len(listed) == 20
    for flavour, last in (("dr9", 13), ("dr10", 16), ("dr11", 19)):
        want = {k: v for k, v in listed.items() if v <= 1 << last}
        if flavour == "dr11":
            want = {k: v for k, v in want.items() if k not in ("SATUR_I", "ALLMASK_I")}
        assert ts.maskbits(BANDS, flavour) == want, flavour
    # DR10 with griz keeps the released i bits.
    assert ts.maskbits(("g", "r", "i", "z"), "dr10")["SATUR_I"] == 1 << 14
    # Other bands reuse SATUR_/ALLMASK_ bits in order, then new ones (update_maskbits_bands).
    nb = ts.maskbits(("N419", "N501", "N673", "N708"), "dr10")
    assert [nb[f"SATUR_N{n}"] for n in (419, 501, 673, 708)] == [0x4, 0x8, 0x10, 0x4000]
    assert nb["ALLMASK_N708"] == 0x8000 and "SATUR_G" not in nb


def test_fitbits_and_dq_bits_match_section_6():
    """FITBITS and the any/allmask DQ bits equal §6's lists."""
    text = section(6)
    fit = text.split("`FITBITS`):", 1)[1].split("any/allmask")[0]
    assert {n: int(v, 16) for v, n in re.findall(r"0x([0-9a-f]+) ([A-Z0-9_]+)", fit)} == ts.FITBITS
    dq = text.split("(`DQ_BITS`):", 1)[1]
    assert {n: int(v) for v, n in re.findall(r"(\d+) ([a-z0-9]+)", dq)} == ts.DQ_BITS


def test_extinction_and_apertures_match_section_6():
    """MW coefficients, WISE Vega→AB offsets and aperture radii are §6's numbers."""
    text = " ".join(section(6).split())
    k_text = text.split("DES k", 1)[1].split("(tractor")[0]
    k = {
        b.lower() if b.startswith("W") else b: float(v)
        for b, v in re.findall(r"\b(\w{1,2}) (\d\.\d+)", k_text)
    }
    assert k == ts.MW_K
    ab = dict(re.findall(r"(W\d) (\d\.\d+)", text.split("Vega→AB", 1)[1].split("(`copy")[0]))
    assert {b.lower(): float(v) for b, v in ab.items()} == ts.WISE_VEGA_TO_AB
    ap = re.search(r"f4\[8\]: ([\d., ]+)\"", text)
    assert ap, "no aperture radii in §6"
    assert tuple(float(x) for x in ap.group(1).split(",")) == ts.APRAD
    wap = re.search(r"f4\[5\]: (\d+)–(\d+)\"", text)
    assert wap, "no WISE aperture range in §6"
    assert (ts.WAPRAD[0], ts.WAPRAD[-1]) == (float(wap.group(1)), float(wap.group(2)))
    assert len(ts.WAPRAD) == 5 and np.allclose(np.diff(ts.WAPRAD), 2.0)


def test_magnitudes():
    """flux_to_mag: 1 nanomaggy is 22.5; depth_to_mag: ivar 25 (σ = 0.2) is a 5σ depth of 22.5."""
    assert ts.flux_to_mag([1.0, 10.0])[0] == pytest.approx(22.5)
    assert ts.flux_to_mag([100.0])[0] == pytest.approx(17.5)
    assert np.isnan(ts.flux_to_mag([0.0, -1.0])).all()
    # 5σ of 1 nanomaggy: ivar = 25 → mag 22.5.
    assert ts.depth_to_mag([25.0])[0] == pytest.approx(22.5)
    assert ts.depth_to_mag([2500.0])[0] == pytest.approx(25.0)
    assert np.isnan(ts.depth_to_mag([0.0])).all()
    assert ts.mw_transmission("g", [0.0])[0] == 1.0
    assert ts.mw_transmission("g", [0.1])[0] == pytest.approx(10 ** (-0.3214 / 2.5), rel=1e-6)


# -- the real legacypipe -----------------------------------------------------------------


def run_real_runbrick(build: LegacypipeBuild, case: str, tmp: Path, args: list[str]) -> Path:
    """Run the real runbrick on a copy of a test case; the path of its tractor catalogue."""
    sd = tmp / case
    shutil.copytree(TESTDATA / case, sd)
    out = tmp / "out"
    env = reference_env(build, sd)
    driver = tmp / "drive.py"
    driver.write_text(
        "import sys\n"
        "import legacypipe.image\n"
        "legacypipe.image.LegacySurveyImage.splinesky_boxsize = 128\n"
        "from legacypipe.runbrick import main\n"
        "main(args=sys.argv[1:])\n"
    )
    cmd = [str(build.python), str(driver), "--survey-dir", str(sd), "--outdir", str(out)]
    subprocess.run(
        [*cmd, *[a.replace("$SD", str(sd)) for a in args]],
        env=env,
        cwd=tmp,
        check=True,
        capture_output=True,
        timeout=300,
    )
    found = sorted(out.glob("tractor/*/tractor-*.fits"))
    assert len(found) == 1
    return found[0]


def compare_with_real(path: Path, *, wise: bool) -> None:
    """The real catalogue's columns, dtypes, shapes and TUNITs equal the dr11 schema's."""
    with fitsio.FITS(str(path)) as f:
        assert f[1].get_extname() == "CATALOG"
        data = f[1].read()
        hdr = f[1].read_header()
        primary = f[0].read_header()
    units = {int(k[5:]): hdr[k] for k in hdr if k.startswith("TUNIT")}
    cols = ts.tractor_columns(BANDS, release_flavour="dr11", wise=wise, lc_epochs=17)
    assert [c.name for c in cols] == list(data.dtype.names)
    for i, c in enumerate(cols):
        real = data.dtype[c.name]
        mine = np.dtype(ts.column_dtype(c)[1])
        width = real.base.itemsize // 4 if real.base.kind == "U" else real.base.itemsize
        kind = "S" if real.base.kind == "U" else real.base.kind
        assert (kind, width, real.shape) == (mine.kind, mine.itemsize, c.shape), c.name
        assert units.get(i + 1, "") == c.unit, c.name
    header_bits = {k[3:]: primary[k] for k in primary if k.startswith("MB_")}
    assert header_bits == ts.maskbits(BANDS, "dr11")
    assert {k[3:]: primary[k] for k in primary if k.startswith("FB_")} == ts.FITBITS
    assert [primary[f"APRAD{i}"] for i in range(8)] == list(ts.APRAD)
    if wise:
        assert [primary[f"WAPRAD{i}"] for i in range(5)] == list(ts.WAPRAD)


@pytest.mark.legacypipe
def test_real_runbrick_catalogue_matches_the_schema(legacypipe: LegacypipeBuild, tmp_path: Path):
    """runbrick's tractor file on testcase6 (no WISE) has the dr11 schema's columns and units."""
    path = run_real_runbrick(
        legacypipe,
        "testcase6",
        tmp_path,
        [
            "--brick",
            "1102p240",
            "--zoom",
            "500",
            "600",
            "650",
            "750",
            "--force-all",
            "--no-write",
            "--no-wise",
        ],
    )
    compare_with_real(path, wise=False)


@pytest.mark.legacypipe
@pytest.mark.slow
def test_real_runbrick_wise_catalogue_matches_the_schema(
    legacypipe: LegacypipeBuild, tmp_path: Path
):
    """runbrick with unWISE and light curves (testcase4) writes the dr11 schema with WISE."""
    path = run_real_runbrick(
        legacypipe,
        "testcase4",
        tmp_path,
        [
            "--brick",
            "1867p255",
            "--zoom",
            "2050",
            "2300",
            "1150",
            "1400",
            "--force-all",
            "--no-write",
            "--coadd-bw",
            "--unwise-dir",
            "$SD/images/unwise",
            "--unwise-tr-dir",
            "$SD/images/unwise-tr",
            "--blob-image",
            "--no-wise-ceres",
        ],
    )
    compare_with_real(path, wise=True)
