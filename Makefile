# Makefile: the two commands (make demo, make test) and the rest of the developer workflow.
# Every target that builds or tests runs scripts/setup first, which installs only what is missing.
RILL_MODELS ?= $(HOME)/.cache/rill/models
export RILL_MODELS
JOBS ?= $(shell nproc)
CMAKE_FLAGS ?=
ifeq ($(CI),true)
CMAKE_FLAGS += -DRILL_WERROR=ON
endif
DEMO_MODEL = $(RILL_MODELS)/SmolLM2-135M-Instruct.Q4_1.gguf
DEMO_PROMPT ?= Why is the sky blue? Answer in three sentences.

.PHONY: all setup build test test-asan demo models format clean

all: build

setup:
	@scripts/setup

build: setup
	@cmake -S . -B build -DCMAKE_BUILD_TYPE=Release $(CMAKE_FLAGS) >/dev/null
	@cmake --build build -j $(JOBS)

models: setup
	@scripts/fetch-models

test: build models
	@ctest --test-dir build --output-on-failure -j $(JOBS)

test-asan: setup models
	@cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=Debug -DRILL_SANITIZE=ON $(CMAKE_FLAGS) >/dev/null
	@cmake --build build-asan -j $(JOBS)
	@ASAN_OPTIONS=detect_leaks=1:abort_on_error=0 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
		ctest --test-dir build-asan --output-on-failure -j $(JOBS)

demo: build models
	build/bin/rill generate --model $(DEMO_MODEL) --prompt "$(DEMO_PROMPT)" --max-tokens 100

format:
	@clang-format -i $$(git ls-files '*.c' '*.h')

clean:
	rm -rf build build-asan
