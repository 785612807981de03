# StoryShade: two commands.
#   make demo   set everything up in .venv/ and run the demo (a shaded sample shot)
#   make test   set everything up in .venv/ and run every test
# Both are idempotent: a second run reuses .venv/ and only reinstalls when pyproject changes.

PYTHON ?= python3.11
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.storyshade-installed
# torch first, pinned, so pip never pulls a different multi-GB build; override for your CUDA.
TORCH  ?= torch==2.14.1 torchvision==0.29.1
# Test processes: one per core (this size of machine has 2); each runs torch on one thread,
# so two never fight over a core. loadscope keeps a test module (and its one tiny pipeline,
# or the one Ray cluster) in one process.
WORKERS ?= 2

.PHONY: setup browser demo demo-sequence test test-nightly lint extension clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	@command -v $(PYTHON) >/dev/null || { echo "StoryShade needs $(PYTHON) (Python 3.11, as Blender 4.2-5.0 use)"; exit 1; }
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q $(TORCH)
	$(BIN)/python -m pip install -q -e ".[dev]"
	@touch $(STAMP)

demo: $(STAMP)
	$(BIN)/python demo/run_demo.py

# The demo as an edit of three shots: Shade Sequence, a re-shade, the sequence's sheet.
demo-sequence: $(STAMP)
	$(BIN)/python demo/run_sequence.py

# Chromium (Debian's package) for the review page's browser test; best effort: without it
# (not root, no apt) that one test is skipped and says why.
browser:
	@command -v chromium >/dev/null || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null && \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
	  --no-install-recommends chromium >/dev/null; } || echo "note: no Chromium; the review page's browser test will be skipped"

test: $(STAMP) browser
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	OMP_NUM_THREADS=1 $(BIN)/python -m pytest -n $(WORKERS) --dist loadscope
	bash scripts/test_bpy42.sh

# Long runs (300 random OpenAPI examples per operation, the full settings walk): nightly CI.
test-nightly: $(STAMP)
	$(BIN)/python -m pytest -m nightly

extension: $(STAMP)
	@mkdir -p dist
	$(BIN)/python $$($(BIN)/python -c "import bpy,pathlib;print(next(pathlib.Path(bpy.__file__).parent.glob('*/scripts/addons_core/bl_pkg/cli/blender_ext.py')))") \
		build --source-dir . --output-dir dist

clean:
	rm -rf $(VENV) dist demo-out .pytest_cache
