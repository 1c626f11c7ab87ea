"""Fixtures shared by the search and CLI hostile-input tests: one finished tiny search per
module (``finished``) and a private copy of its files per test (``work``)."""

import pytest
from hostile_helpers import copy_finished, make_finished


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    return make_finished(tmp_path_factory)


@pytest.fixture
def work(tmp_path, finished):
    return copy_finished(tmp_path, finished)
