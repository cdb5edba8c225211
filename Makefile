# Build and test the book. On a fresh machine the first `make test` or
# `make book` creates .venv and installs everything; later runs skip the
# installs while pyproject.toml (and the torch pin below) are unchanged.
#
#   make test                                  # the whole test suite
#   make book                                  # PROFILE=quick DEVICE=auto, the papers' datasets (MNIST via pip)
#   make book PROFILE=smoke DATASET=fashion-mnist
#   make book PROFILE=paper DEVICE=cuda        # paper scale, on a GPU
#   make book JOBS=2                           # two notebooks at once (default: one per GPU, else per core)

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
EXTRAS   ?= test,book

VPY   := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: setup test book book-smoke clean-book clean help

help:
	@echo "make test                    run the whole test suite (builds a smoke book, opens it in Chromium)"
	@echo "make book [PROFILE=quick] [DEVICE=auto] [DATASET=] [SEED=0] [JOBS=]"
	@echo "                             execute every notebook and build the HTML into _build/html;"
	@echo "                             JOBS notebooks at once (empty: one per GPU, else cores / threads per notebook)"
	@echo "make setup                   create $(VENV) and install the project"
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

book-smoke:
	$(MAKE) book PROFILE=smoke DATASET=$(if $(DATASET),$(DATASET),fashion-mnist)

clean-book:
	rm -rf _build

clean: clean-book
	rm -rf $(VENV) .cache
