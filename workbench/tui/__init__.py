"""The Textual workbench: `make_app()` (in `app`) is shared by the `workbench` command and the tests."""
