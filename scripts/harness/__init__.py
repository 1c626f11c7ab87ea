"""The reproduction harness: benchmark rows, measurement, records, metadata, report, checker.

Measuring (``measure``, ``mirage_side``) writes typed records; the table, the figure and the
checker read them back. Entry points: ``python -m scripts.fig7`` and ``python -m scripts.verify``.
"""
