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

$(VENV)/.installed: requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --disable-pip-version-check -q -r requirements.txt
	touch $@

$(VENV)/.installed-dev: $(VENV)/.installed requirements-dev.txt
	$(PY) -m pip install --disable-pip-version-check -q -r requirements-dev.txt
	touch $@

# Rebuild the embedded default model from its script (deterministic).
model: install
	$(PY) -m dreamworld.tiny_model

clean:
	rm -rf $(VENV) .pytest_cache
