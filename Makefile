# Two commands work on a fresh machine: `make bench` and `make test` (see README.md).
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
# The project is installed (not editable) so tests exercise the installed packages and their
# entry points; the stamp reinstalls it whenever a source file changes.
SOURCES := pyproject.toml $(shell find yukti runners dashboard -type f -not -path '*/__pycache__/*' 2>/dev/null)

.PHONY: bench test setup clean-venv

$(VENV)/.deps-stamp: pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q -c constraints.txt setuptools wheel
	# Dependencies of .[all] under the pinned constraints (torch==2.13.0, the local CPU wheel).
	$(PIP) install -q -c constraints.txt --no-build-isolation ".[all]"
	# onnx2torch's only use of torchvision is for NMS/RoiAlign; PyPI's torchvision does not load
	# beside the CPU torch wheel, so it is kept out and the torch runner refuses those ops.
	$(PIP) install -q -c constraints.txt --no-deps onnx2torch
	-$(PIP) uninstall -q -y torchvision
	touch $@

$(VENV)/.install-stamp: $(VENV)/.deps-stamp $(SOURCES)
	$(PIP) install -q --no-deps --no-build-isolation --force-reinstall .
	touch $@

setup: $(VENV)/.install-stamp

bench: setup
	$(VENV)/bin/yukti bench

# Two pytest-xdist workers: CI and these machines have 2 cores; most of the suite is compiling and
# running backends, one core each. `make test TEST_WORKERS=0` runs in one process (pdb, -x).
TEST_WORKERS ?= 2

test: setup
	# pytest (not python -m pytest) keeps the source tree off sys.path: the installed package is tested.
	$(VENV)/bin/pytest -p no:cacheprovider -n $(TEST_WORKERS) $(PYTEST_ARGS)

clean-venv:
	rm -rf $(VENV)

# asv (airspeed velocity) over commits of main, in asv-managed virtualenvs (see asv.conf.json and
# README.md): `make asv` measures main's latest commit; `make asv ASV_ARGS="HEAD~3..HEAD"` a range;
# a quick look in .venv: `make asv ASV_ARGS="--python=same --quick --set-commit-hash $$(git rev-parse HEAD)"`.
# `asv machine --yes` records this machine once (asv asks interactively otherwise).
.PHONY: asv
ASV_ARGS ?=
asv: setup
	$(VENV)/bin/asv machine --yes
	$(VENV)/bin/asv run $(ASV_ARGS)
	$(VENV)/bin/asv publish
