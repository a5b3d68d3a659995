"""``python -m bench``: run the benchmark (same as ``python bench/run.py``)."""

from bench.cli import main

raise SystemExit(main())
