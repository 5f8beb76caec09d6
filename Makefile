# Two commands do all the set-up on a fresh machine:
#   make book   build the HTML book into _build/html
#   make test   run the whole test suite
# and one for maintainers:
#   make test-fast   the unit tests only (no chapter, no exercise, no book build)
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
MATHJAX := _mathjax/_static/mathjax/tex-chtml.js

.PHONY: book test test-fast browser sandbox data clean

# requirements.lock is the lock file (every package pinned, with hashes; README says how to
# refresh it from requirements.in), so pip installs exactly those versions and checks each hash;
# requirements-nodeps.lock pins, with hashes too, the data-only packages installed without their
# dependencies.
$(STAMP): requirements.lock requirements-nodeps.lock pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q -r requirements.lock
	$(PY) -m pip install -q --no-deps -r requirements-nodeps.lock
	$(PY) -m pip install -q --no-deps --no-build-isolation -e .
	touch $@

# MathJax 3 ships inside a PyPI package; the book serves it from its own pages (offline math).
# html_extra_path copies _mathjax/ into _build/html/, and Sphinx looks for mathjax_path under _static/.
$(MATHJAX): $(STAMP)
	rm -rf _mathjax && mkdir -p _mathjax/_static
	cp -r "$$($(PY) -c 'import mathjax, pathlib; print(pathlib.Path(mathjax.__file__).parent / "static" / "mathjax" / "es5")')" _mathjax/_static/mathjax
	touch $@

book: $(STAMP) $(MATHJAX) data
	$(VENV)/bin/jupyter-book build . -W -n --keep-going

# Headless Chromium for the browser test (Debian packages; needs root or sudo).
browser:
	@command -v chromium >/dev/null && command -v chromedriver >/dev/null || \
	  { apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium chromium-driver; }

# bubblewrap, the sandbox of the course's grader (python -m grader; a Debian package; needs root or sudo).
sandbox:
	@command -v bwrap >/dev/null || \
	  { apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q bubblewrap; }

# Fashion-MNIST, chapter 8's real photos to fine-tune on (a Debian package; needs root or sudo).
FASHION_MNIST := /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz
data:
	@test -f $(FASHION_MNIST) || \
	  { apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q dataset-fashion-mnist; }

# Two pytest runs, so that each chapter executes once: the first runs the unit tests, the
# exercises' grading and every chapter under nbval, in two processes that share the work by units
# (an assignment, a chapter, a test file: tests/conftest.py), each chapter stored in the book's
# execution cache by book/conftest.py; the second builds the book from that cache and checks it in
# a browser and in JupyterLab. OMP_WAIT_POLICY=PASSIVE: the first run keeps more threads busy than
# there are cores (two pytest processes, each kernel's torch threads, the grader's workers), and
# OpenMP threads that spin while they wait then take the cores from those with work: three
# 2-thread torch trainings at once on 2 cores took 5.5 s each, 2.1 s with passive waiting (0.8 s
# alone). The thread counts, and so the numbers, are unchanged.
test: $(STAMP) $(MATHJAX) browser sandbox data
	OMP_WAIT_POLICY=PASSIVE $(PY) -m pytest -n 2 --dist loadscope -m "not book" --durations=15
	$(PY) -m pytest -m book --durations=5

test-fast: $(STAMP) data
	$(PY) -m pytest tests -m "not slow"

clean:
	rm -rf _build _mathjax
