"""Sounds the hub plays: the shipped WAV files and the synthesizer that made them.

Only procedurally generated sounds live here, so that the repository holds no audio of
unknown origin; `synth.py` regenerates each file byte for byte.
"""

from __future__ import annotations

from pathlib import Path

HOLD_WAV = Path(__file__).with_name("hold.wav")
