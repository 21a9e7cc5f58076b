"""The mitmproxy side: the addon that adapts mitmproxy hooks to the pipeline, and the runner."""
