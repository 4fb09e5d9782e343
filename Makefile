# RTCR — one GNU Makefile for the whole tree.
#
# Layers and what they build (dependencies point one way: ecu-agent -> rtcr-core -> proto):
#   proto/*.proto, proto/*.c         -> $(B)/libproto.a        (protobuf-c schemas + framing glue)
#   rtcr-core/src/*.c                -> $(B)/librtcr.a         (kernel emulation, services, C/R)
#   rtcr-core/component/*.c          -> $(B)/librtcr-comp.a    (base library linked into targets)
#   ecu-agent/agent_*.c              -> agent objects; ecu-agent.c and ecuctl.c are the mains
#   targets/NAME/*.c                 -> $(B)/targets/NAME      (static, non-PIE: fixed addresses)
#   tests/unit/test_*.c              -> $(B)/tests/test_*      (cmocka)
#   tests/fuzz/fuzz_*.c              -> $(B)/fuzz/fuzz_*       (replay driver; libFuzzer with clang)
#   tests/bench/bench_*.c            -> $(B)/bench/bench_*
#
# Variants: `make asan` builds into build-asan with ASan+UBSan and runs the tests there;
# `make memcheck` runs the unit tests under valgrind and fails on any error.

B        ?= build
PREFIX   ?= /usr/local
DESTDIR  ?=
SAN      ?=
CC       ?= gcc

PKGS      := libczmq libzmq liblz4 libxxhash libsystemd libprotobuf-c
PKG_CFLAGS = $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS   = $(shell pkg-config --libs $(PKGS) 2>/dev/null)

# OPT is the optimisation/debug part; override it (make OPT=-O0) rather than CFLAGS, which
# carries the include paths. EXTRA_CFLAGS is appended for local experiments.
OPT      ?= -O2 -g
CFLAGS   := $(OPT) $(EXTRA_CFLAGS) -std=gnu11 -Wall -Wextra -Werror -MMD -MP -D_GNU_SOURCE -fno-strict-aliasing \
            -Irtcr-core/include -Iproto -I$(B)/proto $(PKG_CFLAGS) $(SAN)
LDFLAGS  += $(SAN)
LDLIBS   += $(PKG_LIBS) -lpthread

# ---------------------------------------------------------------------------------------------
# sources

PROTO_SRC   := $(wildcard proto/*.proto)
PROTO_GEN_C := $(patsubst proto/%.proto,$(B)/proto/%.pb-c.c,$(PROTO_SRC))
PROTO_GEN_H := $(PROTO_GEN_C:.c=.h)
PROTO_C     := $(wildcard proto/*.c)
PROTO_OBJ   := $(PROTO_GEN_C:.c=.o) $(patsubst %.c,$(B)/%.o,$(PROTO_C))

CORE_SRC    := $(wildcard rtcr-core/src/*.c)
CORE_OBJ    := $(patsubst %.c,$(B)/%.o,$(CORE_SRC))
COMP_SRC    := $(wildcard rtcr-core/component/*.c)
COMP_OBJ    := $(patsubst %.c,$(B)/%.o,$(COMP_SRC))

AGENT_SRC   := $(wildcard ecu-agent/agent_*.c)
AGENT_OBJ   := $(patsubst %.c,$(B)/obj/%.o,$(AGENT_SRC))
CTL_SRC     := $(wildcard ecu-agent/ecuctl_*.c)
CTL_OBJ     := $(patsubst %.c,$(B)/obj/%.o,$(CTL_SRC))

TARGET_DIRS := $(patsubst targets/%/,%,$(sort $(dir $(wildcard targets/*/*.c))))
TARGET_BINS := $(addprefix $(B)/targets/,$(TARGET_DIRS))

UNIT_SRC    := $(wildcard tests/unit/test_*.c)
UNIT_BINS   := $(patsubst tests/unit/%.c,$(B)/tests/%,$(UNIT_SRC))
TESTLIB_SRC := $(wildcard tests/lib/*.c)
TESTLIB_OBJ := $(patsubst %.c,$(B)/%.o,$(TESTLIB_SRC))
FUZZ_SRC    := $(wildcard tests/fuzz/fuzz_*.c)
FUZZ_BINS   := $(patsubst tests/fuzz/%.c,$(B)/fuzz/%,$(FUZZ_SRC))
BENCH_SRC   := $(wildcard tests/bench/bench_*.c)
BENCH_BINS  := $(patsubst tests/bench/%.c,$(B)/bench/%,$(BENCH_SRC))

LIBPROTO    := $(B)/libproto.a
LIBRTCR     := $(B)/librtcr.a
LIBCOMP     := $(B)/librtcr-comp.a
PROGS       := $(B)/ecu-agent $(B)/ecuctl

ALL_OBJ := $(PROTO_OBJ) $(CORE_OBJ) $(COMP_OBJ) $(AGENT_OBJ) $(CTL_OBJ) $(TESTLIB_OBJ) \
           $(B)/obj/ecu-agent/ecu-agent.o $(B)/obj/ecu-agent/ecuctl.o

# ---------------------------------------------------------------------------------------------
# top-level targets

.PHONY: all deps build test unit integration demo bench asan memcheck fuzz install format \
        format-check clean
.DEFAULT_GOAL := all

all: deps build

build: $(LIBPROTO) $(LIBRTCR) $(LIBCOMP) $(PROGS) $(TARGET_BINS) $(UNIT_BINS) $(FUZZ_BINS) \
       $(BENCH_BINS)

deps:
	@bash scripts/deps.sh

test: all
	@B=$(B) bash scripts/run-tests.sh all

unit: all
	@B=$(B) bash scripts/run-tests.sh unit

integration: all
	@B=$(B) bash scripts/run-tests.sh integration

demo: all
	@B=$(B) bash scripts/demo.sh

bench: all
	@B=$(B) bash scripts/bench.sh

asan: deps
	@$(MAKE) --no-print-directory B=build-asan OPT="-O1 -g" \
	    SAN="-fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=all" build
	@B=build-asan ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 \
	    UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 bash scripts/run-tests.sh all

memcheck: all
	@B=$(B) MEMCHECK=1 bash scripts/run-tests.sh unit

fuzz: all
	@B=$(B) bash scripts/fuzz.sh

install: all
	install -d $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(PREFIX)/lib/rtcr/targets \
	    $(DESTDIR)$(PREFIX)/share/rtcr/config $(DESTDIR)$(PREFIX)/lib/systemd/system
	install -m 0755 $(PROGS) $(DESTDIR)$(PREFIX)/bin/
	$(if $(TARGET_BINS),install -m 0755 $(TARGET_BINS) $(DESTDIR)$(PREFIX)/lib/rtcr/targets/)
	$(if $(wildcard config/*.conf),install -m 0644 $(wildcard config/*.conf) \
	    $(DESTDIR)$(PREFIX)/share/rtcr/config/)
	$(if $(wildcard systemd/*.service),install -m 0644 $(wildcard systemd/*.service) \
	    $(DESTDIR)$(PREFIX)/lib/systemd/system/)

FORMAT_FILES = $(shell git ls-files '*.c' '*.h' 2>/dev/null)
format:
	clang-format -i $(FORMAT_FILES)

format-check:
	clang-format --dry-run --Werror $(FORMAT_FILES)

clean:
	rm -rf build build-asan

# ---------------------------------------------------------------------------------------------
# rules

# Keep every built file: make would otherwise delete the objects of targets and the generated
# schema sources as intermediates after a build (and print that after the test summary).
.SECONDARY:

$(B)/proto/%.pb-c.c $(B)/proto/%.pb-c.h: proto/%.proto
	@mkdir -p $(@D)
	protoc-c --proto_path=proto --c_out=$(B)/proto $<

# every object may include a generated schema header: generate them first
$(ALL_OBJ) $(UNIT_BINS) $(FUZZ_BINS) $(BENCH_BINS): | $(PROTO_GEN_H)

$(B)/proto/%.pb-c.o: $(B)/proto/%.pb-c.c
	$(CC) $(CFLAGS) -Wno-unused-parameter -c -o $@ $<

$(B)/%.o: %.c
	@mkdir -p $(@D)
	$(CC) $(CFLAGS) -c -o $@ $<

# the agent's objects live apart from the binary $(B)/ecu-agent (a file, not a directory)
$(B)/obj/%.o: %.c
	@mkdir -p $(@D)
	$(CC) $(CFLAGS) -c -o $@ $<

$(LIBPROTO): $(PROTO_OBJ)
	@mkdir -p $(@D)
	rm -f $@ && ar rcs $@ $^

$(LIBRTCR): $(CORE_OBJ)
	@mkdir -p $(@D)
	rm -f $@ && ar rcs $@ $^

$(LIBCOMP): $(COMP_OBJ)
	@mkdir -p $(@D)
	rm -f $@ && ar rcs $@ $^

$(B)/ecu-agent: $(B)/obj/ecu-agent/ecu-agent.o $(AGENT_OBJ) $(LIBRTCR) $(LIBPROTO)
	$(CC) $(LDFLAGS) -o $@ $(filter %.o %.a,$^) $(LDLIBS)

$(B)/ecuctl: $(B)/obj/ecu-agent/ecuctl.o $(CTL_OBJ) $(LIBRTCR) $(LIBPROTO)
	$(CC) $(LDFLAGS) -o $@ $(filter %.o %.a,$^) $(LDLIBS)

# Targets are protection domains: linked statically and without PIE so that code and data
# sit at the same addresses in every process that runs the binary, on every ECU.
TARGET_CFLAGS = $(filter-out $(SAN),$(CFLAGS)) -fno-pie
target_objs = $(patsubst %.c,$(B)/tobj/%.o,$(wildcard targets/$(1)/*.c))
.SECONDEXPANSION:
$(B)/targets/%: $$(call target_objs,$$*) $(LIBCOMP)
	@mkdir -p $(@D)
	$(CC) -static -no-pie -o $@ $(filter %.o %.a,$^) -lpthread

$(B)/tobj/targets/%.o: targets/%.c
	@mkdir -p $(@D)
	$(CC) $(TARGET_CFLAGS) -c -o $@ $<

$(B)/rtcr-core/component/%.o: rtcr-core/component/%.c
	@mkdir -p $(@D)
	$(CC) $(TARGET_CFLAGS) -c -o $@ $<

$(B)/tests/%: tests/unit/%.c $(TESTLIB_OBJ) $(AGENT_OBJ) $(LIBRTCR) $(LIBCOMP) $(LIBPROTO)
	@mkdir -p $(@D)
	$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $(filter %.c %.o %.a,$^) $(LDLIBS) -lcmocka

$(B)/fuzz/%: tests/fuzz/%.c tests/fuzz/replay_main.c $(AGENT_OBJ) $(LIBRTCR) $(LIBPROTO)
	@mkdir -p $(@D)
	$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $(filter %.c %.o %.a,$^) $(LDLIBS)

$(B)/bench/%: tests/bench/%.c $(TESTLIB_OBJ) $(AGENT_OBJ) $(LIBRTCR) $(LIBPROTO)
	@mkdir -p $(@D)
	$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $(filter %.c %.o %.a,$^) $(LDLIBS)

-include $(shell find $(B) -name '*.d' 2>/dev/null)
