"""Stand-in for Portal's utilities package."""
