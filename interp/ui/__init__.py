"""A local, read-only web browser over the catalogue (`interp ui`) and its shared pieces.

Importing this package is cheap: the web server (Starlette, uvicorn) and MiniLM load lazily.
"""
