# hopbench: `make demo` and `make test` each set up what they need by themselves.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: venv demo test test-slow test-compose lock arm64-check arm64-build lint bench bench-quick wrk chromium compose-cli proto clean

venv: $(STAMP)

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "hopbench needs Python 3.11 or newer")'
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

demo: venv
	rm -rf results/demo
	$(BIN)/hopbench compare suites/quick.yaml --out results/demo

lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports

# the tests that measure or list processes run alone first (tests/conftest.py, SERIAL);
# then the rest on two workers; both always run, and either failing fails the target
test: lint chromium compose-cli
	@status=0; \
	$(BIN)/python -m pytest -m "not slow and not compose and serial" --durations=15 || status=1; \
	$(BIN)/python -m pytest -m "not slow and not compose and not serial" -n 2 --durations=15 || status=1; \
	exit $$status

# The committed docker-compose.yml under a real Docker engine: the one running, or
# Debian's, installed and started in a network namespace of its own with local
# stand-ins for the registry images (docs/deployment.md). As root; CI runs it after
# `make test`.
test-compose: venv
	HOPBENCH_TEST_COMPOSE=1 $(BIN)/python -m pytest -s -m compose tests/test_compose_engine.py

# requirements.lock: every dependency of the image pinned with its hashes, for every
# platform (the image builds on amd64 and arm64)
lock: venv
	$(BIN)/uv pip compile pyproject.toml requirements.in --universal --python-version 3.11 \
		--generate-hashes --custom-compile-command "make lock" --quiet -o requirements.lock

# which pinned dependencies have no aarch64 wheel (the Dockerfile's build stage builds them)
arm64-check: venv
	$(BIN)/python -m tests.arm64_wheels requirements.lock

# the image built for arm64 from the Dockerfile and run, under emulation: Debian's
# qemu-user-static, registered with binfmt_misc while it runs, in a private engine
# with arm64 stand-ins for the base images (docs/deployment.md). As root; not part of
# `make test` or `make test-compose`; it removes what it started, even on failure.
arm64-build: venv
	HOPBENCH_TEST_ARM64=1 $(BIN)/python -m pytest -s -m arm64 tests/test_arm64_image.py

test-slow: venv
	$(BIN)/python -m pytest -m slow

# Ratios against baselines measured in the same run; figures land in bench/RESULTS.md.
# bench-memory alone takes about 12 minutes.
bench: venv wrk
	$(BIN)/python -m bench.generator_cost
	$(BIN)/python -m bench.generator_capacity
	$(BIN)/python -m bench.overhead
	$(BIN)/python -m bench.coordinated_omission
	$(BIN)/python -m bench.hop_stamps
	$(BIN)/python -m bench.rabbitmq_clients
	$(BIN)/python -m bench.sampling
	$(BIN)/python -m bench.memory

bench-quick: venv wrk
	$(BIN)/python -m bench.generator_capacity
	$(BIN)/python -m bench.coordinated_omission

# the baseline of bench/generator_capacity.py, from Debian's packages
wrk:
	@command -v wrk >/dev/null || apt-get install -y -q wrk || \
		(echo "bench needs wrk: install Debian's wrk package" && false)

# the report's browser test (tests/test_report_page.py) renders report.html in Debian's
# headless chromium; without apt-get that test skips and says why, and make test goes on
chromium:
	@command -v chromium >/dev/null || apt-get install -y -q chromium || \
		echo "no chromium (apt-get failed): the report's browser test will skip"

# `docker-compose config` checks the rendered compose files (tests/test_render.py)
compose-cli:
	@command -v docker-compose >/dev/null || apt-get install -y -q --no-install-recommends docker-compose || \
		echo "no docker-compose (apt-get failed): the compose file checks will skip"

proto: venv
	$(BIN)/python -m hopbench.proto.generate

clean:
	rm -rf $(VENV) results .mypy_cache .ruff_cache .pytest_cache
