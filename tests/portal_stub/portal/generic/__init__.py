"""Stand-in for Portal's generic package."""
