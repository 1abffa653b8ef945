# make book  -- install into .venv (first use), execute every notebook with papermill, build the HTML book
# make test  -- install into .venv (first use), run the unit tests, the notebooks and the book build
VENV   ?= .venv
PY     := $(VENV)/bin/python
SCALE  ?= tiny
PYTHON ?= python3

.PHONY: book test venv clean

venv: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e ".[test,book,paper]"
	touch $@

book: $(VENV)/.installed
	$(PY) tools/build_book.py --scale $(SCALE)

test: $(VENV)/.installed
	$(PY) -m pytest -q -ra --durations=15

clean:
	rm -rf _build .pytest_cache
