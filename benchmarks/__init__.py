"""Benchmark suite for mlejax against statsmodels, scikit-learn, glum, NumPy/SciPy.

Run ``python -m benchmarks.run [--quick] [--threads 1|2] [--out DIR]``; see
``benchmarks/README.md`` for what is measured and how.
"""
