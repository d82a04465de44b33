# Everything a developer runs; the build logic itself lives in setup.py and pyproject.toml.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# What Cython generates from the .pyx files; the other .cpp files beside them are sources. The .pyx files in
# subfolders (loadgen/, engine/) are included into a module's .pyx, not compiled on their own.
GENERATED := $(patsubst %.pyx,%.cpp,$(wildcard src_cy/wsa_fast/*.pyx)) $(wildcard src_cy/wsa_fast/*.html)
SOURCES := pyproject.toml setup.py $(filter-out $(GENERATED),$(wildcard src_cy/wsa_fast/*.pyx src_cy/wsa_fast/*.pxd src_cy/wsa_fast/*.hpp src_cy/wsa_fast/*.cpp)) \
	$(wildcard src_cy/wsa_fast/*/*.pyx src_cy/wsa_fast/*/*.pxd src_cy/wsa_fast/*/*.pxi)
ARGS ?=

.PHONY: install serve test test-fast test-js js testinstalled lint bench bench-cluster dist debug sanitize fuzz clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

# One stamp per set of extras (runtime: none); any install brings the runtime dependencies too.
# Reinstalled (and so recompiled) whenever a build input changes.
$(VENV)/.installed-%: $(BIN)/python $(SOURCES)
	$(BIN)/python -m pip install -e '.$(if $(filter runtime,$*),,[$*])'
	touch $@ $(VENV)/.installed-runtime

install: $(VENV)/.installed-test

serve: $(VENV)/.installed-runtime
	$(BIN)/wsa-fast serve $(ARGS)

# The inner loop's tests (pyproject's markers): every test but the slow, soak, deploy and bench tiers. They are
# safe to run in parallel (free ports, temporary directories, a server per test or per module and worker), and
# mostly wait on sockets and timers: JOBS pytest-xdist workers, one per core here.
FAST := not slow and not soak and not deploy and not bench
JOBS ?= 2

# Everything: the inner loop's tests in parallel, then the other tiers one at a time, as their timing and their
# shared tools (nginx, browsers, builds in the tree) want. A tier that ARGS leaves empty (exit 5) is no failure.
test: $(VENV)/.installed-test
	$(BIN)/python -m pytest tests -n $(JOBS) -m "$(FAST)" $(ARGS) || [ $$? -eq 5 ]
	$(BIN)/python -m pytest tests -m "not ($(FAST))" $(ARGS) || [ $$? -eq 5 ]

test-fast: $(VENV)/.installed-test
	$(BIN)/python -m pytest tests -n $(JOBS) -m "$(FAST)" $(ARGS)

# What a maintainer runs before a commit, and CI: style and lint (ruff), types (mypy), the .pyi stubs held to
# the compiled modules (stubtest; tools/stubtest-allowlist.txt says what it cannot see), the Cython sources.
STUBBED := $(patsubst wsa_fast/%.pyi,wsa_fast.%,$(wildcard wsa_fast/*.pyi))
CYTHON_SOURCES := $(filter-out $(GENERATED),$(wildcard src_cy/wsa_fast/*.pyx src_cy/wsa_fast/*.pxd \
	src_cy/wsa_fast/*/*.pyx src_cy/wsa_fast/*/*.pxd src_cy/wsa_fast/*/*.pxi)) bench/floor_echo.pyx

lint: $(VENV)/.installed-test
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/python -m mypy.stubtest --mypy-config-file pyproject.toml --ignore-missing-stub --ignore-disjoint-bases \
		--allowlist tools/stubtest-allowlist.txt $(STUBBED)
	PATH=$(CURDIR)/$(BIN):$$PATH cython-lint $(CYTHON_SOURCES)

# The JS client (clients/js): its locked npm dependencies, its build, and its tests against this tree's wsa-fast.
JS := clients/js
$(JS)/node_modules/.package-lock.json: $(JS)/package-lock.json
	cd $(JS) && npm ci --no-audit --no-fund

js: $(JS)/node_modules/.package-lock.json
	cd $(JS) && npm run build

test-js: install $(JS)/node_modules/.package-lock.json
	cd $(JS) && WSA_FAST=$(CURDIR)/$(BIN)/wsa-fast npm test

# The installed package, imported from outside the source tree, so a file missing from it shows.
testinstalled: install
	cd /tmp && $(CURDIR)/$(BIN)/python -c "import wsa_fast._gateway, wsa_fast.server, wsa_fast.loadtest.driver; print('ok')"

# This venv's wsa-fast against the floor and the peers (about 4 minutes); fails if wsa-fast is missing.
bench: $(VENV)/.installed-bench
	$(BIN)/python bench/run.py $(ARGS)

# --workers 2 against one worker, and relay across workers over NATS (about 1.5 minutes).
bench-cluster: $(VENV)/.installed-bench
	$(BIN)/python bench/run_cluster.py $(ARGS)

# ASan+UBSan: the extensions rebuilt in a venv of their own; these tests run with every server they
# start under the sanitizers, and any report fails the target (tests/sanitized.py; ~8 minutes here).
SANITIZE_VENV ?= .venv-asan
SANITIZE_TESTS ?= tests/test_codec_cases.py tests/test_codec_properties.py tests/test_e2e_protocol.py \
	tests/test_e2e_hostile.py tests/test_e2e_session.py tests/test_e2e_rfc6455.py tests/test_e2e_user_code.py \
	tests/test_memory_safety.py tests/test_cluster.py tests/test_fuzz_corpus.py
SECONDS ?= 60

$(SANITIZE_VENV)/.installed: $(SOURCES)
	test -x $(SANITIZE_VENV)/bin/python || $(PYTHON) -m venv $(SANITIZE_VENV)
	WSA_FAST_SANITIZE=1 $(SANITIZE_VENV)/bin/python -m pip install '.[test,fuzz]'
	touch $@

# Under the sanitizers everything runs several times slower: each test may take 10 minutes, not 1.
sanitize: $(SANITIZE_VENV)/.installed
	$(SANITIZE_VENV)/bin/python tests/sanitized.py $(SANITIZE_VENV)/bin/python -P -m pytest --timeout 600 $(SANITIZE_TESTS) $(ARGS)

# SECONDS of the codec fuzzer (coverage of codec_py, on the normal build; its corpus then replayed
# under the sanitizers), then SECONDS of the network fuzzer against a sanitized server.
fuzz: $(VENV)/.installed-fuzz $(SANITIZE_VENV)/.installed
	mkdir -p build/fuzz/codec
	$(BIN)/python tests/fuzz/codec.py -max_total_time=$(SECONDS) -max_len=4096 build/fuzz/codec tests/fuzz/corpus/codec
	$(SANITIZE_VENV)/bin/python tests/sanitized.py $(SANITIZE_VENV)/bin/python tests/fuzz/codec.py -runs=0 \
		build/fuzz/codec tests/fuzz/corpus/codec
	$(SANITIZE_VENV)/bin/python tests/sanitized.py $(SANITIZE_VENV)/bin/python tests/fuzz/network.py \
		--seconds $(SECONDS) --findings build/fuzz/findings

# The sdist, a manylinux wheel built from it, and the protocol tests against that wheel installed
# in a fresh venv (tools/dist.py); leaves both in dist/.
dist: $(BIN)/python
	$(BIN)/python -m pip install -q --group dist
	$(BIN)/python tools/dist.py

# Annotated HTML (src_cy/wsa_fast/*.html), line tracing and no optimisation, for profiling.
debug: $(BIN)/python
	WSA_FAST_DEBUG=1 $(BIN)/python -m pip install -e '.[test,bench]'
	rm -f $(VENV)/.installed-*

clean:
	rm -rf build dist $(SANITIZE_VENV)/.installed *.egg-info wsa_fast/*.so $(GENERATED) bench/build bench/*.c bench/*.so $(VENV)/.installed-* $(JS)/dist
