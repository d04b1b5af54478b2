# make test-oom: dws.core's key functions with every Lua allocation in turn failing, under
# AddressSanitizer and LeakSanitizer (fuzz/oom_key.c): no leak, and no private key's PEM freed
# unwiped, on any out-of-memory path.

.PHONY: test-oom

fuzz/out/oom_key: fuzz/oom_key.c $(CORE_SRC) $(CORE_HDR) | fuzz/out deps-checks
	$(ASAN_CC) -std=c99 -D_POSIX_C_SOURCE=200809L -D_GNU_SOURCE $(ASAN_CFLAGS) -Icsrc $(LUA54_CFLAGS) \
	    $(CJSON_CFLAGS) -o $@ fuzz/oom_key.c $(CORE_SRC) -llua5.4 $(CORE_LIBS)

test-oom: fuzz/out/oom_key
	@ASAN_OPTIONS=detect_leaks=1:halt_on_error=1 UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 fuzz/out/oom_key
