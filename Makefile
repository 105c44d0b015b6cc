# Two entry points for a fresh machine: `make demo` and `make test`.
SHELL := /bin/bash
VENV  := .venv
PY    := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test lint bench clean deps man

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

# The man page and the completion scripts, from the click commands; committed, so that
# a wheel built anywhere installs them (pyproject.toml data-files), and checked by
# tests/test_shell.py to match the commands.
SHARE := share
man: $(STAMP)
	mkdir -p $(SHARE)/man/man1 $(SHARE)/bash-completion/completions \
	    $(SHARE)/zsh/site-functions $(SHARE)/fish/vendor_completions.d
	$(PY) -m ossl_vault.cli.shell man > $(SHARE)/man/man1/ossl-vault.1
	$(PY) -m ossl_vault.cli.shell bash > $(SHARE)/bash-completion/completions/ossl-vault
	$(PY) -m ossl_vault.cli.shell zsh > $(SHARE)/zsh/site-functions/_ossl-vault
	$(PY) -m ossl_vault.cli.shell fish > $(SHARE)/fish/vendor_completions.d/ossl-vault.fish

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
	PATH="$(CURDIR)/$(VENV)/bin:$$PATH" $(PY) bench/bench_server.py

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .hypothesis build *.egg-info
