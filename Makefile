# Two commands set everything up on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-dev

# Zero-shot CLIP by default; point DEMO_PRETRAINED at a local open_clip checkpoint, or
# DEMO_STUDENT at a student directory, when the model hub cannot be reached. The demo exports a
# bundle once into DEMO_BUNDLE (again only when the model or classes change), then streams the
# clip through `froster-edge run`. When the CLIP weights are unreachable (no network, nothing
# cached), it says so in one line and runs the offline pipeline instead: it trains the tiny
# recipe on the bundled clips into DEMO_OFFLINE (once), exports it and streams the same clip.
DEMO_MODEL ?= ViT-B-16
DEMO_PRETRAINED ?= openai
DEMO_STUDENT ?=
DEMO_CLIP ?= examples/clips/stgcn_clean_and_jerk.mp4
DEMO_CLASSES ?= examples/clips/classes.txt
DEMO_BUNDLE ?= runs/demo-bundle
DEMO_RECIPE ?= configs/tiny.yaml
DEMO_OFFLINE ?= runs/demo-offline
DEMO_MODEL_ARGS = $(if $(DEMO_STUDENT),--student $(DEMO_STUDENT),--model $(DEMO_MODEL) --pretrained $(DEMO_PRETRAINED))
FE := $(VENV)/bin/froster-edge

.PHONY: install lint test soak demo device-wheels clean

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q -e '.[dev]'
	touch $(STAMP)

lint: install
	$(VENV)/bin/ruff check .

test: install lint
	$(PY) -m pytest -q

# the long soaks (a 60 s real-time run, a two-camera site for 10 minutes): not in `make test`
soak: install
	$(PY) -m pytest -q -m slow

demo: install
	@set -e; \
	online=0; [ -n "$(DEMO_STUDENT)" ] || $(PY) -m froster_edge.demo $(DEMO_MODEL) $(DEMO_PRETRAINED) || online=$$?; \
	if [ "$$online" = 0 ]; then \
		bundle="$(DEMO_BUNDLE)"; args="$(DEMO_MODEL_ARGS) --classes $(DEMO_CLASSES)"; \
		if [ "$$(cat $$bundle/.demo-args 2>/dev/null)" != "$$args" ]; then \
			$(FE) export -o $$bundle $(DEMO_MODEL_ARGS) --classes $(DEMO_CLASSES) --videos examples/clips; \
			echo "$$args" > $$bundle/.demo-args; \
		else echo "using $$bundle, exported before from $(DEMO_MODEL_ARGS)"; fi; \
	elif [ "$$online" = 10 ]; then \
		bundle="$(DEMO_OFFLINE)/bundle"; args="$(DEMO_RECIPE) --classes $(DEMO_CLASSES)"; \
		if [ "$$(cat $$bundle/.demo-args 2>/dev/null)" != "$$args" ]; then \
			rm -rf $(DEMO_OFFLINE)/train; \
			$(FE) train $(DEMO_RECIPE) --out $(DEMO_OFFLINE)/train; \
			$(FE) export -o $$bundle --student $(DEMO_OFFLINE)/train/student --classes $(DEMO_CLASSES) --videos $(DEMO_CLIP) --no-fp16; \
			echo "$$args" > $$bundle/.demo-args; \
		else echo "using $$bundle, trained and exported before from $(DEMO_RECIPE)"; fi; \
		echo "froster-edge demo: the tiny student was trained on five clips from random weights: what follows shows the pipeline working, not accuracy"; \
	else exit $$online; fi; \
	$(FE) run --bundle $$bundle --source $(DEMO_CLIP)

# The five packages a typical GPU image (Python 3.12, torch, onnx, onnxruntime, cuda-bindings, opencv,
# tokenizers, pytest) lacks, as wheels for scripts/device_check.sh to install offline (docs/gpu.md).
# Wheels only, no dependencies (the image has them); av needs the manylinux_2_17/2_28 tags.
DEVICE_WHEELS ?= wheels
DEVICE_PY ?= 3.12
device-wheels:
	$(PYTHON) -m pip download --no-deps --only-binary=:all: --python-version $(DEVICE_PY) \
		--platform manylinux2014_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux_2_28_x86_64 \
		-d $(DEVICE_WHEELS) open_clip_torch ftfy wcwidth av paho-mqtt
	@du -ch $(DEVICE_WHEELS)/*.whl | tail -1

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
