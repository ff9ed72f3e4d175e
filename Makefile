# make serve: set up and start the emulator on its embedded default VM.
# make test:  set up (system packages included) and run the whole suite.
# make bench: set up and run the benchmarks.
# make image: build the container image with podman, here without a registry (README 'Container image').
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
ARGS   ?=

.PHONY: serve test lint bench fuzz sysdeps image clean

$(VENV)/.created:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	touch $@

# serve needs the package and its emulator extra; the tests need their extra too.
$(VENV)/.serve: pyproject.toml $(VENV)/.created
	$(BIN)/pip install --quiet -e '.[emulator]'
	touch $@

$(VENV)/.installed: pyproject.toml $(VENV)/.created
	$(BIN)/pip install --quiet -e '.[emulator,test]'
	touch $@

serve: $(VENV)/.serve
	$(BIN)/azimds serve $(ARGS)

sysdeps:
	@bash scripts/sysdeps.sh

test: $(VENV)/.installed sysdeps lint
	$(BIN)/python -m pytest $(PYTEST_ARGS)

lint: $(VENV)/.installed
	$(BIN)/ruff check src tests bench examples scripts
	$(BIN)/mypy

fuzz: $(VENV)/.installed
	$(BIN)/python scripts/fuzz.py $(ARGS)

# The wheels are built by the virtualenv's Python, which must be the image's (Debian 12: 3.11; the script checks).
image: $(VENV)/.created
	PYTHON=$(abspath $(BIN))/python bash scripts/image.sh

bench: $(VENV)/.installed sysdeps
	$(BIN)/python bench/run.py $(ARGS)

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis
