"""Sensor sources: each turns a device link into decoded readings for the agent."""
