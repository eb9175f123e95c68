# shma - top-level Makefile.
#
#   make            build libshm (static + shared), tests and benchmarks
#   make check      install missing Debian packages, build, run every test
#   make check-asan / check-ubsan / check-tsan
#                   the same tests, built with a sanitizer in build/<san>/
#   make check-valgrind  unit tests under valgrind memcheck
#   make check-stress    make check with the stress tests run long (the bank
#                   test: 60 s of transfers under SIGKILL; SHMA_BANK_SECONDS)
#   make bench      run the benchmarks (they print ratios to in-run baselines)
#   make demo       the main job: broker, workers and a 1 GiB array handed out as ArrayRefs
#   make install    PREFIX=/usr/local DESTDIR= : library, header, pkg-config, binaries
#   make deps       install the Debian packages shma needs, when missing
#   make fuzz       build the libFuzzer harnesses of tests/fuzz/ with clang in
#                   build/fuzz/ and run each for FUZZ_SECONDS (default 30)
#
# Variables: CC (gcc or clang), BUILD (output dir), SAN (asan|ubsan|tsan).

CC      ?= cc
BUILD   ?= build
SAN     ?=
PREFIX  ?= /usr/local
DESTDIR ?=
VERSION := 0.1.0

WARN    := -Wall -Wextra -Werror -Wshadow -Wstrict-prototypes -Wmissing-prototypes \
           -Wno-unused-parameter
CFLAGS  ?= -O2 -g
ALL_CFLAGS = -std=c11 -D_GNU_SOURCE -pthread -fPIC $(WARN) $(SAN_CFLAGS) $(CFLAGS) \
           -Ilibshm -Ibroker -Iworker -Itests/lib -MMD -MP
LDLIBS  := -pthread

ifeq ($(SAN),asan)
SAN_CFLAGS := -fsanitize=address -fno-omit-frame-pointer
else ifeq ($(SAN),ubsan)
SAN_CFLAGS := -fsanitize=undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer
else ifeq ($(SAN),tsan)
SAN_CFLAGS := -fsanitize=thread -fno-omit-frame-pointer
else ifneq ($(SAN),)
$(error SAN must be asan, ubsan or tsan)
endif
SAN_LDFLAGS := $(SAN_CFLAGS)

CMOCKA_LIBS := $(shell pkg-config --libs cmocka 2>/dev/null || echo -lcmocka)
# libshm's dependencies; programs and tests add LMDB (the broker's durable store).
LIBSHM_LIBS := -ljansson -lzmq
DEP_LIBS    := $(LIBSHM_LIBS) -llmdb

LIB_SRC   := $(wildcard libshm/*.c)
LIB_OBJ   := $(LIB_SRC:%.c=$(BUILD)/%.o)
UNIT_SRC  := $(wildcard tests/unit/test_*.c)
UNIT_BIN  := $(UNIT_SRC:%.c=$(BUILD)/%)
INTEG_SRC := $(wildcard tests/integration/test_*.c)
INTEG_BIN := $(INTEG_SRC:%.c=$(BUILD)/%)
STRESS_SRC := $(wildcard tests/stress/test_*.c)
STRESS_BIN := $(STRESS_SRC:%.c=$(BUILD)/%)
HARNESS_OBJ := $(patsubst %.c,$(BUILD)/%.o,$(wildcard tests/lib/*.c))
CRASH_SRC := $(wildcard tests/crash/crash_*.c)
CRASH_BIN := $(CRASH_SRC:%.c=$(BUILD)/%)
BENCH_SRC := $(wildcard bench/bench_*.c)
BENCH_BIN := $(BENCH_SRC:%.c=$(BUILD)/%)
# What the benchmarks share (bench/common.c: not a benchmark itself).
BENCH_OBJ := $(BUILD)/bench/common.o
# A slower disk for bench_store's broker (bench/sync_delay.c, preloaded).
BENCH_PRELOAD := $(BUILD)/bench/sync_delay.so
# The broker: every module but main.c goes into libbroker.a, which unit tests
# link too; the default configuration is compiled in from config/broker.json.
BROKER_SRC := $(filter-out broker/main.c,$(wildcard broker/*.c))
BROKER_OBJ := $(BROKER_SRC:%.c=$(BUILD)/%.o) $(BUILD)/broker/default_config.o
BROKER_LIB := $(BUILD)/libbroker.a
# Programs built on libshm: worker/{cli,worker,demo}.c are the mains of shma,
# shma-worker and shma-demo; every other worker/*.c goes into libworker.a.
WORKER_MAINS := $(wildcard worker/cli.c worker/worker.c worker/demo.c)
WORKER_SRC := $(filter-out $(WORKER_MAINS),$(wildcard worker/*.c))
WORKER_OBJ := $(WORKER_SRC:%.c=$(BUILD)/%.o)
WORKER_LIB := $(BUILD)/libworker.a
PROGRAMS   := $(if $(wildcard broker/main.c),$(BUILD)/shma-broker) \
              $(if $(wildcard worker/cli.c),$(BUILD)/shma) \
              $(if $(wildcard worker/worker.c),$(BUILD)/shma-worker) \
              $(if $(wildcard worker/demo.c),$(BUILD)/shma-demo)

.PHONY: all lib programs tests benches check check-asan check-ubsan check-tsan check-valgrind \
        check-symbols check-clang check-stress bench demo install deps clean fuzz fuzz-bins

all: lib programs tests benches

lib: $(BUILD)/libshm.a $(BUILD)/libshm.so
programs: $(PROGRAMS)
tests: programs $(UNIT_BIN) $(INTEG_BIN) $(STRESS_BIN) $(CRASH_BIN)
benches: $(BENCH_BIN) $(BENCH_PRELOAD)

$(BUILD)/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -c $< -o $@

$(BUILD)/libshm.a: $(LIB_OBJ)
	@rm -f $@
	ar rcs $@ $^

$(BUILD)/libshm.so: $(LIB_OBJ) libshm/libshm.map
	$(CC) -shared -Wl,-soname,libshm.so.0 -Wl,--version-script=libshm/libshm.map \
	    $(SAN_LDFLAGS) -o $@ $(LIB_OBJ) $(LIBSHM_LIBS) $(LDLIBS)

$(BUILD)/broker/default_config.c: config/broker.json
	@mkdir -p $(dir $@)
	{ echo '/* generated from config/broker.json: do not edit */'; \
	  echo '#include "config.h"'; \
	  echo 'const char config_default_json[] ='; \
	  sed -e 's/\\/\\\\/g' -e 's/"/\\"/g' -e 's/^/"/' -e 's/$$/\\n"/' $<; \
	  echo ';'; } > $@

$(BUILD)/broker/default_config.o: $(BUILD)/broker/default_config.c
	$(CC) $(ALL_CFLAGS) -c $< -o $@

$(BROKER_LIB): $(BROKER_OBJ)
	@rm -f $@
	ar rcs $@ $^

$(BUILD)/shma-broker: $(BUILD)/broker/main.o $(BROKER_LIB) $(BUILD)/libshm.a
	$(CC) $(SAN_LDFLAGS) -o $@ $^ $(DEP_LIBS) $(LDLIBS)

$(WORKER_LIB): $(WORKER_OBJ)
	@rm -f $@
	ar rcs $@ $^

$(BUILD)/shma: $(BUILD)/worker/cli.o $(WORKER_LIB) $(BUILD)/libshm.a
	$(CC) $(SAN_LDFLAGS) -o $@ $^ $(DEP_LIBS) $(LDLIBS) -lm

$(BUILD)/shma-worker: $(BUILD)/worker/worker.o $(WORKER_LIB) $(BUILD)/libshm.a
	$(CC) $(SAN_LDFLAGS) -o $@ $^ $(DEP_LIBS) $(LDLIBS) -lm

$(BUILD)/shma-demo: $(BUILD)/worker/demo.o $(WORKER_LIB) $(BUILD)/libshm.a
	$(CC) $(SAN_LDFLAGS) -o $@ $^ $(DEP_LIBS) $(LDLIBS) -lm

TEST_LIBS = $(WORKER_LIB) $(BROKER_LIB) $(BUILD)/libshm.a

$(BUILD)/tests/unit/%: $(BUILD)/tests/unit/%.o $(TEST_LIBS)
	$(CC) $(SAN_LDFLAGS) -o $@ $< $(TEST_LIBS) $(CMOCKA_LIBS) $(DEP_LIBS) $(LDLIBS) -lm

$(BUILD)/tests/integration/%: $(BUILD)/tests/integration/%.o $(HARNESS_OBJ) $(TEST_LIBS)
	$(CC) $(SAN_LDFLAGS) -o $@ $< $(HARNESS_OBJ) $(TEST_LIBS) $(CMOCKA_LIBS) $(DEP_LIBS) $(LDLIBS) -lm

$(BUILD)/tests/stress/%: $(BUILD)/tests/stress/%.o $(HARNESS_OBJ) $(TEST_LIBS)
	$(CC) $(SAN_LDFLAGS) -o $@ $< $(HARNESS_OBJ) $(TEST_LIBS) $(CMOCKA_LIBS) $(DEP_LIBS) $(LDLIBS) -lm

$(BUILD)/tests/crash/%: $(BUILD)/tests/crash/%.o $(TEST_LIBS)
	$(CC) $(SAN_LDFLAGS) -o $@ $< $(TEST_LIBS) $(DEP_LIBS) $(LDLIBS)

$(BUILD)/bench/%: $(BUILD)/bench/%.o $(BENCH_OBJ) $(HARNESS_OBJ) $(TEST_LIBS)
	$(CC) $(SAN_LDFLAGS) -o $@ $< $(BENCH_OBJ) $(HARNESS_OBJ) $(TEST_LIBS) $(DEP_LIBS) $(LDLIBS) -lm

# Never with a sanitizer: its runtime must come first among preloaded libraries.
$(BENCH_PRELOAD): bench/sync_delay.c
	@mkdir -p $(dir $@)
	$(CC) -std=c11 -D_GNU_SOURCE -fPIC -shared $(WARN) $(CFLAGS) -o $@ $< -ldl

# --- tests -------------------------------------------------------------------

check: deps
	$(MAKE) all
	$(MAKE) check-symbols
	tests/run-tests.sh $(BUILD)

# The stress tests run long (make check runs them for 4 s): the bank test for
# SHMA_BANK_SECONDS, default 60.
check-stress: deps
	$(MAKE) all
	SHMA_STRESS=1 tests/run-tests.sh $(BUILD)

check-asan check-ubsan check-tsan: deps
	$(MAKE) tests BUILD=build/$(@:check-%=%) SAN=$(@:check-%=%)
	$(if $(filter check-tsan,$@),$(MAKE) tests)
	SHMA_SAN=$(@:check-%=%) tests/run-tests.sh build/$(@:check-%=%)

check-valgrind: deps
	$(MAKE) tests BUILD=build/valgrind
	SHMA_VALGRIND=1 tests/run-tests.sh build/valgrind

# Only shma_-prefixed symbols may leave libshm.so.
check-symbols: $(BUILD)/libshm.so
	@bad=$$(nm -D --defined-only $< | awk '{print $$3}' | grep -v '^shma_' | grep -v '^LIBSHM_' || true); \
	if [ -n "$$bad" ]; then echo "libshm.so exports unprefixed symbols:"; echo "$$bad"; exit 1; fi; \
	echo "check-symbols: libshm.so exports only shma_* symbols"

# The same build with clang, warnings as errors.
check-clang:
	$(MAKE) all BUILD=build/clang CC=clang

bench: deps benches
	bench/run.sh $(BUILD) $(BENCH_REPORT)

demo: deps
	$(MAKE) $(BUILD)/shma-broker $(BUILD)/shma-worker $(BUILD)/shma-demo
	$(BUILD)/shma-demo

# --- fuzzing -----------------------------------------------------------------
# The harnesses and every library object they link are built by clang with
# libFuzzer, ASan and UBSan, in their own build dir (a sub-make with
# BUILD=$(FUZZ_BUILD)), so the normal build is untouched.  tests/fuzz/run.sh
# runs each; it fails if any finds a crash (saved under $(FUZZ_BUILD)/crashes/).

FUZZ_SECONDS ?= 30
FUZZ_CC      ?= clang
FUZZ_BUILD   := build/fuzz
FUZZ_SAN     := -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all \
                -fno-omit-frame-pointer
FUZZ_SRC     := $(wildcard tests/fuzz/fuzz_*.c)
FUZZ_BIN     := $(FUZZ_SRC:%.c=$(BUILD)/%)

fuzz: deps
	$(MAKE) fuzz-bins BUILD=$(FUZZ_BUILD) CC=$(FUZZ_CC) SAN= CFLAGS='-O1 -g' \
	    SAN_CFLAGS='$(FUZZ_SAN)'
	tests/fuzz/run.sh $(FUZZ_BUILD) $(FUZZ_SECONDS)

fuzz-bins: $(FUZZ_BIN)

$(BUILD)/tests/fuzz/%: $(BUILD)/tests/fuzz/%.o $(TEST_LIBS)
	$(CC) $(SAN_LDFLAGS) -o $@ $< $(TEST_LIBS) $(DEP_LIBS) $(LDLIBS) -lm

# --- install -----------------------------------------------------------------

install: lib programs
	install -d $(DESTDIR)$(PREFIX)/lib $(DESTDIR)$(PREFIX)/include \
	    $(DESTDIR)$(PREFIX)/lib/pkgconfig $(DESTDIR)$(PREFIX)/bin
	install -m 644 $(BUILD)/libshm.a $(DESTDIR)$(PREFIX)/lib/libshm.a
	install -m 755 $(BUILD)/libshm.so $(DESTDIR)$(PREFIX)/lib/libshm.so.$(VERSION)
	ln -sf libshm.so.$(VERSION) $(DESTDIR)$(PREFIX)/lib/libshm.so.0
	ln -sf libshm.so.0 $(DESTDIR)$(PREFIX)/lib/libshm.so
	install -m 644 libshm/shma.h $(DESTDIR)$(PREFIX)/include/shma.h
	sed -e 's|@PREFIX@|$(PREFIX)|g' -e 's|@VERSION@|$(VERSION)|g' libshm/libshm.pc.in \
	    > $(DESTDIR)$(PREFIX)/lib/pkgconfig/libshm.pc
	$(if $(PROGRAMS),install -m 755 $(PROGRAMS) $(DESTDIR)$(PREFIX)/bin/)

deps:
	@scripts/deps.sh

clean:
	rm -rf build

-include $(shell find $(BUILD) -name '*.d' 2>/dev/null)
