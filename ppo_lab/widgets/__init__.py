"""Interactive explorers for the notebooks (ipywidgets + ipympl)."""
from .clip_explorer import ClipExplorer, clip_explorer
from .lambda_explorer import LambdaExplorer
