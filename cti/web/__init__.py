"""The hub's HTTP server: health, metrics, login and the agent websocket."""
