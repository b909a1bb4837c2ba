"""Agent sessions: login tokens and the websockets that carry screen pops."""
