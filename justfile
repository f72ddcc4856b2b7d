# Every recipe delegates to ./dev, the one script that knows how (it also works without just).

set positional-arguments

# Create .venv, install Shipyard, install and start the Docker engine when missing
setup:
    ./dev setup

# Build the default kernel image if missing, then run `shipyard up`
up *ARGS:
    ./dev up "$@"

# ruff, mypy, lint-imports and pytest against a real Docker engine and PostgreSQL
test *ARGS:
    ./dev test "$@"

# ruff, mypy and lint-imports only
lint:
    ./dev lint

# The benchmarks (bench/run.py)
bench *ARGS:
    ./dev bench "$@"

# Build the single executable dist/shipyard with PyInstaller (works offline)
package:
    ./dev package

# Build dist/shipyard-pyapp with PyApp: release machines only (needs crates.io and
# python-build-standalone downloads; fails fast without them)
package-pyapp:
    ./dev package-pyapp
