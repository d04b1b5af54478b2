# Fuzzing and sanitizers for the C core (issue "Hardening" §2, §3).
#
#   make fuzz            each libFuzzer target for FUZZ_SECONDS (default 30) from fuzz/corpus/<target>
#   make fuzz-smoke      the same, about 5 s per target (CI)
#   make test-asan       core.so and curl.so built with ASan + UBSan (gcc) into build-asan/5.4,
#                        then the whole suite under Lua 5.4 against them
#   make test-valgrind   the core specs (spec/core_*) under valgrind memcheck, leaks included
#
# Fuzz binaries, the corpus they grow and any crash artifacts go to fuzz/out/ (not committed).
# A crash reproduces with: fuzz/out/<target> fuzz/out/<target>-crash-<sha1>

.PHONY: fuzz fuzz-smoke fuzz-build test-asan test-valgrind deps-checks

# clang's libFuzzer and sanitizer runtimes, and valgrind, from Debian, when missing.
deps-checks:
	@DWS_EXTRA_PKGS="clang-14 libclang-rt-14-dev valgrind" sh scripts/deps.sh

FUZZ_CC       ?= clang-14
FUZZ_SECONDS  ?= 30
FUZZ_TARGETS   = json_decode json_encode sigheader codec key_load redact
FUZZ_BINS      = $(addprefix fuzz/out/,$(FUZZ_TARGETS))
FUZZ_CFLAGS    = -std=c99 -D_POSIX_C_SOURCE=200809L -g -O1 -fno-omit-frame-pointer \
                 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined \
                 -Icsrc $(LUA54_CFLAGS) $(CJSON_CFLAGS)
# Only json_decode and redact need a Lua state; linking it everywhere keeps one rule.
FUZZ_LIBS      = -llua5.4 $(CORE_LIBS)

fuzz/out:
	mkdir -p $@

fuzz/out/%: fuzz/%.c $(CORE_SRC) $(CORE_HDR) | fuzz/out deps-checks
	$(FUZZ_CC) $(FUZZ_CFLAGS) -o $@ $< $(CORE_SRC) $(FUZZ_LIBS)

fuzz-build: $(FUZZ_BINS)

# New inputs go to fuzz/out/corpus/<target>; the committed seeds are read only.
# -max_len keeps key texts and JSON documents at realistic sizes; leaks fail the run.
fuzz: $(FUZZ_BINS)
	@set -e; for t in $(FUZZ_TARGETS); do \
	    mkdir -p fuzz/out/corpus/$$t; \
	    echo "== fuzz $$t for $(FUZZ_SECONDS) s"; \
	    if fuzz/out/$$t -max_total_time=$(FUZZ_SECONDS) -max_len=8192 -timeout=10 \
	        -rss_limit_mb=2048 -print_final_stats=1 -artifact_prefix=fuzz/out/$$t- \
	        fuzz/out/corpus/$$t fuzz/corpus/$$t >fuzz/out/$$t.log 2>&1; then \
	        grep -E '^(stat::number_of_executed_units|stat::new_units_added|stat::peak_rss_mb)' \
	            fuzz/out/$$t.log | tr '\n' ' '; echo; \
	    else \
	        tail -n 60 fuzz/out/$$t.log; echo "fuzz: $$t failed, see fuzz/out/$$t.log"; exit 1; \
	    fi; \
	done; echo "fuzz: all targets clean"

fuzz-smoke:
	@$(MAKE) --no-print-directory fuzz FUZZ_SECONDS=5

# ---- AddressSanitizer + UndefinedBehaviorSanitizer over the whole suite ----
#
# But #install: it builds the rocks with luarocks, which takes the sanitized lua5.4 first on PATH for
# an installed Lua and finds no headers beside it; packaging is make test's to check.
# dws.redis too: the Redis store specs load it.
# Lua itself is not instrumented, so the suite runs under fuzz/asan_lua.c, a small Lua 5.4
# interpreter linked with the sanitizers, put first on PATH as lua5.4 (spec/run and busted find
# it there). No LD_PRELOAD: that would reach nginx, openssl and curl as the specs start them.
#   ASAN_OPTIONS  detect_leaks=0   leaks are test-valgrind's job (LeakSanitizer would also count
#                                  libcurl's and OpenSSL's process-lifetime allocations)
#                 halt_on_error=1  any report fails the run
#   UBSAN_OPTIONS halt_on_error=1:print_stacktrace=1  any undefined behaviour fails the run
# clang, as for the fuzzers: its UBSan also checks pointer arithmetic (NULL + 0), gcc's does not.
# The interpreter carries the sanitizer runtimes; the modules leave their symbols to it.
ASAN_CC      ?= clang-14
ASAN_BUILD   = build-asan
ASAN_CFLAGS  = -O1 -g -fno-omit-frame-pointer -fsanitize=address,undefined -fno-sanitize-recover=undefined

$(ASAN_BUILD)/bin/lua5.4: fuzz/asan_lua.c | deps-checks
	mkdir -p $(ASAN_BUILD)/bin
	$(ASAN_CC) -std=c99 $(ASAN_CFLAGS) $(WARN) $(LUA54_CFLAGS) -o $@ $< -llua5.4

test-asan: $(ASAN_BUILD)/bin/lua5.4 all
	@$(MAKE) --no-print-directory CC=$(ASAN_CC) BUILD=$(ASAN_BUILD) OPT="$(ASAN_CFLAGS)" \
	    $(ASAN_BUILD)/5.4/dws/core.so $(ASAN_BUILD)/5.4/dws/curl.so $(ASAN_BUILD)/5.4/dws/redis.so
	@PATH="$(CURDIR)/$(ASAN_BUILD)/bin:$$PATH" \
	    ASAN_OPTIONS=detect_leaks=0:halt_on_error=1 \
	    UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
	    DWS_BUILD=$(ASAN_BUILD) DWS_FLAVOURS=5.4 DWS_HEAVY=with sh spec/run --exclude-tags=install

# ---- valgrind memcheck over the core specs ----
#
# The #heavy specs take many minutes under valgrind (a collector stepping at every allocation; a
# pair-wise RSA check on 250 damaged keys); make test-heavy and test-asan run them.
# Any memcheck error or a "definitely lost" / "indirectly lost" block fails the run; reachable
# memory at exit (Lua's own state, OpenSSL's one-time initialisation) is not a leak. Suppressions
# for third-party internals, each with its reason, are in mk/valgrind.supp.
VALGRIND = valgrind --quiet --error-exitcode=99 --leak-check=full \
           --errors-for-leak-kinds=definite,indirect --show-leak-kinds=definite,indirect \
           --suppressions=mk/valgrind.supp --num-callers=30

test-valgrind: $(BUILD)/5.4/dws/core.so | deps-checks
	@LUA_PATH="$(CURDIR)/lua/?.lua;$(CURDIR)/lua/?/init.lua;$(CURDIR)/sandbox/lua/?.lua;$(CURDIR)/spec/?.lua;;" \
	    LUA_CPATH="$(CURDIR)/$(BUILD)/5.4/?.so;;" DWS_ROOT="$(CURDIR)" DWS_SANDBOX_JIT_CPATH="$(CURDIR)/$(BUILD)/jit/?.so" DWS_FLAVOUR=5.4 \
	    $(VALGRIND) lua5.4 /usr/bin/busted -o plainTerminal --exclude-tags=heavy $(wildcard spec/core_*_spec.lua)
