"""The late-penalty rule and its file (issue 17); applied to a real gradebook in test_semester.py."""
from __future__ import annotations

import datetime

import pytest

from autograde import late
from autograde.course import CourseError

DAY = 86400


def test_penalty_per_started_day_capped_by_max_and_score():
    rule = late.Deadlines(per_day=0.1, maximum=0.3, grace_minutes=10)
    assert rule.penalty(5 * 60, score=4, max_score=4) == 0  # within the grace period
    assert rule.penalty(11 * 60, score=4, max_score=4) == pytest.approx(0.4)  # a started day
    assert rule.penalty(DAY + 1, score=4, max_score=4) == pytest.approx(0.8)
    assert rule.penalty(10 * DAY, score=4, max_score=4) == pytest.approx(1.2)  # at most 30%
    assert rule.penalty(10 * DAY, score=0.5, max_score=4) == pytest.approx(0.5)  # never below zero points


def test_deadlines_file(tmp_path):
    path = tmp_path / "deadlines.toml"
    path.write_text('[due]\n01_vanilla_pg = "2026-02-01T23:59:00+01:00"\n02_trpo = 2026-02-15T12:00:00Z\n'
                    "[extensions.alice]\n01_vanilla_pg = 2.5\n[penalty]\nper_day = 0.2\ngrace_minutes = 15\n")
    deadlines = late.load(path)
    assert deadlines.due == {"01_vanilla_pg": datetime.datetime(2026, 2, 1, 22, 59),  # nbgrader's naive UTC
                             "02_trpo": datetime.datetime(2026, 2, 15, 12, 0)}
    assert deadlines.extensions == {("01_vanilla_pg", "alice"): 2.5}
    assert (deadlines.per_day, deadlines.maximum, deadlines.grace_minutes) == (0.2, 1.0, 15.0)


@pytest.mark.parametrize("text, named", [
    ('[due]\n01_vanilla_pg = "next friday"\n', "due.01_vanilla_pg"),
    ("[extensions]\nalice = 2\n", "extensions.alice"),
    ("[penalty]\nper_day = -1\n", "penalty.per_day"),
    ("[deadline]\n", "unknown table"),
    ("[due\n", "cannot read the deadlines file"),
])
def test_a_wrong_deadlines_file_is_named(tmp_path, text, named):
    path = tmp_path / "deadlines.toml"
    path.write_text(text)
    with pytest.raises(CourseError, match=named.replace(".", r"\.")):
        late.load(path)
