"""``python -m issegm.benchmark``: the bundled default (README command 1)."""
from issegm.benchmark.demo import main

main()
