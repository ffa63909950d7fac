# The two commands of the README. Each sets everything up first (idempotent).
.PHONY: demo test setup lint

setup:
	@bash scripts/setup.sh

demo: setup
	@KERAS_BACKEND=$${KERAS_BACKEND:-jax} .venv/bin/ei-keras demo

test: setup
	@bash scripts/test_all_backends.sh

lint: setup
	@.venv/bin/ruff check ei_keras tests recipes bench
