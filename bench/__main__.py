"""``python -m bench``: the platform benchmark (see ``bench.streaming``)."""

from bench.streaming import main

main()
