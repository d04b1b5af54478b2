# lua-dws: build the C core for Lua 5.4 and for OpenResty's LuaJIT from one source.
#
#   make            build both flavours into build/5.4 and build/jit
#   make test       install missing Debian packages, build, run the busted suite under both
#   make test-heavy the exhaustive #heavy cases make test leaves out (CI runs both)
#   make demo       bind a card against the local sandbox, end to end
#   make bench      benchmarks (ratios against the RSA floor)
#   make lint       luacheck + cppcheck
#   make docs       the API reference (LDoc) in build/docs; make docs-check: no public item undocumented

CC      ?= cc
LUA54_CFLAGS  ?= $(shell pkg-config --cflags lua5.4 2>/dev/null || echo -I/usr/include/lua5.4)
LUAJIT_CFLAGS ?= $(shell pkg-config --cflags luajit 2>/dev/null || echo -I/usr/include/luajit-2.1)
CJSON_CFLAGS  ?= $(shell pkg-config --cflags libcjson 2>/dev/null || echo -I/usr/include/cjson)

WARN    = -Wall -Wextra -pedantic -Wshadow -Wmissing-prototypes -Wstrict-prototypes \
          -Wpointer-arith -Wcast-qual -Wformat=2 -Wundef
OPT     ?= -O2 -g
CFLAGS_ALL = -std=c99 -D_POSIX_C_SOURCE=200809L -fPIC -fvisibility=hidden $(OPT) $(WARN) \
             $(CJSON_CFLAGS) $(EXTRA_CFLAGS)
LDFLAGS_ALL = -shared $(EXTRA_LDFLAGS)

CORE_SRC = csrc/core.c csrc/key.c csrc/encoding.c csrc/sigheader.c csrc/random.c csrc/clock.c \
           csrc/redact.c csrc/json.c csrc/pkcs11.c csrc/file.c
CORE_HDR = csrc/compat.h csrc/dws.h csrc/buffer.h csrc/class.h
CURL_SRC = csrc/curl.c csrc/curl_multi.c
CORE_LIBS = -lcrypto -lcjson
CURL_LIBS = -lcurl
# dws.redis is its own library so that dws.core and dws.curl never link hiredis.
REDIS_SRC = csrc/redis.c
REDIS_LIBS = -lhiredis

BUILD ?= build

FLAVOURS = 5.4 jit
MODULES  = $(foreach f,$(FLAVOURS),$(BUILD)/$(f)/dws/core.so $(BUILD)/$(f)/dws/curl.so $(BUILD)/$(f)/dws/redis.so)

LUA_PATH_DEV  = $(CURDIR)/lua/?.lua;$(CURDIR)/lua/?/init.lua;$(CURDIR)/sandbox/lua/?.lua;;
export DWS_ROOT = $(CURDIR)
export DWS_SANDBOX_JIT_CPATH = $(CURDIR)/$(BUILD)/jit/?.so

# One version: dws.VERSION (lua/dws/client.lua); `make rockspec` writes the release rockspec from
# dws-scm-1.rockspec (which `luarocks make` keeps using from git); spec/version_spec.lua checks they agree.
DWS_VERSION = $(shell sed -n 's/^M.VERSION = "\(.*\)"$$/\1/p' lua/dws/client.lua)

.PHONY: all deps test test-heavy test-5.4 test-jit demo bench lint clean env fuzz test-asan test-valgrind rockspec

all: $(MODULES)

$(BUILD)/5.4/dws/core.so: $(CORE_SRC) $(CORE_HDR) | $(BUILD)/5.4/dws
	$(CC) $(CFLAGS_ALL) $(LUA54_CFLAGS) -o $@ $(CORE_SRC) $(LDFLAGS_ALL) $(CORE_LIBS)

$(BUILD)/jit/dws/core.so: $(CORE_SRC) $(CORE_HDR) | $(BUILD)/jit/dws
	$(CC) $(CFLAGS_ALL) $(LUAJIT_CFLAGS) -o $@ $(CORE_SRC) $(LDFLAGS_ALL) $(CORE_LIBS)

$(BUILD)/5.4/dws/curl.so: $(CURL_SRC) csrc/compat.h csrc/buffer.h csrc/curl_shared.h csrc/class.h | $(BUILD)/5.4/dws
	$(CC) $(CFLAGS_ALL) $(LUA54_CFLAGS) -o $@ $(CURL_SRC) $(LDFLAGS_ALL) $(CURL_LIBS)

$(BUILD)/jit/dws/curl.so: $(CURL_SRC) csrc/compat.h csrc/buffer.h csrc/curl_shared.h csrc/class.h | $(BUILD)/jit/dws
	$(CC) $(CFLAGS_ALL) $(LUAJIT_CFLAGS) -o $@ $(CURL_SRC) $(LDFLAGS_ALL) $(CURL_LIBS)

$(BUILD)/5.4/dws/redis.so: $(REDIS_SRC) csrc/class.h | $(BUILD)/5.4/dws
	$(CC) $(CFLAGS_ALL) $(LUA54_CFLAGS) -o $@ $(REDIS_SRC) $(LDFLAGS_ALL) $(REDIS_LIBS)

$(BUILD)/jit/dws/redis.so: $(REDIS_SRC) csrc/class.h | $(BUILD)/jit/dws
	$(CC) $(CFLAGS_ALL) $(LUAJIT_CFLAGS) -o $@ $(REDIS_SRC) $(LDFLAGS_ALL) $(REDIS_LIBS)

$(BUILD)/%/dws:
	mkdir -p $@

deps:
	@sh scripts/deps.sh

env:
	@echo 'export LUA_PATH="$(LUA_PATH_DEV)"'
	@echo 'export LUA_CPATH="$(CURDIR)/$(BUILD)/5.4/?.so;;"'
	@echo 'export DWS_ROOT="$(CURDIR)"'
	@echo 'export DWS_SANDBOX_JIT_CPATH="$(CURDIR)/$(BUILD)/jit/?.so"'

# The suite runs once per flavour; spec/run prints the closing "N passed, N failed" line.
test: deps
	@$(MAKE) --no-print-directory all
	@sh spec/run

test-heavy: deps
	@$(MAKE) --no-print-directory all
	@DWS_HEAVY=only sh spec/run

test-5.4: all
	@DWS_FLAVOURS=5.4 sh spec/run

test-jit: all
	@DWS_FLAVOURS=jit sh spec/run

demo: deps
	@$(MAKE) --no-print-directory all
	@sh examples/demo.sh

bench: deps
	@$(MAKE) --no-print-directory all
	@sh bench/run

lint: all
	luacheck lua spec examples bench bin sandbox scripts docs csrc/core.ld.lua
	lua5.4 scripts/require_graph.lua
	cppcheck --quiet --error-exitcode=1 --enable=warning,performance,portability \
	    --suppress=missingIncludeSystem --inline-suppr $(CJSON_CFLAGS) csrc bench

# openresty/dws-openresty-scm-1.rockspec is dws-scm-1.rockspec built for LuaJIT (scripts/openresty_rockspec.lua).
RELEASE_SED = sed -e 's/^version = "scm-1"/version = "$(DWS_VERSION)-1"/' \
	    -e 's|^\(   url = "git+https://example.invalid/lua-dws.git",\)|\1\n   tag = "v$(DWS_VERSION)",|'

rockspec:
	@mkdir -p rockspecs
	$(RELEASE_SED) dws-scm-1.rockspec > rockspecs/dws-$(DWS_VERSION)-1.rockspec
	lua5.4 scripts/openresty_rockspec.lua < dws-scm-1.rockspec > openresty/dws-openresty-scm-1.rockspec
	$(RELEASE_SED) openresty/dws-openresty-scm-1.rockspec > openresty/dws-openresty-$(DWS_VERSION)-1.rockspec

clean:
	rm -rf $(BUILD) build-asan fuzz/out

# Topic makefiles (checks, fuzzing, sanitizers, benchmarks) live beside this one.
-include mk/*.mk
