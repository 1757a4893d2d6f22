"""Evaluation: metric definitions (`metrics`) and the held-out protocol with its reports (`protocol`)."""
