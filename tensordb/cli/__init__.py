"""The ``tensordb`` command line, a thin layer over the public API.

Every command reports bad input as one line on stderr and a non-zero exit
code; ``--debug`` shows the traceback instead. Anything else (a bug) shows
its traceback. Commands that only read open the database read-only.

Nodes are addressed as ``TREE[/POINTER]``. Tree names may themselves contain
``/`` (a folder import names trees ``sim01/step003``), so the longest prefix
of the address that names an existing tree is the tree, and the rest is a
JSON Pointer inside it.

The modules:

- ``entry``: the ``tensordb`` script; answers ``--version`` before anything
  else is imported.
- ``app``: the command group, which gathers the commands of
- ``commands_read`` (ls, tree, show, sql, stats, diff),
  ``commands_files`` (import, export), ``commands_write`` (rm, mv, cp, demo)
  and ``commands_maint`` (gc, check, bundle);
- ``common``: the error boundary, the shared options and address helpers;
- ``output``: tables, CSV and JSON rows, trees, progress displays;
- ``slices``: ``--slice`` parsing and ``show --stats``.

This file imports nothing, so that ``tensordb.cli.entry`` stays light.
"""
