"""The serving process: its parts wired together, the Tornado application, start-up and shutdown."""
