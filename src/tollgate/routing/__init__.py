"""Routing: from the model name a client asked for to the ordered candidate deployments."""
