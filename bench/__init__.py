"""fastnn's benchmark suite: workloads, contenders, the pytest-benchmark table
(``pytest bench``) and the interleaved comparison script (``python bench/compare.py``)."""
