# Benchmark helpers beside `make bench` (which runs bench/run).
#   make bench-profile   callgrind: instructions per steady-state call, by object and function
#   make bench-jit       the bench with the client under LuaJIT (build/jit)
#   make bench-profile-notify  callgrind: instructions per notification in the example server

.PHONY: bench-profile bench-jit

bench-profile: all
	@sh bench/profile

bench-jit: all
	@DWS_BENCH_FLAVOUR=jit sh bench/run

.PHONY: bench-profile-notify

# callgrind: instructions per notification in the example merchant server's /notify handler
bench-profile-notify: all
	@sh bench/profile_notify
