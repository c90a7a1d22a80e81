"""What the app needs beyond drawing, kept Qt-free so it is tested without a display.

The ``ui`` package may not touch torch or the database directly (import-linter), so every step
that loads a model, trains, evaluates, composes overlays or reads the audit store for a view
lives here, as plain functions over plain data. The app calls them, mostly from its worker
thread, and draws what they return.

One module per part of the app: ``session`` (who, which store and model, which views),
``demo_setup``, ``operator``, ``engineer`` and ``auditor``.
"""

from __future__ import annotations

from inspector.app_logic.auditor import FRAME_MISMATCH, decision_filters, recorded_view
from inspector.app_logic.demo_setup import (
    DEMO_KIND,
    DEMO_ROLES,
    DemoSetup,
    create_demo_users,
    demo_folder,
    make_line_folder,
    prepare_demo,
)
from inspector.app_logic.engineer import (
    EvalSummary,
    add_defect_classifier,
    compare_rows,
    evaluate_model,
    import_folder,
    model_rows,
    settings_report,
    train_and_register,
    what_if,
)
from inspector.app_logic.operator import (
    compose_overlay,
    default_explainer,
    effective_thresholds,
    explain_fields,
    open_station,
    run_station,
)
from inspector.app_logic.session import ROLE_VIEWS, AppSession, ExplainFn, Progress, views_for

__all__ = [
    "AppSession",
    "DEMO_KIND",
    "DEMO_ROLES",
    "DemoSetup",
    "EvalSummary",
    "ExplainFn",
    "Progress",
    "ROLE_VIEWS",
    "add_defect_classifier",
    "compare_rows",
    "compose_overlay",
    "create_demo_users",
    "decision_filters",
    "default_explainer",
    "demo_folder",
    "effective_thresholds",
    "evaluate_model",
    "explain_fields",
    "import_folder",
    "make_line_folder",
    "model_rows",
    "open_station",
    "prepare_demo",
    "recorded_view",
    "FRAME_MISMATCH",
    "run_station",
    "settings_report",
    "train_and_register",
    "views_for",
    "what_if",
]
