# parcelguard developer entry points. `make demo` and `make test` work on a fresh clone:
# they create .venv when missing and install the project with all extras.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: demo test test-fast test-deps test-arm64 lint format bench clean docker-train docker-pi docker-jetson

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip setuptools wheel
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[all]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/parcelguard demo

# System programs the tests use (Mosquitto); one sentence for whatever could not be installed.
test-deps:
	@tools/test-deps.sh

test: $(STAMP) test-deps
	$(BIN)/python -m pytest -q

test-fast: $(STAMP) test-deps
	$(BIN)/python -m pytest -q -m "not slow"

# The device side on emulated arm64 (QEMU, Debian bookworm = Raspberry Pi OS), compared with x86.
# Needs root and binfmt_misc (else it skips with one sentence); rootfs cached in ~/.cache/parcelguard.
test-arm64: $(STAMP)
	ARM64_PY=$(BIN)/python tools/arm64/run.sh

# Style, types and architecture: ruff, mypy (strict on parcelguard.device, pyproject.toml), the
# layer contracts (import-linter) and the no-cycles test. mypy reads the card's folders through
# build/typecheck/parcelguard/<folder> symlinks, the names they install under.
TYPECHECK := build/typecheck/parcelguard
MYPY_PACKAGES := device train export cli workflows

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	mkdir -p $(TYPECHECK)
	for p in $(MYPY_PACKAGES); do ln -sfn ../../../$$p $(TYPECHECK)/$$p; done
	$(BIN)/mypy $(foreach p,$(MYPY_PACKAGES),-p parcelguard.$(p))
	$(BIN)/lint-imports
	$(BIN)/python -m pytest -q -p no:cacheprovider tests/system/test_architecture.py tests/system/test_code_size.py

format: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

bench: $(STAMP)
	$(BIN)/python benchmarks/run_all.py

clean:
	rm -rf runs build dist *.egg-info .pytest_cache

# Container images (docs/deploy.md). Build from the repo root; BuildKit reads docker/<file>.dockerignore.
# docker-pi cross-builds for arm64 (QEMU binfmt on an x86 host); build docker-jetson on the Jetson.
DOCKER ?= docker
IMAGE ?= parcelguard

docker-train:
	$(DOCKER) build -f docker/Dockerfile.train -t $(IMAGE):train .

docker-pi:
	$(DOCKER) buildx build --platform linux/arm64 -f docker/Dockerfile.pi -t $(IMAGE):pi --load .

docker-jetson:
	$(DOCKER) build -f docker/Dockerfile.jetson -t $(IMAGE):jetson .
