"""Sounds the hub plays: the shipped WAV files and how each was made.

The repository holds no audio of unknown origin:
- `hold.wav`, music on hold: `synth.py` regenerates it byte for byte.
- `recording_notice.wav`, "This call may be recorded for quality, training and
  regulatory purposes.", synthesized speech made with Debian's espeak-ng and sox:
      espeak-ng -v en-gb -s 150 -w /tmp/notice.wav "This call may be recorded for quality, training and regulatory purposes."
      sox /tmp/notice.wav -r 8000 -c 1 -b 16 recording_notice.wav
  A brokerage replaces it with its own recorded wording (CTIHUB_RECORDING_NOTICE).
"""

from __future__ import annotations

from pathlib import Path

HOLD_WAV = Path(__file__).with_name("hold.wav")
RECORDING_NOTICE_WAV = Path(__file__).with_name("recording_notice.wav")
