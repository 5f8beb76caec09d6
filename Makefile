# Two commands do all the set-up on a fresh machine:
#   make book   build the HTML book into _build/html
#   make test   run the whole test suite
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
MATHJAX := _mathjax/_static/mathjax/tex-chtml.js

.PHONY: book test browser clean

$(STAMP): requirements.txt pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements.txt
	$(PY) -m pip install -q --no-deps -e .
	touch $@

# MathJax 3 ships inside a PyPI package; the book serves it from its own pages (offline math).
# html_extra_path copies _mathjax/ into _build/html/, and Sphinx looks for mathjax_path under _static/.
$(MATHJAX): $(STAMP)
	rm -rf _mathjax && mkdir -p _mathjax/_static
	cp -r "$$($(PY) -c 'import mathjax, pathlib; print(pathlib.Path(mathjax.__file__).parent / "static" / "mathjax" / "es5")')" _mathjax/_static/mathjax
	touch $@

book: $(STAMP) $(MATHJAX)
	$(VENV)/bin/jupyter-book build . -W -n --keep-going

# Headless Chromium for the browser test (Debian packages; needs root or sudo).
browser:
	@command -v chromium >/dev/null && command -v chromedriver >/dev/null || \
	  { apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium chromium-driver; }

test: $(STAMP) $(MATHJAX) browser
	$(PY) -m pytest

clean:
	rm -rf _build _mathjax
