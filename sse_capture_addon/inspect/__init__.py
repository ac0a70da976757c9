"""Looking at recordings: list, show/follow, stats, lint, diff, cat and timeline.

Pure library code over ``recording.py`` (no mitmproxy); ``inspect_cli.py`` is the command-line glue.
Everything reads recordings line by line, so large files and directories stay in bounded memory.
"""
