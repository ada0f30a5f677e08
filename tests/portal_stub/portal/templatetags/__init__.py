"""Template tag libraries of the stand-in Portal."""
