"""Tests of ``tensordb.cli``, one file per module of the package."""
