"""LLM Workbench: the Textual app and the typer CLI on top of llm_core."""
