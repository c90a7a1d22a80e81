# The two commands of the README. Each installs whatever is missing first.
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: demo test setup lint screenshots bench
setup:
	bash scripts/bootstrap.sh test

demo: setup
	bash scripts/demo.sh

test: setup
	bash scripts/run_tests.sh

screenshots: setup
	bash scripts/screenshots.sh
