# Two commands set everything up on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-dev

# Zero-shot CLIP by default; point DEMO_PRETRAINED at a local open_clip checkpoint, or
# DEMO_STUDENT at a student directory, when the model hub cannot be reached.
DEMO_MODEL ?= ViT-B-16
DEMO_PRETRAINED ?= openai
DEMO_STUDENT ?=
DEMO_CLIP ?= examples/clips/stgcn_clean_and_jerk.mp4
DEMO_CLASSES ?= examples/clips/classes.txt

.PHONY: install test demo clean

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q -e '.[dev]'
	touch $(STAMP)

test: install
	$(PY) -m pytest -q

demo: install
	$(VENV)/bin/froster-edge info
	$(VENV)/bin/froster-edge predict $(DEMO_CLIP) --classes $(DEMO_CLASSES) \
		$(if $(DEMO_STUDENT),--student $(DEMO_STUDENT),--model $(DEMO_MODEL) --pretrained $(DEMO_PRETRAINED))

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
