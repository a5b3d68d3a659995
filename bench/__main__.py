"""``python -m bench``: run the benchmark (same as ``python bench/run.py``)."""

from bench.run import main

raise SystemExit(main())
