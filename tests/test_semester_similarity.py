"""The similarity report (issue 17): token-based, blind to names, comments and layout; lists pairs
for review in report.html and changes no score."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from autograde import report, similarity
from autograde.results import Item, Result
from fixtures import students as make

ROOT = Path(__file__).resolve().parents[1]
SOURCE = ROOT / "tests" / "fixtures" / "course" / "solutions"
ASSIGNMENT = "00_fixture"
LOOP = '''def pg_loss(log_probs, advantages):
    # weight each log-probability by its advantage
    weights = advantages.detach()
    total = torch.zeros(())
    for index in range(log_probs.shape[0]):
        total = total + log_probs[index] * weights[index]
    mean = total / log_probs.shape[0]
    return -mean
'''
LOOP_RENAMED = '''def pg_loss(lp, adv):
    w = adv.detach()   # treat as constants


    acc = torch.zeros(( ))
    for i in range(lp.shape[0]): acc = acc + lp[i] * w[i]
    m = acc / lp.shape[0]
    return -m
'''
STACKED = '''def pg_loss(log_probs, advantages):
    products = torch.stack([lp * a for lp, a in zip(log_probs, advantages.detach())])
    if products.numel() == 0:
        raise ValueError("empty batch: nothing to average")
    return -products.sum() / products.numel()
'''
SHORT = "def pg_loss(log_probs, advantages):\n    return -(log_probs * advantages.detach()).mean()"


def test_tokens_ignore_names_comments_and_layout():
    assert similarity.tokens(LOOP) == similarity.tokens(LOOP_RENAMED.replace("for i in range(lp.shape[0]): acc",
                                                                              "for i in range(lp.shape[0]):\n        acc"))
    assert similarity.fingerprints(similarity.tokens(LOOP)) != similarity.fingerprints(similarity.tokens(STACKED))
    assert ".detach" not in similarity.tokens(LOOP) and "detach" in similarity.tokens(LOOP)  # attributes stay
    assert similarity.tokens("x = (1\n") == ["V", "=", "(", "1"]  # broken code: what was read
    assert "run_line_magic" in similarity.tokens("%time x = 1\n")  # IPython syntax: the Python it stands for


@pytest.fixture(scope="module")
def course_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("course")
    release, good = make.release_and_answered(SOURCE, ASSIGNMENT, out / "notebooks")
    shutil.copytree(SOURCE / ASSIGNMENT, out / "solutions" / ASSIGNMENT)
    for student, answer in {"ann": LOOP, "ben": LOOP_RENAMED, "cy": STACKED, "dee": SHORT, "eve": SHORT}.items():
        make.write(out / "submitted", student, ASSIGNMENT, make.with_cell(good, "solution_pg_loss", answer), ASSIGNMENT)
    return out


def test_copied_answer_is_listed_and_the_natural_one_is_not(course_dir):
    pairs = similarity.similar_pairs(course_dir)
    assert [(p.cell, p.first, p.second) for p in pairs] == [("solution_pg_loss", "ann", "ben")]
    assert pairs[0].similarity >= similarity.THRESHOLD and pairs[0].tokens >= similarity.MIN_TOKENS


def test_report_lists_the_pair_and_scores_stay(course_dir):
    results = [Result(s, ASSIGNMENT, items=[Item("test_pg_loss", ASSIGNMENT, 2.0, 2.0, "ok")]) for s in ("ann", "ben")]
    report.write(course_dir, results)
    page = (course_dir / "report.html").read_text()
    assert "Unusually similar answers" in page and "<td>ann</td><td>ben</td>" in page
    grades = (course_dir / "grades.csv").read_text().splitlines()
    assert grades[1].startswith("ann,00_fixture,test_pg_loss,2.0,2.0,,ok") and \
        grades[2].startswith("ben,00_fixture,test_pg_loss,2.0,2.0,,ok")
