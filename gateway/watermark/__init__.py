"""Watermarks that trace a leaked file to its response, and signed responses (issue 5).

Public surface: `WatermarkPolicy`/`load_watermarks` (policies/watermarks.toml), `Watermarker`
(marks one response), `WatermarkRegistry` (what tracing needs, per response), `ResponseSigner`
and `ResponseVerifier` (RFC 9421 signatures), and `gateway.watermark.trace` (tracing a leak).
"""
