"""archive-core driver that archives to a local or mounted filesystem."""
