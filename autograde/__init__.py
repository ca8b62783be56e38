"""ppo-lab's autograder: a thin layer over nbgrader 0.9 (course layout, gradebook, autograde,
feedback) that runs every submission in its own sandboxed kernel and decides the autograded
items outside it. Entry point: ``python -m autograde --help``; instructor guide: docs/autograder.md.
"""
