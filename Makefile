# cergw: one non-recursive Makefile. Build variants live in separate folders
# so flags never mix: build/ (release), build/asan/ (ASan+UBSan), build/fuzz/.
.DEFAULT_GOAL := all
SHELL := /bin/bash

CC ?= cc
PKGS := libevent_openssl libevent_pthreads libnghttp2 openssl yajl libxml-2.0 libxslt libexslt sqlite3 libcurl libpq
DEB_PACKAGES := build-essential pkg-config clang libclang-rt-14-dev openssl curl \
  libevent-dev libnghttp2-dev libssl-dev libyajl-dev libhttp-parser-dev libcunit1-dev \
  libxml2-dev libxslt1-dev libsqlite3-dev sqlite3 libcurl4-openssl-dev nghttp2-client nghttp2-server valgrind clang-format procps xsltproc \
  libjemalloc-dev gsoap libgsoap-dev libpq-dev postgresql chromium

# -Wno-format-truncation: every snprintf into a fixed field truncates on purpose
WARN := -Wall -Wextra -Werror -Wshadow -Wstrict-prototypes -Wmissing-prototypes -Wformat=2 \
  -Wno-format-nonliteral -Wno-format-truncation
BASE_CFLAGS := -std=gnu11 -D_GNU_SOURCE -Igateway -MMD -MP $(WARN)
PKG_CFLAGS = $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS = $(shell pkg-config --libs $(PKGS) 2>/dev/null) -lhttp_parser -lpthread

SRC := $(shell find gateway -name '*.c' -not -name main.c | sort)
MAIN := gateway/main.c
UNIT_SRC := $(shell find tests/unit -name '*.c' | sort)

# variant: folder and flags
B := build
REL_FLAGS := -O2 -g
ASAN_FLAGS := -O1 -g -fno-omit-frame-pointer -fsanitize=address,undefined -fno-sanitize-recover=undefined
# The release programs allocate through jemalloc: libxml2 allocates per node, and glibc's malloc was a
# fifth of the gateway's CPU under load (docs/architecture.md). Not in the ASan build (ASan brings its
# own allocator) nor in unit-tests (valgrind checks glibc's).
REL_ALLOC = $(shell pkg-config --libs jemalloc 2>/dev/null)

define variant
$(1)/obj/%.o: %.c
	@mkdir -p $$(dir $$@)
	@echo "  CC    $$@"
	@$$(CC) $$(BASE_CFLAGS) $(2) $$(PKG_CFLAGS) $$(CFLAGS) -c $$< -o $$@
$(1)/cergw: $$(patsubst %.c,$(1)/obj/%.o,$$(SRC) $$(MAIN))
	@echo "  LD    $$@"
	@$$(CC) $(2) $$^ -o $$@ $$(PKG_LIBS) $(3) $$(LDFLAGS)
$(1)/unit-tests: $$(patsubst %.c,$(1)/obj/%.o,$$(SRC) $$(UNIT_SRC))
	@echo "  LD    $$@"
	@$$(CC) $(2) $$^ -o $$@ $$(PKG_LIBS) -lcunit $$(LDFLAGS)
$(1)/bench_translate: $$(patsubst %.c,$(1)/obj/%.o,$$(SRC)) $(1)/obj/tools/bench_translate.o
	@echo "  LD    $$@"
	@$$(CC) $(2) $$^ -o $$@ $$(PKG_LIBS) $(3) $$(LDFLAGS)
$(1)/loadgen: $(1)/obj/tools/loadgen.o
	@echo "  LD    $$@"
	@$$(CC) $(2) $$^ -o $$@ $$(PKG_LIBS) $$(LDFLAGS)
endef
$(eval $(call variant,$(B),$(REL_FLAGS),$(REL_ALLOC)))
$(eval $(call variant,$(B)/asan,$(ASAN_FLAGS),))

.PHONY: all asan deps certs run test bench test-unit test-integration bench-transport bench-cluster bench-translate bench-loadgen-check fuzz fuzz-build \
  valgrind format format-check clean check-deps

all: check-deps $(B)/cergw $(B)/loadgen $(B)/bench_translate
asan: check-deps $(B)/asan/cergw

# `make deps` installs every Debian package the build and tests need.
# Idempotent and non-interactive; installs only what is missing.
deps:
	@missing=$$(for p in $(DEB_PACKAGES); do dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q 'install ok installed' || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	  echo "deps: installing $$missing"; \
	  if [ "$$(id -u)" != 0 ]; then echo "deps: run as root (or install: $$missing)"; exit 1; fi; \
	  export DEBIAN_FRONTEND=noninteractive; \
	  apt-get update -qq && apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	else echo "deps: all Debian packages present"; fi
	@# node and npm for the independent checkers (ajv + the official FHIR JSON schema): Debian's, unless present
	@if ! command -v node >/dev/null || ! command -v npm >/dev/null; then \
	  echo "deps: installing nodejs npm"; DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends nodejs npm >/dev/null; fi
	@if [ ! -f tools/node/node_modules/.package-lock.json ] || \
	    [ tools/node/package-lock.json -nt tools/node/node_modules/.package-lock.json ]; then \
	  echo "deps: npm ci in tools/node (the lock file is not rewritten)"; (cd tools/node && npm ci --no-audit --no-fund --loglevel=error >/dev/null); \
	else echo "deps: node tools present"; fi

check-deps:
	@pkg-config --exists $(PKGS) jemalloc && [ -f /usr/include/http_parser.h ] || { echo "missing libraries: run 'make deps' (as root)"; exit 1; }

certs:
	@./certs/make-dev-pki.sh

run: deps
	@$(MAKE) --no-print-directory all certs
	@./tools/run-dev.sh

test: deps
	@$(MAKE) --no-print-directory all asan $(B)/unit-tests $(B)/asan/unit-tests certs fuzz-build
	@./tests/run-all.sh

test-unit: $(B)/unit-tests certs
	./$(B)/unit-tests

test-integration: all certs
	./tests/integration/run.sh $(B)/cergw

# make bench: the full delivery path beside the transport baseline (bench/full.sh)
bench: deps
	@$(MAKE) --no-print-directory all certs
	@./bench/full.sh

# the full path on SQLite beside 1, 2 and 3 instances on one PostgreSQL (docs/benchmarks.md)
bench-cluster: deps
	@$(MAKE) --no-print-directory all certs
	./bench/cluster.sh

bench-transport: deps
	@$(MAKE) --no-print-directory all certs
	./bench/transport.sh

bench-translate: deps
	@$(MAKE) --no-print-directory all $(B)/bench_translate
	./bench/translate.sh

# shows that loadgen measures what h2load measures (docs/benchmarks.md)
bench-loadgen-check: deps
	@$(MAKE) --no-print-directory all certs
	./bench/loadgen-vs-h2load.sh

# libFuzzer targets (clang): build, then run each for FUZZ_SECONDS
fuzz: fuzz-build
	@$(MAKE) --no-print-directory -f fuzz/fuzz.mk fuzz-run
fuzz-build:
	@$(MAKE) --no-print-directory -f fuzz/fuzz.mk fuzz-build

valgrind: $(B)/unit-tests certs
	valgrind --error-exitcode=1 --leak-check=full --errors-for-leak-kinds=definite,indirect -q ./$(B)/unit-tests

format:
	clang-format -i $$(find gateway tests tools fuzz -name '*.[ch]')
format-check:
	clang-format --dry-run --Werror $$(find gateway tests tools fuzz -name '*.[ch]')

clean:
	rm -rf build

-include $(shell find build -name '*.d' 2>/dev/null)
