# Two commands set everything up on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-dev

# Zero-shot CLIP by default; point DEMO_PRETRAINED at a local open_clip checkpoint, or
# DEMO_STUDENT at a student directory, when the model hub cannot be reached. The demo exports a
# bundle once into DEMO_BUNDLE (again only when the model or classes change), then streams the
# clip through `froster-edge run`.
DEMO_MODEL ?= ViT-B-16
DEMO_PRETRAINED ?= openai
DEMO_STUDENT ?=
DEMO_CLIP ?= examples/clips/stgcn_clean_and_jerk.mp4
DEMO_CLASSES ?= examples/clips/classes.txt
DEMO_BUNDLE ?= runs/demo-bundle
DEMO_MODEL_ARGS = $(if $(DEMO_STUDENT),--student $(DEMO_STUDENT),--model $(DEMO_MODEL) --pretrained $(DEMO_PRETRAINED))

.PHONY: install lint test demo clean

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q -e '.[dev]'
	touch $(STAMP)

lint: install
	$(VENV)/bin/ruff check .

test: install lint
	$(PY) -m pytest -q

demo: install
	@if [ "$$(cat $(DEMO_BUNDLE)/.demo-args 2>/dev/null)" != "$(DEMO_MODEL_ARGS) --classes $(DEMO_CLASSES)" ]; then \
		$(VENV)/bin/froster-edge export -o $(DEMO_BUNDLE) $(DEMO_MODEL_ARGS) --classes $(DEMO_CLASSES) --videos examples/clips \
		&& echo "$(DEMO_MODEL_ARGS) --classes $(DEMO_CLASSES)" > $(DEMO_BUNDLE)/.demo-args; \
	else echo "using $(DEMO_BUNDLE), exported before from $(DEMO_MODEL_ARGS)"; fi
	$(VENV)/bin/froster-edge run --bundle $(DEMO_BUNDLE) --source $(DEMO_CLIP)

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
