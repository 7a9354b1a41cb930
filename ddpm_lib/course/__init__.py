"""The course's own tools, above the library: nothing in ddpm_lib outside this package imports it.

- ``book``: the course manifest (book.toml), executing chapters and storing their outputs,
  checking .py and .ipynb agree, replaying them as other CPUs, the student edition (``ddpm-book``).
- ``checks``: the exercise checkers the chapters and the homework call.
- ``replay``: printing numbers that replay on any CPU (``below``, ``within_sigma``) and the scanner
  that finds those that would not.
- ``widgets``: the interactive explorers of the chapters.
"""
