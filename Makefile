# Every target sets up what it needs from nothing: the system library open3d needs, a virtual
# environment in .venv and the package with its dependencies.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.nerfsim-installed
OUT ?= demo_out

.PHONY: setup demo test test-fast bench clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	@bash .ci/setup.sh $(VENV)
	@touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/nerfsim demo --out $(OUT)

test: $(STAMP)
	$(PY) -m pytest -q

test-fast: $(STAMP)
	$(PY) -m pytest -q -m "not slow"

bench: $(STAMP)
	$(PY) -m bench.run

clean:
	rm -rf $(VENV) $(OUT) .pytest_cache
