"""Every registered file type's reader runs the reader conformance suite."""

import pytest

from ingest.readers import READERS
from lorag.testing.reader_conformance import check_reader


@pytest.mark.parametrize("extension", READERS.names())
def test_reader_conforms(extension):
    check_reader(extension)
