# Benchmark helpers beside `make bench` (which runs bench/run).
#   make bench-profile   callgrind: instructions per steady-state call, by object and function
#   make bench-jit       the bench with the client under LuaJIT (build/jit)

.PHONY: bench-profile bench-jit

bench-profile: all
	@sh bench/profile

bench-jit: all
	@DWS_BENCH_FLAVOUR=jit sh bench/run
