"""The reproduction harness: benchmark rows, measurement, records, metadata, report, checker.

Measuring (``measure``, ``mirage_side``) writes typed records; the table, the figure and the
checker read them back. Entry points: ``python -m scripts.fig7`` and ``python -m scripts.verify``.
Hostile input (issue 15): ``cli`` (one ``error:`` line, exit 2), ``lock`` (one writer per results
directory), ``sanity`` (records that contradict each other are never checked or adopted).
"""
