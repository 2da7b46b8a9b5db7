# Convenience wrappers; the README's two commands need no `just`.

# Run conductor, codexd and status-api on loopback in the foreground.
dev *ARGS:
    scripts/dev.sh {{ARGS}}

# Every check and test.
test:
    scripts/test.sh

# Benchmarks (print numbers).
bench:
    scripts/bench/conductor.sh
    scripts/bench/codexd.sh
    scripts/bench/proxy.sh

fmt:
    cargo fmt --all

lint:
    cargo clippy --all-targets -- -D warnings
