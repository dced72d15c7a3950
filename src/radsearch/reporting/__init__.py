"""Reports of finished runs: tables (through radsearch.evaluation.report), figures, the demo.

``radsearch.training`` trains and evaluates runs and knows nothing of this package; here runs are
read back through :class:`radsearch.training.rundir.RunDir` and turned into Markdown and PNGs.
"""
