"""The autograder, end to end through its CLI, on the fixture course (tests/fixtures/course).

One grading run (``--jobs 2``) grades a class holding every bad case of issue 3; the tests below
read its grades.csv, gradebook and feedback. Separate runs cover resume after kill -9, parallel ==
sequential on a zip of submissions.
"""
from __future__ import annotations

import base64
import csv
import json
import os
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import nbformat
import pytest

from autograde import course, static
from fixtures import students as make
from fixtures import styles

ROOT = Path(__file__).resolve().parents[1]
SOURCE = ROOT / "tests" / "fixtures" / "course" / "solutions"
ASSIGNMENT = "00_fixture"
SECRET = "test-course-secret"
GOOD_PG = "def pg_loss(log_probs, advantages):\n    return -(log_probs * advantages.detach()).mean()"
WRONG_PG = "def pg_loss(log_probs, advantages):\n    return (log_probs * advantages).mean()"
GOOD_RATIO = "def probability_ratio(new_log_probs, old_log_probs):\n    return torch.exp(new_log_probs - old_log_probs.detach())"
# The forgery of issue 12, written against the new protocol: rebind `check` so that the test
# cell records outputs computed with ppo_lab's pg_loss (in the grading box, a delegate back to
# this wrong answer: the reference is not there to be called).
FORGE_RECORDS = """import importlib
_p = importlib.import_module("ppo_lab.checks." + "proto" + "col")
_s = importlib.import_module("ppo_lab.checks." + "stu" + "dent")
_ref = getattr(importlib.import_module("ppo" + "_lab"), "pg_" + "loss")
def _forged(grade_id, answer, hidden=False):
    where = _s.grading_dir()
    run, cases = _p.read_cases(where, grade_id, hidden)
    _p.publish(_p.Record(grade_id, hidden, _s.outputs(run, _ref, cases)))
globals()["ch" + "eck"] = _forged
"""
SEND_GARBAGE = """from IPython.display import display
def check(grade_id, answer, hidden=False):
    display({"application/vnd.ppo-lab.record+json": {"grade_id": grade_id, "hidden": hidden, "outputs": "all pass"}},
            raw=True)
"""


def hidden_code(code: str) -> str:
    """Student code run through exec(base64): invisible to the static scan."""
    return f"import base64\nexec(base64.b64decode({base64.b64encode(code.encode()).decode()!r}).decode())"


@pytest.fixture(scope="module")
def notebooks(tmp_path_factory):
    return make.release_and_answered(SOURCE, ASSIGNMENT, tmp_path_factory.mktemp("release"))


def bad_class(release, good) -> dict:
    """student -> notebook (or raw bytes, or {filename: content}) for every case of issue 3."""
    def edit(notebook, **cells):
        for cell_id, source in cells.items():
            notebook = make.with_cell(notebook, cell_id, source)
        return notebook

    def cells(notebook, keep=lambda c: True, order=None):
        notebook = nbformat.from_dict(json.loads(json.dumps(notebook)))
        notebook.cells = [c for c in (order(notebook.cells) if order else notebook.cells) if keep(c)]
        return notebook

    def metadata(notebook, cell_id, **changes):
        notebook = nbformat.from_dict(json.loads(json.dumps(notebook)))
        for cell in notebook.cells:
            if make.grade_id(cell) == cell_id:
                cell.metadata.nbgrader.update(changes)
        return notebook

    def tests_first(cells_):
        tests = [c for c in cells_ if (make.grade_id(c) or "").startswith("test_")]
        return [c for c in cells_ if c not in tests][:2] + tests + [c for c in cells_ if c not in tests][2:]

    def split_solution(notebook):
        notebook = nbformat.from_dict(json.loads(json.dumps(notebook)))
        index = next(i for i, c in enumerate(notebook.cells) if make.grade_id(c) == "solution_pg_loss")
        first = nbformat.from_dict(json.loads(json.dumps(notebook.cells[index])))
        first.source, first.id = "import math", "split-off"
        notebook.cells.insert(index, first)
        duplicate = next(c for c in notebook.cells if make.grade_id(c) == "test_pg_loss")
        copy = nbformat.from_dict(json.loads(json.dumps(duplicate)))
        copy.id = "copied"
        notebook.cells.append(copy)
        return notebook

    stream = "import os, time\nfor _ in range(100000):\n    try:\n        if os.fork() == 0:\n            time.sleep(60)\n" \
             "            os._exit(0)\n    except OSError:\n        break\nimport threading\nfor _ in range(100000):\n" \
             "    try:\n        threading.Thread(target=time.sleep, args=(60,), daemon=True).start()\n" \
             "    except RuntimeError:\n        break\n"
    return {
        "correct": good,
        "untouched": release,
        "wrong": edit(good, solution_pg_loss=WRONG_PG),
        "infinite_loop": edit(good, solution_pg_loss=GOOD_PG + "\nwhile True:\n    pass"),
        "stuck": edit(good, solution_probability_ratio="import signal\nsignal.signal(signal.SIGINT, signal.SIG_IGN)\n"
                                                       "while True:\n    pass"),
        "memory_bomb": edit(good, solution_pg_loss=GOOD_PG + "\nhog = bytearray(6 * 2**30)"),
        "os_exit": edit(good, solution_probability_ratio="import os\nos._exit(3)"),
        "segfault": edit(good, solution_pg_loss="import ctypes\nctypes.string_at(0)"),
        "sys_exit": edit(good, solution_pg_loss=GOOD_PG + "\nimport sys\nsys.exit(1)"),
        "raises": edit(good, solution_pg_loss="raise ValueError('no')", solution_probability_ratio="raise ValueError('no')"),
        "output_flood": edit(good, solution_pg_loss="while True:\n    print('x' * 100_000)"),
        "fork_storm": edit(good, solution_probability_ratio=GOOD_RATIO + "\n" + stream),
        "invalid_json": b'{"cells": [ not json',
        "nbformat3": json.dumps({"nbformat": 3, "nbformat_minor": 0, "metadata": {}, "worksheets": []}),
        "renamed": {"my_copy.ipynb": good},
        "missing": {"notes.txt": "I forgot"},
        "extra": {f"{ASSIGNMENT}.ipynb": good, "scratch.ipynb": release},
        "deleted_test": cells(good, keep=lambda c: make.grade_id(c) != "test_pg_loss"),
        "reordered": cells(good, order=tests_first),
        "split_cells": split_solution(good),
        "edited_test": edit(good, solution_pg_loss=WRONG_PG, test_pg_loss="print('all tests pass')"),
        "edited_points": metadata(metadata(good, "test_pg_loss", points=100), "test_probability_ratio", grade=False),
        "allclose_patch": edit(good, solution_pg_loss=WRONG_PG + "\nimport numpy as np\nnp.allclose = lambda *a, **k: True"
                               "\ntorch.allclose = lambda *a, **k: True\ntorch.isclose = lambda a, b, **k: a == a"),
        "patches_checks": edit(good, solution_pg_loss=WRONG_PG + "\nimport ppo_lab.checks.judge as judge\n"
                               "judge.verify = lambda *a, **k: judge.Verdict(True, 'ok')"),
        "reads_hidden": edit(good, solution_pg_loss=GOOD_PG + "\nfor p in ['00_fixture.ipynb', '../gradebook.db']:\n"
                             "    try:\n        print(open(p).read()[:50])\n    except OSError:\n        pass"),
        "writes_records": edit(good, solution_pg_loss=GOOD_PG + "\nimport os\n"
                               "open(os.environ['PPO_LAB_GRADING_DIR'] + '/records.jsonl', 'a').write('{}\\n')"),
        "forges_records": edit(good, solution_pg_loss=WRONG_PG + "\n" + FORGE_RECORDS),
        "sends_garbage": edit(good, solution_pg_loss=WRONG_PG + "\n" + SEND_GARBAGE),
        "reference_plain": edit(good, solution_pg_loss="from ppo_lab import pg_loss as ref\n"
                                "def pg_loss(log_probs, advantages):\n    return ref(log_probs, advantages)"),
        "reference_obfuscated": edit(good, solution_pg_loss="def pg_loss(log_probs, advantages):\n"
                                     "    module = __import__('ppo' + '_lab')\n"
                                     "    return getattr(module, 'pg' + '_loss')(log_probs, advantages)"),
        "reference_runtime": edit(good, solution_pg_loss=hidden_code("import ppo_lab\nf = ppo_lab.pg_loss") +
                                  "\ndef pg_loss(log_probs, advantages):\n    return f(log_probs, advantages)"),
        "warns": edit(good, solution_pg_loss="import warnings\ndef pg_loss(log_probs, advantages):\n"
                      "    warnings.warn('harmless', UserWarning)\n    return -(log_probs * advantages.detach()).mean()"),
    }


# student -> (status, test_pg_loss, test_probability_ratio, review line that must appear or None).
# Review lines (a text scan) never cost points; only runtime evidence does.
EXPECTED = {
    "correct": ("ok", 2, 1, None),
    "untouched": ("ok", 0, 0, None),
    "wrong": ("ok", 0, 1, None),
    "infinite_loop": ("timeout", 2, 1, None),
    "stuck": ("timeout", 2, 0, None),
    "memory_bomb": ("killed", 0, 0, None),
    "os_exit": ("killed", 2, 0, None),
    "segfault": ("killed", 0, 0, None),
    "sys_exit": ("ok", 2, 1, None),
    "raises": ("ok", 0, 0, None),
    "output_flood": ("killed", 0, 0, None),
    "fork_storm": ("ok", 2, 1, None),
    "invalid_json": ("invalid", 0, 0, None),
    "nbformat3": ("invalid", 0, 0, None),
    "renamed": ("ok", 2, 1, None),
    "missing": ("missing", 0, 0, None),
    "extra": ("ok", 2, 1, None),
    "deleted_test": ("ok", 2, 1, None),
    "reordered": ("ok", 2, 1, None),
    "split_cells": ("ok", 2, 1, None),
    "edited_test": ("ok", 0, 1, None),
    "edited_points": ("ok", 2, 1, None),
    "allclose_patch": ("ok", 0, 1, "assigns to numpy.allclose"),
    "patches_checks": ("ok", 0, 1, None),
    "reads_hidden": ("ok", 2, 1, None),
    "writes_records": ("ok", 2, 1, "names 'PPO_LAB_GRADING'"),
    "forges_records": ("ok", 0, 0, "assigns into globals()"),  # its forged check serves the ratio cell too
    "sends_garbage": ("tampered", 0, 0, "defines its own check"),
    "reference_plain": ("ok", 0, 1, None),
    "reference_obfuscated": ("ok", 0, 1, "uses getattr inside pg_loss"),
    "reference_runtime": ("ok", 0, 1, None),
    "warns": ("ok", 2, 1, None),
}


def write_class(root: Path, submissions: dict) -> Path:
    for student, content in submissions.items():
        is_files = isinstance(content, dict) and not isinstance(content, nbformat.NotebookNode)
        files = content if is_files else {f"{ASSIGNMENT}.ipynb": content}
        for filename, notebook in files.items():
            if filename.endswith(".ipynb"):
                make.write(root, student, ASSIGNMENT, notebook, filename[:-6])
            else:
                (root / student / ASSIGNMENT).mkdir(parents=True, exist_ok=True)
                (root / student / ASSIGNMENT / filename).write_text(notebook)
    return root


def grade_command(submissions: Path, out: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "autograde", "grade", str(submissions), "--out", str(out), "--source", str(SOURCE),
            "--memory", "1024", *extra]


def run_grader(submissions: Path, out: Path, *extra: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PPO_LAB_COURSE_SECRET": SECRET}
    result = subprocess.run(grade_command(submissions, out, *extra), env=env, capture_output=True, text=True,
                            timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    return result


def read_grades(out: Path) -> dict[str, dict[str, dict]]:
    with open(out / "grades.csv") as f:
        table = {}
        for row in csv.DictReader(f):
            table.setdefault(row["student_id"], {})[row["item"]] = row
    return table


@pytest.fixture(scope="module")
def graded(notebooks, tmp_path_factory):
    release, good = notebooks
    submissions = write_class(tmp_path_factory.mktemp("submitted"), bad_class(release, good))
    out = tmp_path_factory.mktemp("graded")
    started = time.monotonic()
    # the stuck student ignores interrupts: only the whole-notebook limit (--timeout) ends it
    result = run_grader(submissions, out, "--jobs", "2", "--timeout", "40", "--cell-timeout", "12")
    print(f"graded {len(EXPECTED)} submissions in {time.monotonic() - started:.0f} s")
    return out, read_grades(out), result


@pytest.mark.parametrize("student", EXPECTED)
def test_each_submission_gets_its_status_and_scores(graded, student):
    _, grades, _ = graded
    status, pg, ratio, flag = EXPECTED[student]
    rows = grades[student]
    summary = {item: (row["score"], row["status"], row["flags"], row["message"][:300]) for item, row in rows.items()}
    assert rows["test_pg_loss"]["status"] == status, summary
    assert float(rows["test_pg_loss"]["score"]) == pg, summary
    assert float(rows["test_probability_ratio"]["score"]) == ratio, summary
    assert rows["test_pg_loss"]["max_score"] == "2.0" and rows["test_probability_ratio"]["max_score"] == "1.0"
    if flag:
        assert flag in rows["test_pg_loss"]["review"], (summary, rows["test_pg_loss"]["review"])


def test_grades_csv_has_one_row_per_student_and_item(graded):
    out, grades, _ = graded
    with open(out / "grades.csv") as f:
        rows = list(csv.DictReader(f))
    assert {"student_id", "assignment", "item", "score", "max_score", "status"} <= set(rows[0])
    assert len(rows) == len(EXPECTED) * 3
    assert {(r["student_id"], r["item"]) for r in rows} == {(s, i) for s in EXPECTED for i in
                                                             ("test_pg_loss", "test_probability_ratio",
                                                              "reflection_old_constant")}


def test_manual_cells_are_left_for_formgrader(graded):
    from nbgrader.api import Gradebook

    out, grades, _ = graded
    assert grades["correct"]["reflection_old_constant"]["score"] == ""  # waits for a human
    assert float(grades["missing"]["reflection_old_constant"]["score"]) == 0
    with Gradebook(f"sqlite:///{out / 'gradebook.db'}") as gb:
        answer = gb.find_grade("reflection_old_constant", ASSIGNMENT, ASSIGNMENT, "correct")
        assert answer.needs_manual_grade and answer.auto_score is None
        test = gb.find_grade("test_pg_loss", ASSIGNMENT, ASSIGNMENT, "correct")
        assert test.auto_score == 2 and not test.needs_manual_grade


def test_gradebook_holds_the_grader_scores_for_every_student(graded):
    from nbgrader.api import Gradebook

    out, grades, _ = graded
    with Gradebook(f"sqlite:///{out / 'gradebook.db'}") as gb:
        assert {s.id for s in gb.students} == set(EXPECTED)
        for student, (status, pg, ratio, _) in EXPECTED.items():
            if status == "missing":  # not a submission: formgrader would list it as "needs autograding"
                assert student not in {s.student.id for s in gb.find_assignment(ASSIGNMENT).submissions}
                continue
            assert gb.find_grade("test_pg_loss", ASSIGNMENT, ASSIGNMENT, student).score == pg, student
            assert gb.find_grade("test_probability_ratio", ASSIGNMENT, ASSIGNMENT, student).score == ratio, student


def test_tampered_and_review_flagged_work_is_flagged_in_formgrader(graded):
    """Formgrader shows our statuses: nbgrader's flag, and a note for the graders in a comment box."""
    from nbgrader.api import Gradebook

    from autograde.feedback import FLAG_NOTE

    out, grades, _ = graded
    with Gradebook(f"sqlite:///{out / 'gradebook.db'}") as gb:
        for student, (status, _, _, _) in EXPECTED.items():
            if status == "missing":
                continue
            row = grades[student]["test_pg_loss"]
            expected = status == "tampered" or bool(row["review"]) or bool(row["flags"])
            assert gb.find_submission_notebook(ASSIGNMENT, ASSIGNMENT, student).flagged == expected, (student, row)
        note = gb.find_comment("solution_pg_loss", ASSIGNMENT, ASSIGNMENT, "sends_garbage").comment
        assert note.startswith(FLAG_NOTE) and "malformed" in note


def test_monkeypatched_allclose_earns_nothing(graded):
    """nbgrader runs tests inside the student's kernel: np.allclose = lambda *a, **k: True passes them."""
    out, grades, _ = graded
    assert float(grades["allclose_patch"]["test_pg_loss"]["score"]) == 0
    assert grades["allclose_patch"]["test_pg_loss"]["mistake"] == "missing_minus"


def test_warning_on_stderr_keeps_the_points(graded):
    """jupyter/nbgrader#1904: any stderr output in a test cell scores 0 in nbgrader."""
    out, grades, _ = graded
    autograded = nbformat.read(out / "autograded" / "warns" / ASSIGNMENT / f"{ASSIGNMENT}.ipynb", as_version=4)
    test_cell = next(c for c in autograded.cells if make.grade_id(c) == "test_pg_loss")
    assert any(o.get("name") == "stderr" for o in test_cell.outputs), "the warning should reach stderr"
    assert float(grades["warns"]["test_pg_loss"]["score"]) == 2


def test_feedback_never_shows_hidden_tests(graded):
    """jupyter/nbgrader#917: hidden tests appear in nbgrader's feedback HTML."""
    out, _, _ = graded
    pages = list((out / "feedback").glob(f"*/{ASSIGNMENT}/*.html"))
    assert len(pages) == len(EXPECTED)
    for page in pages:
        text = page.read_text()
        assert "hidden=True" not in text and "HIDDEN TESTS" not in text, page


def test_feedback_names_the_recognised_mistake(graded):
    out, grades, _ = graded
    page = (out / "feedback" / "wrong" / ASSIGNMENT / f"{ASSIGNMENT}.html").read_text()
    assert "minus sign is missing" in page
    assert grades["wrong"]["test_pg_loss"]["mistake"] == "missing_minus"


def test_duplicated_or_split_cells_do_not_stop_the_batch(graded):
    """jupyter/nbgrader#1083: a duplicated cell stops nbgrader's whole batch."""
    _, grades, _ = graded
    assert float(grades["split_cells"]["test_pg_loss"]["score"]) == 2
    assert set(grades) == set(EXPECTED)


def test_deleted_test_cell_is_graded_not_left_for_manual_grading(graded):
    """jupyter/nbgrader#1682: a deleted grade cell needs a manual grade forever."""
    from nbgrader.api import Gradebook

    out, grades, _ = graded
    with Gradebook(f"sqlite:///{out / 'gradebook.db'}") as gb:
        grade = gb.find_grade("test_pg_loss", ASSIGNMENT, ASSIGNMENT, "deleted_test")
        assert grade.auto_score == 2 and not grade.needs_manual_grade


def test_memory_limit_kills_only_the_bomb(graded):
    """jupyter/nbgrader#1429: nbgrader has no memory limit."""
    _, grades, _ = graded
    assert "memory" in grades["memory_bomb"]["test_pg_loss"]["notes"]


def test_report_summarises_items_histogram_and_mistakes(graded):
    out, _, result = graded
    report = (out / "report.html").read_text()
    assert "test_pg_loss" in report and "<svg" in report and "missing_minus" in report
    assert "grading" in result.stderr  # the progress bar


def test_review_lines_reach_the_report_and_cost_nothing(graded):
    out, grades, _ = graded
    report = (out / "report.html").read_text()
    assert "Submissions to look at" in report and "assigns to numpy.allclose" in report
    assert float(grades["reference_obfuscated"]["test_probability_ratio"]["score"]) == 1


@pytest.fixture(scope="module")
def corpus(notebooks, tmp_path_factory):
    """The honest styles and the cheats of tests/fixtures/styles.py, graded in one run."""
    release, good = notebooks
    entries = {**styles.HONEST, **styles.CHEATS}
    submissions = write_class(tmp_path_factory.mktemp("corpus"), {name: build(release, good)
                                                                  for name, build in entries.items()})
    out = tmp_path_factory.mktemp("corpus_graded")
    run_grader(submissions, out, "--jobs", "2", "--timeout", "120")
    return read_grades(out)


@pytest.mark.parametrize("student", styles.HONEST)
def test_honest_code_written_in_unusual_ways_gets_full_marks(corpus, student):
    rows = corpus[student]
    summary = {item: (row["score"], row["status"], row["flags"], row["message"][:300]) for item, row in rows.items()}
    assert {row["status"] for row in rows.values()} == {"ok"}, summary
    assert float(rows["test_pg_loss"]["score"]) == 2 and float(rows["test_probability_ratio"]["score"]) == 1, summary
    assert "reference" not in rows["test_pg_loss"]["message"], summary  # never an accusation


@pytest.mark.parametrize("student", styles.CHEATS)
def test_cheats_that_know_the_grader_earn_nothing_for_the_wrong_answer(corpus, student):
    rows = corpus[student]
    most_pg, most_ratio = styles.EXPECTED_CHEATS[student]
    summary = {item: (row["score"], row["status"], row["flags"], row["message"][:300]) for item, row in rows.items()}
    assert float(rows["test_pg_loss"]["score"]) <= most_pg, summary
    assert float(rows["test_probability_ratio"]["score"]) <= most_ratio, summary


def test_config_file_is_loaded_for_the_api():
    """NbGraderAPI does not read nbgrader_config.py by itself."""
    config = course.load_config(Path("/tmp/somewhere"))
    assert config.OverwriteCells.add_missing_cells is True
    assert config.CourseDirectory.source_directory == "solutions"
    assert config.CourseDirectory.root == "/tmp/somewhere"


def test_parallel_grades_equal_sequential_grades_from_a_zip(graded, notebooks, tmp_path):
    """jupyter/nbgrader#174: nbgrader cannot autograde in parallel. Same class, zipped, --jobs 1."""
    parallel_out, parallel, _ = graded
    release, good = notebooks
    chosen = ["correct", "wrong", "renamed", "invalid_json"]
    submissions = write_class(tmp_path / "submitted", {s: bad_class(release, good)[s] for s in chosen})
    archive = tmp_path / "class.zip"
    with zipfile.ZipFile(archive, "w") as z:
        for path in submissions.rglob("*"):
            z.write(path, path.relative_to(submissions))
    run_grader(archive, tmp_path / "out", "--jobs", "1")
    sequential = read_grades(tmp_path / "out")
    assert set(sequential) == set(chosen)
    for student in chosen:
        for item, row in sequential[student].items():
            assert {k: row[k] for k in ("score", "status", "flags", "mistake")} == \
                   {k: parallel[student][item][k] for k in ("score", "status", "flags", "mistake")}, (student, item)


def test_kill_minus_nine_then_resume(notebooks, tmp_path):
    """Killing the grader loses nothing merged; the same command resumes without duplicates, and
    running it once more changes nothing."""
    release, good = notebooks
    submissions = write_class(tmp_path / "submitted", {"a_correct": good, "b_wrong": bad_class(release, good)["wrong"],
                                                       "c_untouched": release})
    out = tmp_path / "out"
    env = {**os.environ, "PPO_LAB_COURSE_SECRET": SECRET}
    grader = subprocess.Popen(grade_command(submissions, out, "--jobs", "1"), env=env, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL, start_new_session=True)
    journal = out / ".autograde" / "journal.jsonl"
    deadline = time.monotonic() + 300
    while not (journal.exists() and journal.read_text().count("\n") >= 1):
        assert grader.poll() is None and time.monotonic() < deadline, "grader ended before journaling anyone"
        time.sleep(0.1)
    os.kill(grader.pid, signal.SIGKILL)
    grader.wait()
    assert journal.read_text().count("\n") < 3
    run_grader(submissions, out, "--jobs", "1")
    lines = [json.loads(line) for line in journal.read_text().splitlines()]
    assert len(lines) == 3 and len({(e["student"], e["assignment"]) for e in lines}) == 3
    grades = read_grades(out)
    assert {s: float(grades[s]["test_pg_loss"]["score"]) for s in grades} == {"a_correct": 2, "b_wrong": 0,
                                                                               "c_untouched": 0}
    before = (out / "grades.csv").read_text()
    run_grader(submissions, out, "--jobs", "1")  # nothing left to do: same grades, no new rows
    assert (out / "grades.csv").read_text() == before
    assert journal.read_text().count("\n") == 3


def test_cli_help_and_exit_codes(tmp_path):
    assert subprocess.run([sys.executable, "-m", "autograde", "--help"], capture_output=True).returncode == 0
    assert subprocess.run([sys.executable, "-m", "autograde", "grade", "--help"], capture_output=True).returncode == 0
    missing = subprocess.run([sys.executable, "-m", "autograde", "grade", str(tmp_path / "nothing"), "--out",
                              str(tmp_path / "out"), "--source", str(SOURCE)], capture_output=True, text=True)
    assert missing.returncode != 0 and "does not exist" in missing.stderr


def _review(*cells, course_cells=(), exercises=("pg_loss",)):
    return [r.why for r in static.scan([(f"cell {i}", c) for i, c in enumerate(cells)], list(course_cells), set(exercises))]


def test_static_scan_says_neutrally_what_it_saw():
    assert _review(GOOD_PG) == []
    assert _review("import ppo_lab as p\ndef pg_loss(log_probs, advantages):\n    return p.pg_loss(log_probs, advantages)") \
        == ["uses ppo_lab inside pg_loss"]
    assert _review("import torch\ndef pg_loss(log_probs, advantages):\n    mean = getattr(torch, 'mean')\n"
                   "    return -mean(log_probs * advantages)") == ["uses getattr inside pg_loss"]
    assert _review("import numpy as np\nnp.allclose = max") == ["assigns to numpy.allclose"]
    assert _review("%time x = 1\n!ls") == []


def test_static_scan_leaves_docstrings_and_own_files_alone():
    honest = ('def pg_loss(log_probs, advantages):\n    """Checked in 00_fixture.ipynb; the gradebook.db keeps it."""\n'
              '    with open("debug.log", "a") as f:\n        f.write("called\\n")\n'
              '    return -(log_probs * advantages).mean()')
    assert _review(honest) == []


def test_static_scan_respects_scope():
    """A global that holds something from ppo_lab does not taint a function's own local of that name."""
    demo = "_, history = train_ppo(config)\n"
    honest = "def conjugate_gradient(Avp, b, n_steps=10, tol=1e-10):\n    for _ in range(n_steps):\n        pass\n    return b\n"
    assert _review(demo, honest, course_cells=["from ppo_lab import train_ppo"], exercises=("conjugate_gradient",)) == []
