"""The process in a runner pod: one live trader, its HTTP API and metrics, and batch jobs."""
