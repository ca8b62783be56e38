"""nbgrader settings of the ppo-lab course.

Read by `nbgrader ...` run from the repository root, and loaded explicitly by `python -m autograde`
(NbGraderAPI does not read this file by itself). The grader roots the same settings at its --out
directory, so everything below holds for instructors' own nbgrader commands too.
"""
import os

c = get_config()  # noqa: F821 (injected by traitlets)

c.CourseDirectory.course_id = "ppo-lab"
c.CourseDirectory.root = os.path.dirname(os.path.abspath(__file__))
c.CourseDirectory.source_directory = "solutions"
c.CourseDirectory.release_directory = "notebooks"
c.CourseDirectory.submitted_directory = "submitted"
c.CourseDirectory.autograded_directory = "autograded"
c.CourseDirectory.feedback_directory = "feedback"

c.ClearSolutions.code_stub = {"python": "# YOUR CODE HERE\nraise NotImplementedError()"}
c.ClearSolutions.text_stub = "YOUR ANSWER HERE"

# A deleted grade cell is put back and graded instead of waiting for a manual grade forever
# (jupyter/nbgrader#1682).
c.OverwriteCells.add_missing_cells = True

# Per-cell limit; the grader adds a whole-notebook limit (--timeout) on top.
c.Execute.timeout = 60
c.Execute.interrupt_on_timeout = True

c.LimitOutput.max_lines = 200
c.LimitOutput.max_traceback = 60
