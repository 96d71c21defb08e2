"""Widgets of the workbench, one per module, grouped by screen area."""
