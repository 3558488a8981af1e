"""Data side of the terminal app: store reads, edits and pure helpers.

Nothing in this package imports Textual or TensorFlow, so it is tested and
benchmarked without a terminal, and the screens only render what it returns.
"""
