"""The `shipyard` command: the one entry point that ties the packages together (cli.py).

No other package imports this one; what they share lives in `hostlib` and `wire`. Nothing is
imported here, so that `shipyard run` starts on the standard library alone (shipyard/_main.py).
"""
