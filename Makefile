# Two entry points for a fresh machine: `make demo` and `make test`.
SHELL := /bin/bash
VENV  := .venv
PY    := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test lint bench clean deps

# editable_mode=strict: a tree of symlinks on a plain sys.path entry, as fast to
# start as a normal install; the default import hook costs every run 9 ms.
# A module added or removed changes the mtime of its folder, and reinstalls.
PKG_DIRS := $(shell find ossl_vault -type d -not -name __pycache__)
INSTALL = $(PY) -m pip install --quiet --config-settings editable_mode=strict -e

$(STAMP): pyproject.toml $(PKG_DIRS)
	python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(INSTALL) '.[test]'
	$(PY) -m compileall -q ossl_vault build
	touch $(STAMP)

# A throwaway vault with a snakeoil-style cert: store, read, list, and recover
# the secret with plain openssl.
demo: $(STAMP)
	PATH="$(CURDIR)/$(VENV)/bin:$$PATH" bash scripts/demo

# System packages the tests need (openssl 3, coreutils); apt-get only when missing.
deps:
	bash scripts/install-test-deps

lint: $(STAMP)
	$(VENV)/bin/ruff check ossl_vault tests bench
	$(VENV)/bin/ruff format --check ossl_vault tests bench

test: deps $(STAMP) lint
	PATH="$(CURDIR)/$(VENV)/bin:$$PATH" $(VENV)/bin/pytest -n 2 -q

bench: $(STAMP)
	$(INSTALL) '.[bench]'
	$(PY) -m compileall -q ossl_vault build
	bash scripts/install-test-deps --bench
	PATH="$(CURDIR)/$(VENV)/bin:$$PATH" $(PY) bench/bench_get.py
	PATH="$(CURDIR)/$(VENV)/bin:$$PATH" $(PY) bench/bench_list.py
	PATH="$(CURDIR)/$(VENV)/bin:$$PATH" $(PY) bench/bench_fastpath.py

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .hypothesis build *.egg-info
