from __future__ import annotations

import pytest
from pydantic import ValidationError

from omstream.settings import Settings


def test_a_fixed_range_that_ends_before_it_starts_is_an_invalid_setting() -> None:
    with pytest.raises(ValidationError, match="OMSTREAM_ACCEPT_FROM must be before OMSTREAM_ACCEPT_TO"):
        Settings(accept_from="2017-12-04T00:00:00Z", accept_to="2017-11-25T00:00:00Z")
