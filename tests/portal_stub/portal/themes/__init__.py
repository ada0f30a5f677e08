"""Stand-in for Portal's themes package."""
