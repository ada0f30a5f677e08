"""Stand-in for Portal's plugin base package."""
