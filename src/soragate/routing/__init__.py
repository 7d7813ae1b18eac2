"""Account choice and the limits every process shares: above providers and the store."""
