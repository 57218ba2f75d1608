# Set-up and checks. `make demo` and `make test` are the README's two commands: each installs
# what it needs into .venv (created from python3) and then runs.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
DEMO_DIR ?= demo-release
STAMP := $(VENV)/.lsdr-installed

.PHONY: install demo test lint typecheck pytest legacypipe rsync clean

$(STAMP): pyproject.toml setup.py
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

demo: install
	$(BIN)/lsdr demo --out $(DEMO_DIR)

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

# mypy --strict on every package pyproject's package-dir maps (and lsdr/*.py), over a symlink
# tree in build/mypy that the script generates (it says why mypy needs one).
typecheck: install
	$(BIN)/python infra/scripts/typecheck.py

# The real legacypipe, built from ../shared/vendor with Debian packages (needs root for apt the
# first time; reused afterwards). The tests that run it then must not skip.
legacypipe:
	bash infra/scripts/build-legacypipe.sh

# Debian's rsync publishes a release (an argument list, never a shell string); root installs it.
rsync:
	command -v rsync >/dev/null 2>&1 || { apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends rsync; }

pytest: install legacypipe rsync
	LSDR_REQUIRE_LEGACYPIPE=1 LSDR_TEST_DEMO_AHEAD=1 $(BIN)/python -m pytest -m "slow or cluster or legacypipe or not slow" -n 2 --dist loadfile --no-loadscope-reorder --durations=15

test: lint typecheck pytest

clean:
	rm -rf build $(VENV) $(DEMO_DIR) .pytest_cache .mypy_cache .ruff_cache
