"""IVR and chatbot flows. First slice: a flow per dialled number that routes to a queue."""

from ivr.flows import Flow, FlowTable

__all__ = ["Flow", "FlowTable"]
