"""Parsers for the text the tape tools print; the simulator's renderings go through them too."""
