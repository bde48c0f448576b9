# `make run`: install into .venv and open the GUI on the embedded model.
# `make test`: install the test tools too and run the whole test suite.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python

.PHONY: run test install install-dev model clean

run: install
	$(PY) app.py

test: install-dev
	$(PY) -m pytest

install: $(VENV)/.installed
install-dev: $(VENV)/.installed-dev

$(VENV)/.installed: requirements.txt requirements-nodeps.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --disable-pip-version-check -q -r requirements.txt
	$(PY) -m pip install --disable-pip-version-check -q --no-deps -r requirements-nodeps.txt
	touch $@

$(VENV)/.installed-dev: $(VENV)/.installed requirements-dev.txt
	$(PY) -m pip install --disable-pip-version-check -q -r requirements-dev.txt
	touch $@

# Train the embedded default model again (about 2 hours on 2 CPU cores; resumable) and
# install it over the shipped one; see docs/embedded-model.md.
model: install
	$(PY) -m embedded_model.train --out runs/embedded --resume --model-dir models/Stable-diffusion/dreamworld-tiny

clean:
	rm -rf $(VENV) .pytest_cache
