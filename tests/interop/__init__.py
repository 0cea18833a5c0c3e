"""Browser interop tests: headless Chromium in a network namespace (docs/testing.md)."""
