# Two commands do all the set-up on a fresh machine:
#   make demo   - creates .venv, installs storebridge, runs examples/quickstart.py on the embedded defaults
#   make test   - creates .venv, installs storebridge with its test extras, runs the whole test suite
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PYTEST_ARGS ?=

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.installed-core: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e .
	touch $@

$(VENV)/.installed-test: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e ".[test]"
	touch $@ $(VENV)/.installed-core

$(VENV)/.installed-bench: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e ".[test,bench]"
	touch $@ $(VENV)/.installed-test $(VENV)/.installed-core

.PHONY: demo test bench bench-knowledge clean
demo: $(VENV)/.installed-core
	$(BIN)/python examples/quickstart.py

test: $(VENV)/.installed-test
	mkdir -p reports
	$(BIN)/python -m pytest --junitxml=reports/junit.xml $(PYTEST_ARGS)

bench: $(VENV)/.installed-test
	$(BIN)/python benchmarks/bench_knowledge_search.py
	$(BIN)/python benchmarks/bench_conversation.py
	$(BIN)/python benchmarks/bench_conversation_sql.py
	$(BIN)/python benchmarks/bench_import.py

# Every knowledge backend through storebridge, its own client and its LangChain integration (about two
# hours on 2 cores; BENCH_ARGS="--n 2000 --queries 20" for a quick look). Results: benchmarks/RESULTS.md.
bench-knowledge: $(VENV)/.installed-bench
	$(BIN)/python benchmarks/bench_knowledge_backends.py $(BENCH_ARGS)

clean:
	rm -rf $(VENV) reports .pytest_cache
