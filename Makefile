# Deep Generative Models Workbook
#   make run    set up .venv, execute every notebook from the shipped weights, write reports/*.pdf
#               (helpers/report.py: progress bars left out, each widget a one-line note after its static figure)
#   make test   set up .venv, run the unit tests and nbval over every notebook
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
NOTEBOOKS := $(sort $(wildcard notebooks/[0-9]*.ipynb))
PDF_PACKAGES := texlive-xetex texlive-fonts-recommended texlive-plain-generic pandoc

# MNIST comes from $DGM_DATA_DIR; beside a course checkout, ../shared/data holds it.
ifeq ($(strip $(DGM_DATA_DIR)),)
ifneq ($(wildcard ../shared/data/MNIST/raw),)
export DGM_DATA_DIR := $(abspath ../shared/data)
endif
endif
export MPLBACKEND := Agg
# glibc: keep freed memory in the process, so large CPU activations are not unmapped and zeroed
# again at every layer (halves the CPU time of batched decoding; see settings.keep_freed_memory)
export MALLOC_MMAP_THRESHOLD_ := 1073741824
export MALLOC_TRIM_THRESHOLD_ := 2147483647

.PHONY: run test unit nbval venv pdf-tools clean

venv: $(STAMP)

$(STAMP): requirements.txt pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 10) else "Python 3.10 or newer is needed, found " + sys.version.split()[0])'
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	touch $(STAMP)

pdf-tools:
	@missing=""; \
	command -v xelatex >/dev/null || missing="$$missing xelatex"; \
	command -v pandoc >/dev/null || missing="$$missing pandoc"; \
	if [ -n "$$missing" ]; then \
	  echo "PDF export needs$$missing. Install the system packages first:"; \
	  echo "    sudo apt-get install $(PDF_PACKAGES)"; \
	  exit 1; \
	fi

run: pdf-tools $(STAMP)
	mkdir -p reports
	for nb in $(NOTEBOOKS); do \
	  $(PY) -m jupyter nbconvert --to pdf --execute --ExecutePreprocessor.timeout=1800 \
	    --PDFExporter.preprocessors=helpers.report.WidgetOutputsPreprocessor \
	    --output-dir reports "$$nb" || exit 1; \
	done
	@ls -l reports/*.pdf

unit: $(STAMP)
	$(PY) -m pytest tests

nbval: $(STAMP)
	$(PY) -m pytest --nbval-lax --nbval-current-env -p no:randomly $(NOTEBOOKS)

test: unit nbval

clean:
	rm -rf reports/*.pdf .pytest_cache
