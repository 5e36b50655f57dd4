"""Runs as people look at them: a read-only view of a run folder
(``runview``), the live dashboard (``dashboard``), the PDF / HTML report
(``report``) and the MLflow / TensorBoard export (``export``).

Above ``tracking`` (the run store it reads), ``ml`` (tasks: which metric leads)
and ``experiments`` (an ablation folder's layout); below the CLI.
"""
