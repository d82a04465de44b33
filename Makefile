# Everything a developer runs; the build logic itself lives in setup.py and pyproject.toml.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# Reinstall (and so recompile) whenever the build inputs change.
STAMP := $(VENV)/.installed-stamp
SOURCES := pyproject.toml setup.py $(wildcard src_cy/wsa_fast/*.pyx src_cy/wsa_fast/*.pxd src_cy/wsa_fast/*.hpp)
ARGS ?=

.PHONY: install serve test testinstalled bench bench-cluster debug clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

$(STAMP): $(BIN)/python $(SOURCES)
	$(BIN)/python -m pip install -e '.[test,bench]'
	touch $@

install: $(STAMP)

serve: install
	$(BIN)/wsa-fast serve $(ARGS)

test: install
	$(BIN)/python -m pytest tests $(ARGS)

# The installed package, imported from outside the source tree, so a file missing from it shows.
testinstalled: install
	cd /tmp && $(CURDIR)/$(BIN)/python -c "import wsa_fast._gateway, wsa_fast.server; print('ok')"

bench: install
	$(BIN)/python bench/run.py $(ARGS)

# --workers 2 against one worker, and relay across workers over NATS (about 1.5 minutes).
bench-cluster: install
	$(BIN)/python bench/run_cluster.py $(ARGS)

# Annotated HTML (src_cy/wsa_fast/*.html), line tracing and no optimisation, for profiling.
debug: $(BIN)/python
	WSA_FAST_DEBUG=1 $(BIN)/python -m pip install -e '.[test,bench]'
	rm -f $(STAMP)

clean:
	rm -rf build *.egg-info wsa_fast/*.so src_cy/wsa_fast/*.cpp src_cy/wsa_fast/*.html $(STAMP)
