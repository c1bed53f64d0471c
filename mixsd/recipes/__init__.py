"""Pipelines that run several stages end to end (data -> targets -> train), built on their APIs."""
