# Build and test the book. On a fresh machine the first `make test` or
# `make book` creates .venv and installs everything; later runs skip the
# installs while pyproject.toml (and the torch pin below) are unchanged.
#
#   make test                                  # the whole test suite
#   make book                                  # PROFILE=quick DEVICE=auto, the papers' datasets (MNIST via pip)
#   make book PROFILE=smoke DATASET=fashion-mnist
#   make book PROFILE=paper DEVICE=cuda        # paper scale, on a GPU
#   make book JOBS=2                           # two notebooks at once (default: one per GPU, else per core)
#   make lab                                   # JupyterLab on notebooks/ (PORT=8888)

PYTHON   ?= python3
VENV     ?= .venv
PROFILE  ?= quick
DEVICE   ?= auto
DATASET  ?=
SEED     ?= 0
# Notebooks executed at once; empty: one per GPU, else the CPU cores divided by one notebook's threads.
JOBS     ?=
# torch and torchvision are installed first and explicitly: a looser spec makes
# pip pick a newer multi-GB build; these two lie on the machines' disk.
TORCH_SPEC ?= torch==2.14.1 torchvision==0.29.1
# lab: JupyterLab for `make lab` (the notebooks themselves need the book extra: myst-nb's glue).
EXTRAS   ?= test,book,lab
# `make lab`: the port, and any other option for JupyterLab (e.g. LAB_ARGS=--no-browser).
PORT     ?= 8888
LAB_ARGS ?=

VPY   := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: setup test book book-smoke lab clean-book clean help

help:
	@echo "make test                    run the whole test suite (builds a smoke book, opens it in Chromium)"
	@echo "make book [PROFILE=quick] [DEVICE=auto] [DATASET=] [SEED=0] [JOBS=]"
	@echo "                             execute every notebook and build the HTML into _build/html;"
	@echo "                             JOBS notebooks at once (empty: one per GPU, else cores / threads per notebook)"
	@echo "make setup                   create $(VENV) and install the project"
	@echo "make lab [PORT=8888]         set up, then open JupyterLab on notebooks/ (stop it with Ctrl-C)"
	@echo "                             CLUTILS_PROFILE=smoke CLUTILS_DATASET=fashion-mnist make lab: small, offline"
	@echo "make clean-book              remove _build (executed notebooks, HTML, screenshots)"

# The stamp records what was installed; it is remade when pyproject.toml, this
# Makefile's torch pin or the extras change.
$(STAMP): pyproject.toml
	@test -x $(VPY) || $(PYTHON) -m venv $(VENV)
	$(VPY) -m pip install $(TORCH_SPEC)
	$(VPY) -m pip install -e ".[$(EXTRAS)]"
	@echo "$(TORCH_SPEC) [$(EXTRAS)]" > $@

# Re-install when the pin or the extras differ from what the stamp recorded.
ifneq ($(wildcard $(STAMP)),)
ifneq ($(shell cat $(STAMP) 2>/dev/null),$(TORCH_SPEC) [$(EXTRAS)])
.PHONY: $(STAMP)
endif
endif

setup: $(STAMP)

test: $(STAMP)
	$(VPY) -m pytest

book: $(STAMP)
	$(VPY) tools/build_book.py --profile "$(PROFILE)" --device "$(DEVICE)" --dataset "$(DATASET)" --seed "$(SEED)" --jobs "$(JOBS)"

# JupyterLab on notebooks/, with this project's kernel. The parameters cell of every notebook
# reads CLUTILS_PROFILE, CLUTILS_DEVICE, CLUTILS_SEED and CLUTILS_DATASET as its defaults.
# As root (a container), JupyterLab refuses to start without --allow-root.
lab: $(STAMP)
	$(VPY) -m jupyterlab --ServerApp.root_dir=notebooks --port=$(PORT) $(if $(filter 0,$(shell id -u)),--allow-root) $(LAB_ARGS)

book-smoke:
	$(MAKE) book PROFILE=smoke DATASET=$(if $(DATASET),$(DATASET),fashion-mnist)

clean-book:
	rm -rf _build

clean: clean-book
	rm -rf $(VENV) .cache
