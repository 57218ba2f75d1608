# Set-up and checks. `make demo` and `make test` are the README's two commands: each installs
# what it needs into .venv (created from python3) and then runs.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
DEMO_DIR ?= demo-release
STAMP := $(VENV)/.lsdr-installed

.PHONY: install demo test lint typecheck pytest legacypipe rsync clean

$(STAMP): pyproject.toml
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

# mypy cannot follow setuptools' package-dir mapping (lsdr.survey -> survey/), so it checks a
# tree of symlinks that spells the import package out.
typecheck: install
	rm -rf build/mypy && mkdir -p build/mypy/lsdr
	for f in lsdr/*.py lsdr/py.typed; do ln -s ../../../$$f build/mypy/$$f; done
	for d in survey infra flows tasks deployments; do ln -s ../../../$$d build/mypy/lsdr/$$d; done
	$(BIN)/mypy -p lsdr.survey -p lsdr.infra -p lsdr.flows -p lsdr.tasks \
	  -m lsdr.cli -m lsdr.run_cli -m lsdr.server_cli

# The real legacypipe, built from ../shared/vendor with Debian packages (needs root for apt the
# first time; reused afterwards). The tests that run it then must not skip.
legacypipe:
	bash infra/scripts/build-legacypipe.sh

# Debian's rsync publishes a release (an argument list, never a shell string); root installs it.
rsync:
	command -v rsync >/dev/null 2>&1 || { apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends rsync; }

pytest: install legacypipe rsync
	LSDR_REQUIRE_LEGACYPIPE=1 $(BIN)/python -m pytest -m "slow or cluster or legacypipe or not slow" -n 2 --dist loadfile --durations=15

test: lint typecheck pytest

clean:
	rm -rf build $(VENV) $(DEMO_DIR) .pytest_cache .mypy_cache .ruff_cache
