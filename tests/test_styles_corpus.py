"""The submission corpus of tests/fixtures/styles.py, checked without the grader.

The honest submissions must really be right: each is executed with nbclient against the normal
(non-grading) ppo_lab, and both visible checks must pass with no cell raising. The other entries
must at least be notebooks that Jupyter can read.
"""
from __future__ import annotations

import asyncio
import concurrent.futures
import copy
import os
from pathlib import Path

import nbformat
import pytest

from fixtures import students as make
from fixtures import styles

ROOT = Path(__file__).resolve().parents[1]
SOURCE = ROOT / "tests" / "fixtures" / "course" / "solutions"
ASSIGNMENT = "00_fixture"
TEST_CELLS = ("test_pg_loss", "test_probability_ratio")
PARALLEL = max(1, min(4, (os.cpu_count() or 1)))  # kernels at a time


@pytest.fixture(scope="module")
def notebooks(tmp_path_factory):
    return make.release_and_answered(SOURCE, ASSIGNMENT, tmp_path_factory.mktemp("release"))


def as_notebook(submission) -> nbformat.NotebookNode:
    if isinstance(submission, bytes):
        submission = submission.decode("utf-8")
    if isinstance(submission, str):
        return nbformat.reads(submission, as_version=4)
    return copy.deepcopy(submission)


def stdout_of(cell) -> str:
    return "".join(o.get("text", "") for o in cell.get("outputs", []) if o.get("name") == "stdout")


def test_the_corpus_has_its_entries():
    assert len(styles.HONEST) >= 18 and len(styles.CHEATS) >= 12
    assert set(styles.EXPECTED_CHEATS) == set(styles.CHEATS)
    names = [*styles.HONEST, *styles.CHEATS]
    assert len(names) == len(set(names))
    for pg, ratio in styles.EXPECTED_CHEATS.values():
        assert (pg, ratio) in {(0, 1), (2, 0), (0, 0)}  # every cheat has a wrong answer that earns nothing


@pytest.mark.parametrize("name", [*styles.HONEST, *styles.CHEATS])
def test_every_entry_is_a_readable_submission(notebooks, name, tmp_path):
    release, good = notebooks
    build = {**styles.HONEST, **styles.CHEATS}[name]
    path = make.write(tmp_path, name, ASSIGNMENT, build(release, good), ASSIGNMENT)
    notebook = nbformat.read(path, as_version=4)
    nbformat.validate(notebook)
    ids = [make.grade_id(c) for c in notebook.cells]
    assert all(ids.count(grade_id) == 1 for grade_id in ("setup", "solution_pg_loss", "solution_probability_ratio",
                                                          *TEST_CELLS)), name


@pytest.fixture(scope="module")
def executed(notebooks, tmp_path_factory):
    """name -> (executed notebook, None) or (None, the error), for every honest submission.

    The notebooks run a few at a time (each in its own kernel and directory): most of each
    run is the kernel starting and importing torch."""
    from nbclient import NotebookClient

    release, good = notebooks
    results = {}

    async def run(name, limit):
        async with limit:
            notebook = as_notebook(styles.HONEST[name](release, good))
            folder = tmp_path_factory.mktemp(name)
            client = NotebookClient(notebook, timeout=60, kernel_name="python3",
                                    resources={"metadata": {"path": str(folder)}})
            try:
                await client.async_execute()  # raises CellExecutionError if any cell raises
                results[name] = (notebook, None)
            except Exception as error:  # noqa: BLE001 - reported by that submission's test
                results[name] = (None, error)

    async def run_all():
        limit = asyncio.Semaphore(PARALLEL)
        await asyncio.gather(*(run(name, limit) for name in styles.HONEST))

    with pytest.MonkeyPatch.context() as patch:
        patch.delenv("PPO_LAB_GRADING_DIR", raising=False)  # the kernels inherit the environment
        # A loop of its own, in its own thread: the browser tests' playwright keeps one running in
        # the main thread for the whole session.
        with concurrent.futures.ThreadPoolExecutor(1) as thread:
            thread.submit(asyncio.run, run_all()).result()
    return results


@pytest.mark.slow
@pytest.mark.parametrize("name", list(styles.HONEST))
def test_honest_submission_passes_its_visible_checks(executed, name):
    notebook, error = executed[name]
    assert error is None, f"{name}: {error}"
    errors = [o for c in notebook.cells for o in c.get("outputs", []) if o.get("output_type") == "error"]
    assert not errors, errors
    for grade_id in TEST_CELLS:
        cell = next(c for c in notebook.cells if make.grade_id(c) == grade_id)
        assert grade_id in stdout_of(cell) and "pass" in stdout_of(cell), (grade_id, cell.outputs)
