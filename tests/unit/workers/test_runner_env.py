"""What a stage sees besides its script: the leg's share of a split."""

from __future__ import annotations

import pytest

from workers.runner import leg_file_listing


def test_a_legs_file_list_is_one_path_per_line() -> None:
    assert leg_file_listing(["a.py", "b c.py"]) == "a.py\nb c.py\n"
    assert leg_file_listing([]) == ""
    with pytest.raises(ValueError, match="line break"):
        leg_file_listing(["evil\n.py"])
