# `make run`: set up and run the main job on the default config.
# `make test`: set up, check lint and types (`make lint`), and run the test suite.
# Setup is idempotent: a stamp keyed on pyproject.toml and this Makefile skips the slow part.
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip --disable-pip-version-check -q
CONFIG ?= configs/quickstart.toml
# fbgemm-gpu (CUDA) where an NVIDIA driver is present, fbgemm-gpu-cpu otherwise; override with FBGEMM=...
FBGEMM ?= $(shell command -v nvidia-smi >/dev/null 2>&1 && echo fbgemm-gpu==1.8.0 || echo fbgemm-gpu-cpu==1.8.0)
STAMP  := $(VENV)/.setup-$(subst ==,-,$(FBGEMM))

.PHONY: setup run lint test test-fast bench clean
setup: $(STAMP)

# torchrec comes last and with --no-deps: its metadata requires the CUDA fbgemm-gpu, which must not
# be pulled onto CPU hosts (its real needs are the project's dependencies). pip checks no conflicts
# for a --no-deps install, and later installs that touch no torchrec dependency leave it unchecked,
# so setup prints no resolver ERROR.
$(STAMP): pyproject.toml Makefile
	test -x $(PY) || python3 -m venv $(VENV)
	$(PIP) install torch==2.13.0 $(FBGEMM)
	$(PIP) install -e '.[test]'
	$(PIP) install --no-deps torchrec==1.8.0
	$(PY) -c "import torchrec, fbgemm_gpu, torch; print('stack ok: torch', torch.__version__, 'torchrec', torchrec.__version__)"
	$(PY) -c "from recsys.serving.ops import load; load(); print('serving ops built (cached under ~/.cache/torch_extensions)')"
	rm -f $(VENV)/.setup-* && touch $@

run: setup
	$(VENV)/bin/recsys run $(CONFIG)

# Lint and types ([tool.ruff] and [tool.mypy] in pyproject.toml); any finding fails.
lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy

test: lint
	$(PY) -m pytest -q

test-fast: setup
	$(PY) -m pytest -q -m "not slow"

bench: setup
	$(PY) bench/train_throughput.py

clean:
	rm -rf runs .cache
