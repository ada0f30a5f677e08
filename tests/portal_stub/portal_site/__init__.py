"""A small Django project standing in for the Portal web server (tests only; run by serve.py)."""
