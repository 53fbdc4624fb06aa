"""The server API: the host application's backend publishes, reads and moderates rooms over HTTP + JSON.

Another edge beside ``handlers/``: its own listener and Tornado application
(``app.py``), reaching rooms only through the RoomBus and sanctions only
through the moderation store.
"""
