"""Pictures of a run for people: the task graph (SVG) and the run report (HTML)."""
