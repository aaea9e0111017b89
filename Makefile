# The whole set-up: `make demo` and `make test`. The environment lives in .venv/.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
WORKDIR ?= runs/demo

.PHONY: demo serve test test-fast lint checkov compile golden screenshots clean

$(STAMP): pyproject.toml
	@command -v $(PYTHON) >/dev/null || { echo "$(PYTHON) not found: install Python 3.11"; exit 2; }
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

# The demo publishes to a registry inside its workdir, so that `make serve` can serve it.
demo: $(STAMP)
	$(BIN)/kfp-yolo run --workdir $(WORKDIR) --set registry_uri=$(abspath $(WORKDIR))/registry

# The version `make demo` published, on the real Triton (the serve extra) on 127.0.0.1:8000.
serve: $(STAMP)
	$(BIN)/kfp-yolo serve local --set registry_uri=$(abspath $(WORKDIR))/registry --http-port 8000

# Everything: the unit lane, then the integration lane (real torchrun, kfp.local, SeaweedFS S3,
# training on small data, the wheel in a fresh virtualenv).
# Each lane prints its wall time (the README's figures are these).
test: $(STAMP)
	@start=$$(date +%s); $(BIN)/ruff check . && $(BIN)/python -m pytest -q -ra tests/unit \
		tests/integration; status=$$?; \
		echo "make test: $$(( $$(date +%s) - start )) s"; exit $$status

# The unit lane: pure logic, no torchrun, no S3 server, no training, no real-time waits
# (under a minute on 2 cores; what is slower belongs in tests/integration).
test-fast: $(STAMP)
	@start=$$(date +%s); $(BIN)/ruff check . && $(BIN)/python -m pytest -q -ra -n auto --dist loadfile tests/unit; \
		status=$$?; echo "make test-fast: $$(( $$(date +%s) - start )) s"; exit $$status

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/hadolint Dockerfile

# checkov pins older packaging/networkx than torch wants: it gets a virtualenv of its own.
checkov:
	test -x .venv-checkov/bin/checkov || { $(PYTHON) -m venv .venv-checkov && \
		.venv-checkov/bin/pip install --quiet checkov==3.3.30; }
	.venv-checkov/bin/checkov -d k8s --skip-download --compact --quiet

# PNGs of a run's training and evaluation reports, from headless Chromium (Debian's chromium).
screenshots: $(STAMP)
	$(BIN)/python benchmarks/screenshot_reports.py $(WORKDIR)

# The compiled demo pipeline's golden (tests/golden): regenerate on purpose, review the diff.
golden: $(STAMP)
	KFP_YOLO_UPDATE_GOLDEN=1 $(BIN)/python -m pytest -q tests/unit/test_pipeline_golden.py

compile: $(STAMP)
	$(BIN)/kfp-yolo compile -o pipeline.yaml

clean:
	rm -rf runs pipeline.yaml .pytest_cache .venv-checkov
