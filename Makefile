# The two commands a newcomer needs: `make run` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test venv db demo bench clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

venv: $(STAMP)

db: venv
	$(BIN)/giaitrinh db upgrade

demo: db
	$(BIN)/giaitrinh seed-demo

# Set up everything and start the web server with its scheduler on http://127.0.0.1:8000
run: demo
	GIAITRINH_DEV_CLOCK=$${GIAITRINH_DEV_CLOCK:-1} $(BIN)/giaitrinh serve --host 127.0.0.1 --port 8000

test: venv
	$(BIN)/python -m pytest

bench: venv
	$(BIN)/python bench/lifecycle.py

clean:
	rm -rf $(VENV) instance
