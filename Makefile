# The two commands of the README. Each sets everything up first (idempotent).
.PHONY: demo test setup lint docs docs-serve results

setup:
	@bash scripts/setup.sh

demo: setup
	@KERAS_BACKEND=$${KERAS_BACKEND:-jax} .venv/bin/ei-keras demo

test: setup
	@bash scripts/test_all_backends.sh

# The README's results tables (<!-- results:NAME --> blocks), regenerated from the committed
# run directories under docs/results/ (tests/test_protocol.py checks they are current).
results: setup
	@.venv/bin/python -m ei_keras.analysis.readme README.md

lint: setup
	@.venv/bin/ruff check ei_keras tests recipes bench

# The docs site (mkdocs-material + mkdocstrings), strict: any warning fails. Output: site/.
# Built from its own small venv (.venv-docs: no Keras, no backend), then checked: no raw reST
# in the pages, code lines wrapped (scripts/check_site.py).
docs:
	@bash scripts/setup.sh --docs
	@NO_MKDOCS_2_WARNING=1 .venv-docs/bin/mkdocs build --strict --clean
	@.venv-docs/bin/python scripts/check_site.py site

docs-serve:
	@bash scripts/setup.sh --docs
	@NO_MKDOCS_2_WARNING=1 .venv-docs/bin/mkdocs serve
