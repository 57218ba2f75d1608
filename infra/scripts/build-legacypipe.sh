#!/usr/bin/env bash
# Build the real legacypipe + Tractor from ../shared/vendor into a prefix, with Debian packages.
#
#   infra/scripts/build-legacypipe.sh [PREFIX]      (default: $LSDR_LEGACYPIPE_PREFIX or
#                                                    /var/cache/lsdr/legacypipe-<vendor hash>)
#
# Prints the prefix on its last line. Idempotent: a finished build (marker file) is reused, so
# CI on a machine that built it before pays nothing. Facts behind each step are in
# ../shared/research/legacypipe-build.md (Debian Python 3.11 for python3-astrometry, pip
# cython>=3 and fitsio>=1.2, tagged git repos for version strings, the vendored fix patch,
# constant stand-in dust maps).
set -euo pipefail

here=$(cd "$(dirname "$0")/../.." && pwd)
vendor=${LSDR_VENDOR_DIR:-$here/../shared/vendor}
[ -d "$vendor" ] || { echo "build-legacypipe: no vendor directory at $vendor" >&2; exit 2; }
hash=$(cat "$vendor"/*.tar.gz "$vendor"/*.patch | sha256sum | cut -c1-12)
prefix=${1:-${LSDR_LEGACYPIPE_PREFIX:-/var/cache/lsdr/legacypipe-$hash}}

if [ -f "$prefix/.built" ]; then
  echo "$prefix"
  exit 0
fi

apt_packages=(build-essential pkg-config swig git python3-dev python3-venv python3-pip
  python3-setuptools python3-wheel libcfitsio-dev libcfitsio-bin libgsl-dev libeigen3-dev
  libceres-dev libgoogle-glog-dev python3-numpy python3-scipy python3-astropy
  python3-matplotlib python3-photutils python3-fitsio python3-astrometry astrometry.net
  psfex source-extractor time)
missing=()
for p in "${apt_packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

# No marker means no finished build: start again from an empty prefix.
rm -rf "$prefix"
mkdir -p "$prefix"
cd "$prefix"
for t in "$vendor"/legacypipe-*.tar.gz "$vendor"/tractor-*.tar.gz "$vendor"/unwise_psf-*.tar.gz; do
  tar xzf "$t"
done

tag_repo() {  # make a one-commit repository tagged with the vendored `git describe` string
  (cd "$1" && git init -q && git add -A &&
    git -c user.name=lsdr -c user.email=lsdr@localhost commit -qm vendored &&
    git -c user.name=lsdr -c user.email=lsdr@localhost tag -a "$2" -m vendored)
}
describe() { basename "$1" .tar.gz | sed -E "s/^$2-//"; }
tag_repo legacypipe "$(describe "$vendor"/legacypipe-*.tar.gz legacypipe)"
tag_repo tractor "$(describe "$vendor"/tractor-*.tar.gz tractor | sed -E 's/-[0-9a-f]{8}$//')"
tag_repo unwise_psf "$(describe "$vendor"/unwise_psf-*.tar.gz unwise_psf | sed -E 's/-[0-9a-f]{8}$//')"
# The patch stays uncommitted so that runbrick reports the vendored version string.
patch -s -d legacypipe/py -p0 < "$vendor"/legacypipe-runbrick-fixes.patch

/usr/bin/python3 -m venv --system-site-packages venv
venv/bin/pip install -q "cython>=3" "fitsio>=1.2"
(cd tractor && ../venv/bin/python setup.py -q build_ext --inplace --with-ceres --with-cython -j 2 >build.log 2>&1) \
  || { tail -30 tractor/build.log >&2; exit 1; }

mkdir -p dust/maps
venv/bin/python - <<'PY'
# Constant (zero) SFD stand-ins: runbrick's writecat needs the files; ebv is then 0.
import numpy as np, fitsio
s = np.degrees(np.sqrt(2)) / 2048
for name, p in [("ngp", 1), ("sgp", -1)]:
    cards = [("CTYPE1", "GLON-ZEA"), ("CTYPE2", "GLAT-ZEA"), ("CRPIX1", 2048.5),
             ("CRPIX2", 2048.5), ("CRVAL1", 0.0), ("CRVAL2", 90.0 * p), ("CD1_1", -s * p),
             ("CD1_2", 0.0), ("CD2_1", 0.0), ("CD2_2", s * p), ("LONPOLE", 180.0),
             ("LAM_NSGP", p), ("LAM_SCAL", 2048)]
    hdr = [dict(name=k, value=v) for k, v in cards]
    fitsio.write(f"dust/maps/SFD_dust_4096_{name}.fits", np.zeros((4096, 4096), np.float32),
                 header=hdr, clobber=True)
PY

cat > env.sh <<ENV
# Source this to run the real legacypipe built here.
export LSDR_LEGACYPIPE_PREFIX=$prefix
export PYTHONPATH=$prefix/tractor:$prefix/legacypipe/py:$prefix/unwise_psf/py
export DUST_DIR=$prefix/dust MPLBACKEND=Agg
ENV
touch .built
echo "$prefix"
