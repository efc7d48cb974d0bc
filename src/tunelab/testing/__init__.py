"""Test helpers for code built on tunelab, and for tunelab's own backends.

:class:`StorageSuite` is the storage conformance suite: subclass it in a test module and
implement ``make_storage`` to run every rule of :class:`~tunelab.storage.BaseStorage`
against a backend. :class:`SharedStorageSuite` adds the multi-process rules for backends
that several processes share through a URL. This package imports pytest.
"""

from __future__ import annotations

import pytest

# Detailed assertion messages in the suite's tests, as in a test module.
pytest.register_assert_rewrite("tunelab.testing.storage_suite")

from tunelab.testing.storage_suite import SharedStorageSuite, StorageSuite  # noqa: E402

__all__ = ["SharedStorageSuite", "StorageSuite"]
