# Two commands do all the set-up on a fresh machine (see README):
#   make lab    create .venv, install the course, start JupyterLab on chapter 1
#   make test   create/update .venv, install Chromium if missing, run the whole test suite
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip install --quiet --disable-pip-version-check -c requirements/constraints.txt
STAMP := $(VENV)/.installed
PORT ?= 8888
TOKEN ?= $(shell $(PYTHON) -c 'import secrets; print(secrets.token_hex(16))')
LAB_ARGS ?=
FIRST_CHAPTER := notebooks/01_vanilla_pg/01_vanilla_pg.ipynb

.PHONY: lab test chromium release explore bench clean

$(STAMP): pyproject.toml requirements/constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	# torch first, from the pinned CPU wheel, so nothing else can pull a CUDA build.
	$(PIP) torch==2.13.0
	$(PIP) -e '.[test]'
	touch $@

# JupyterLab on chapter 1, serving the whole repo so every chapter is one click away.
# Running as root needs --allow-root.
lab: $(STAMP)
	@echo; echo "  Open chapter 1: http://127.0.0.1:$(PORT)/lab/tree/$(FIRST_CHAPTER)?token=$(TOKEN)"; echo
	$(VENV)/bin/jupyter lab --no-browser --port=$(PORT) --ServerApp.root_dir=. \
		--IdentityProvider.token=$(TOKEN) $$( [ "$$(id -u)" = 0 ] && echo --allow-root ) \
		$(FIRST_CHAPTER) $(LAB_ARGS)

# Debian's Chromium for the browser tests; never a browser downloaded by playwright.
chromium:
	bash scripts/install-chromium.sh

test: $(STAMP) chromium
	$(PY) -m pytest $(PYTEST_ARGS)

release: $(STAMP)
	$(PY) -m autograde release

explore: $(STAMP)
	$(VENV)/bin/voila explorer/ppo_explorer.ipynb --no-browser --port=$(PORT) --Voila.ip=127.0.0.1

bench: $(STAMP)
	$(PIP) -e '.[test,bench]'
	$(PY) -m bench.cartpole
	$(PY) -m bench.pendulum
	$(PY) -m bench.grading

clean:
	rm -rf $(VENV) test-artifacts
