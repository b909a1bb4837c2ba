"""Call recordings: recorder, file storage, integrity chain, retention and access audit.

Modules: `policy` (pure: when to record, retention, legal hold, PCI pause bookkeeping),
`assembler` (pure: RTP packets to stereo PCM), `writer` (streaming stereo WAV with its
SHA-256), `recorder` (`CallRecorder`, the asyncio shell on the voice service's media
tap), `integrity` (pure: the hash chain and its check), `storage` (files on disk),
`flac` (the streaming FLAC writer), `s3_storage` (the S3-compatible store files are
uploaded to once closed), `schema` and `store` (`RecordingStore`: metadata, chain,
purge, holds, audit, uploads), `cli` (`ctihub recordings verify|purge`).
"""
