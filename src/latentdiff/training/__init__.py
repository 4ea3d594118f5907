"""One training loop (`loop.py`) shared by every stage; the stage-specific part is a task object."""
