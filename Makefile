# The README's commands live here. `make test` installs everything it needs into .venv first.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export YOLO_OFFLINE := 1
export PIP_DISABLE_PIP_VERSION_CHECK := 1

.PHONY: install test demo bench lint clean

install: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q -c constraints.txt -e '.[cpu,train,dev]'
	touch $(STAMP)

test: install
	$(BIN)/python -m pytest -q -ra

lint: install
	$(BIN)/ruff check edge_rt tests
	$(BIN)/mypy edge_rt

demo: install
	$(BIN)/edge-rt demo

bench: install
	@echo "make bench: the benchmark suite lands with issue 4."

clean:
	rm -rf $(VENV) .pytest_cache build *.egg-info
