"""Media anchored at the hub: RTP port allocation and per-leg RTP endpoints."""
