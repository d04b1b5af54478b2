# Benchmark helpers beside `make bench` (which runs bench/run).
#   make bench-profile   callgrind: instructions per steady-state call, by object and function
#   make bench-jit       the bench with the client under LuaJIT (build/jit)
#   make bench-profile-notify  callgrind: instructions per notification in the example server
#   make bench-profile-floor-client  callgrind: lua-dws consult over HTTPS against the C floor client

.PHONY: bench-profile bench-jit

bench-profile: all
	@sh bench/profile

bench-jit: all
	@DWS_BENCH_FLAVOUR=jit sh bench/run

.PHONY: bench-profile-notify

# callgrind: instructions per notification in the example merchant server's /notify handler
bench-profile-notify: all
	@sh bench/profile_notify

# The bench's C programs, built with the core's flags and warnings (zero allowed, as for csrc/):
# the RSA floor, the C floor client (section 2f) and getrusage for Lua in each flavour.
.PHONY: bench-bins
BENCH_OUT    = $(BUILD)/bench
BENCH_CFLAGS = -std=c99 -D_POSIX_C_SOURCE=200809L $(OPT) $(WARN) $(EXTRA_CFLAGS)

bench-bins: $(BENCH_OUT)/floor $(BENCH_OUT)/floor_client $(BENCH_OUT)/5.4/bench_rusage.so \
            $(BENCH_OUT)/jit/bench_rusage.so

$(BENCH_OUT)/floor: bench/floor.c
	@mkdir -p $(@D)
	$(CC) $(BENCH_CFLAGS) -o $@ bench/floor.c -lcrypto

$(BENCH_OUT)/floor_client: bench/floor_client.c
	@mkdir -p $(@D)
	$(CC) $(BENCH_CFLAGS) -o $@ bench/floor_client.c -lssl -lcrypto

$(BENCH_OUT)/5.4/bench_rusage.so: bench/rusage.c
	@mkdir -p $(@D)
	$(CC) $(BENCH_CFLAGS) -fPIC -shared $(LUA54_CFLAGS) -o $@ bench/rusage.c

$(BENCH_OUT)/jit/bench_rusage.so: bench/rusage.c
	@mkdir -p $(@D)
	$(CC) $(BENCH_CFLAGS) -fPIC -shared $(LUAJIT_CFLAGS) -o $@ bench/rusage.c

# callgrind: lua-dws's consult over HTTPS against the C floor client's, by object and function
.PHONY: bench-profile-floor-client
bench-profile-floor-client: all
	@sh bench/profile_floor_client
