"""The Gradio Space: settings, the UI wiring and its text (the library is rtsr)."""
