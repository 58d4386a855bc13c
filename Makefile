# The two commands of the README's quick start, and the developer loop.
.PHONY: demo test test-fast lint bench package-test

demo:            ## a real local cluster: llama.cpp hosts + agents + proxy, then a chat through it
	scripts/demo.sh

test:            ## the whole suite, as CI runs it
	scripts/test.sh

test-fast:       ## the quick loop: no llama.cpp
	scripts/test.sh -m "not slow"

bench:           ## every benchmark; figures land in BENCHMARKS.md
	scripts/bench.sh

package-test:    ## build the binary (~30 min on 2 cores, ccache speeds rebuilds), test it, its .deb and .rpm
	packaging/package-test
